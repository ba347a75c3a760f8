//! What a plugin can reach, one module per capability. Each module holds the
//! capability's grant (resolved from slipway.toml once, when the step's
//! plugin is loaded), its per-call context, its `Host` impl and its linker
//! registration. Adding an import touches the WIT, a new module here, four
//! lines of this file (the module, the `Sandbox` field, its constructor and
//! its linker line) and the SDK's binding list.
//!
//! Every check returns a [`Denied`] that the plugin receives as `err`, never
//! a trap, and that says which grant would allow the call.

pub mod command;
pub mod docker;
pub mod files;
pub mod fs;
pub mod log;
pub mod probe;
pub mod state;

use crate::bindings::slipway::plugin::types;
use crate::sandbox::{Caller, HostServices};
use crate::state::PluginState;
use docker::DockerCtx;
use log::{LOG_CAP, LogCtx, LogSink};
use probe::ProbeCtx;
use state::StateCtx;
use std::fmt;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The store state of one call: a context per capability, each built from
/// the step's grants and nothing else, and the memory cap.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) files: files::FilesCtx,
    pub(crate) docker: DockerCtx,
    pub(crate) probe: ProbeCtx,
    pub(crate) state: StateCtx,
    pub(crate) log: LogCtx,
    /// What the call wrote in its granted directories, through WASI and
    /// `files`.
    pub(crate) written: fs::Written,
}

impl Sandbox {
    /// `declared_exec`: the commands the plugin's `describe` declares.
    pub fn new(
        caller: Caller,
        grants: Grants,
        declared_exec: Vec<command::ExecCommand>,
        services: HostServices,
        memory_bytes: usize,
    ) -> anyhow::Result<Sandbox> {
        let mode = grants.mode;
        let sink = LogSink::new(caller.to_string(), LOG_CAP);
        let store = PluginState::open(services.state_dir.as_deref(), &caller.plugin_key)?;
        Ok(Sandbox {
            wasi: fs::wasi_ctx(&grants.fs, mode, &sink)?,
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_bytes),
            files: files::FilesCtx::new(grants.fs, mode),
            docker: DockerCtx::new(grants.docker, mode, declared_exec, services.docker.clone()),
            probe: ProbeCtx::new(grants.probe, mode, services.docker),
            state: StateCtx::new(store, mode, caller.to_string()),
            log: LogCtx { sink },
            written: fs::Written::default(),
        })
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

/// The memory cap of one call. It records that the cap was hit, so a trap
/// is reported as out-of-memory by what happened, not by its message.
pub struct MemoryCap {
    max: usize,
    pub(crate) hit: bool,
}

impl MemoryCap {
    fn new(max: usize) -> MemoryCap {
        MemoryCap { max, hit: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            let cap = self.max >> 20;
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {cap} MiB reached"
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold references, a few bytes each; their memory is bounded
        // by the same cap's order of magnitude.
        Ok(desired <= self.max / 8)
    }
}

/// The grants of one step.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub docker: docker::DockerGrant,
    pub probe: Vec<probe::ProbeGrant>,
    pub fs: Vec<fs::FsGrant>,
    pub mode: Mode,
}

impl Grants {
    /// The same grants for `slipway plan`.
    pub fn planning(&self) -> Grants {
        Grants {
            mode: Mode::Plan,
            ..self.clone()
        }
    }
}

/// Whether a call may change anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Apply,
    /// `slipway plan`: everything that changes state is refused.
    Plan,
}

impl Mode {
    /// The one plan-mode rule: during `slipway plan`, `what` (e.g. `docker
    /// recreate of service `api``) is refused.
    pub fn allow_change(self, what: impl fmt::Display) -> Result<(), Denied> {
        match self {
            Mode::Apply => Ok(()),
            Mode::Plan => Err(Denied(format!(
                "{what} is refused during `slipway plan`, which changes nothing"
            ))),
        }
    }

    pub fn changes_nothing(self) -> bool {
        self == Mode::Plan
    }
}

/// A refused call. The message is what the plugin (and then the operator)
/// reads, so it says which grant would allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Denied> for String {
    fn from(d: Denied) -> String {
        d.0
    }
}

/// An error from the host's own work, as the plugin receives it.
pub(crate) fn host_err(e: anyhow::Error) -> String {
    format!("{:#}", crate::docker::explain(e))
}

/// Register every capability's imports. Both worlds import the same
/// interfaces, so one linker serves both.
pub fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    // `types` holds only types; the worlds import it all the same.
    types::add_to_linker::<_, HasSelf<Sandbox>>(linker, |s| s)?;
    fs::add_to_linker(linker)?;
    files::add_to_linker(linker)?;
    docker::add_to_linker(linker)?;
    probe::add_to_linker(linker)?;
    log::add_to_linker(linker)?;
    state::add_to_linker(linker)?;
    Ok(())
}

impl types::Host for Sandbox {}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn the_memory_cap_records_that_it_was_hit() {
        let mut cap = MemoryCap::new(64 << 20);
        assert!(cap.memory_growing(0, 64 << 20, None).unwrap());
        assert!(!cap.hit);
        assert!(
            cap.memory_growing(64 << 20, (64 << 20) + 65536, None)
                .is_err()
        );
        assert!(cap.hit);
    }

    #[test]
    fn plan_mode_refuses_changes_and_says_why() {
        assert_eq!(Mode::Apply.allow_change("x"), Ok(()));
        let msg = Mode::Plan
            .allow_change("docker restart of `api`")
            .unwrap_err()
            .0;
        assert_eq!(
            msg,
            "docker restart of `api` is refused during `slipway plan`, which changes nothing"
        );
        let g = Grants::default();
        assert_eq!(g.mode, Mode::Apply, "a deploy may change things");
        assert_eq!(g.planning().mode, Mode::Plan);
    }
}
