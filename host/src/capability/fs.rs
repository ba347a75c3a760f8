//! WASI for a plugin: the granted directories as preopens (read-only, or
//! read-write outside a plan) and nothing else: no environment, no
//! arguments, stdin closed, no sockets. stdout and stderr go to the log
//! (see `log`).

use super::Mode;
use super::Sandbox;
use super::log::LogSink;
use std::path::PathBuf;
use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// One directory of `grants.fs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsGrant {
    /// Absolute, canonical host directory.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/site`.
    pub guest: String,
    pub writable: bool,
}

impl FsGrant {
    /// What the plugin may do in the directory: a plan reads only.
    pub fn perms(&self, mode: Mode) -> FsPerms {
        if self.writable && !mode.changes_nothing() {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        }
    }
}

/// The WASI context of one call.
pub fn wasi_ctx(grants: &[FsGrant], mode: Mode, log: &LogSink) -> anyhow::Result<WasiCtx> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(log.clone())
        .stderr(log.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // File operations run inline instead of bouncing through
        // spawn_blocking: a static-site publish makes tens of thousands.
        .allow_blocking_current_thread(true);
    for dir in grants {
        wasi.preopened_dir(&dir.host, &dir.guest, dir.perms(mode))
            .map_err(|e| anyhow::anyhow!("cannot preopen {}: {e}", dir.host.display()))?;
    }
    Ok(wasi.build())
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_table() {
        let grant = |writable| FsGrant {
            host: "/srv/site".into(),
            guest: "/site".into(),
            writable,
        };
        let (rw, ro) = (FsPerms::ReadWrite, FsPerms::ReadOnly);
        let cases = [
            (true, Mode::Apply, rw),
            (true, Mode::Plan, ro),
            (false, Mode::Apply, ro),
            (false, Mode::Plan, ro),
        ];
        for (writable, mode, perms) in cases {
            assert_eq!(grant(writable).perms(mode), perms, "{writable} {mode:?}");
        }
    }
}
