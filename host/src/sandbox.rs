//! The per-call store state of a plugin: a WASI context built from the step's
//! grants and nothing else, the memory limiter, and the handles the host
//! imports (`imports.rs`) use after checking the grants.

use crate::docker::Docker;
use crate::grants::{DockerOp, Grants};
use crate::state::PluginState;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// What the agent shares with every call: the Docker engine (absent when none
/// is reachable or needed) and where plugin state lives.
#[derive(Clone, Default)]
pub struct HostServices {
    pub docker: Option<Arc<Docker>>,
    /// Directory of the per-plugin key-value files.
    pub state_dir: Option<PathBuf>,
}

/// Who is calling, for log lines and errors.
#[derive(Debug, Clone)]
pub struct Caller {
    pub surface: String,
    pub step: usize,
    /// The plugin's manifest key (`[plugins.<key>]`).
    pub plugin_key: String,
    pub plugin: String,
    pub version: String,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "surface {} step {} plugin {} {}",
            self.surface, self.step, self.plugin, self.version
        )
    }
}

/// Bytes of plugin stdout/stderr kept per call.
const OUTPUT_CAPACITY: usize = 64 * 1024;

/// What a call did to containers through the docker import, as the host
/// saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// A call that changes containers or images was let through. `exec` is
    /// not counted: the host cannot tell `nginx -T` from a write, and a
    /// strategy reads its config through it before it may refuse.
    pub mutated: bool,
    /// Services whose containers the plugin replaced, started, stopped or
    /// restarted: their addresses may have changed, so whatever routes to
    /// them must resolve them again.
    pub moved: Vec<String>,
}

impl Effects {
    pub(crate) fn record(&mut self, op: DockerOp, service: &str) {
        if op.mutates() && op != DockerOp::Exec {
            self.mutated = true;
        }
        if op.moves() && !self.moved.iter().any(|s| s == service) {
            self.moved.push(service.to_owned());
        }
    }
}

pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) grants: Grants,
    pub(crate) services: HostServices,
    pub(crate) caller: Caller,
    pub(crate) state: PluginState,
    pub(crate) effects: Effects,
    output: MemoryOutputPipe,
}

impl Sandbox {
    pub fn new(
        caller: Caller,
        grants: Grants,
        services: HostServices,
        memory_bytes: usize,
    ) -> anyhow::Result<Sandbox> {
        let output = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        // An empty context: no env, no args, stdin closed, no sockets. The
        // only doors out are the preopens below and slipway's own imports.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // File operations run inline instead of bouncing through
            // spawn_blocking: a static-site publish makes tens of thousands.
            .allow_blocking_current_thread(true);
        for dir in &grants.fs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| anyhow::anyhow!("cannot preopen {}: {e}", dir.host.display()))?;
        }
        let state = PluginState::open(services.state_dir.as_deref(), &caller.plugin_key)?;
        Ok(Sandbox {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            grants,
            services,
            caller,
            state,
            effects: Effects::default(),
            output,
        })
    }

    /// What the plugin wrote to stdout and stderr.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.contents()).into_owned()
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_count_container_changes_and_the_services_that_moved() {
        let mut e = Effects::default();
        for op in [DockerOp::Inspect, DockerOp::WaitReady, DockerOp::Exec] {
            e.record(op, "nginx");
        }
        assert_eq!(e, Effects::default(), "reads and exec change no container");
        e.record(DockerOp::Recreate, "api");
        e.record(DockerOp::Retire, "api");
        e.record(DockerOp::Signal, "bot");
        assert!(e.mutated);
        assert_eq!(e.moved, ["api"], "a signal keeps the address; api once");
    }
}
