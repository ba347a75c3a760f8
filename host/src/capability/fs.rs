//! WASI for a plugin: the granted directories as preopens (read-only, or
//! read-write outside a plan) and nothing else: no environment, no
//! arguments, stdin closed, no sockets. stdout and stderr go to the log
//! (see `log`). A symlink the plugin creates must point down, inside the
//! directory that holds it (see [`symlink_refused`]), and only regular
//! files and directories open (see [`open_at`]).

use super::Mode;
use super::Sandbox;
use super::log::LogSink;
use std::path::PathBuf;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::FsResult;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, Host as _, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// The WASI filesystem interface wasmtime-wasi links, whose `symlink-at`
/// this module replaces. Imports of earlier 0.2 versions link to it too.
const FS_TYPES: &str = "wasi:filesystem/types@0.2.12";

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

/// Free space under which a granted filesystem counts as full. A write that
/// failed for space leaves about nothing free; 1 MiB covers what a
/// filesystem keeps back for its own metadata.
const FULL_BYTES: u64 = 1 << 20;

/// The read-write grants of a call whose filesystem is full, as a note for
/// its error. The plugin may not be able to say so: a failed write through
/// a WASI stream (`std::fs::write`) reaches it as `EIO`, not `ENOSPC`.
pub fn full_disk_note(grants: &[FsGrant], mode: Mode) -> Option<String> {
    let full: Vec<String> = grants
        .iter()
        .filter(|g| g.perms(mode) == FsPerms::ReadWrite)
        .filter_map(|g| {
            let free = free_space(&g.host)?;
            let shown = format!("`{}` ({}: {free} bytes free)", g.guest, g.host.display());
            (free < FULL_BYTES || free_inodes(&g.host) == Some(0)).then_some(shown)
        })
        .collect();
    match full.as_slice() {
        [] => None,
        [one] => Some(format!(
            "the granted directory {one} is full; free space there, or grant a directory on a larger filesystem"
        )),
        many => Some(format!(
            "the granted directories {} are full; free space there, or grant directories on a larger filesystem",
            many.join(", ")
        )),
    }
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem.
fn free_space(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Inodes left on `dir`'s filesystem, where it counts them (btrfs, for one,
/// reports none at all).
fn free_inodes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    (stat.f_files > 0).then_some(stat.f_favail)
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
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // wasmtime-wasi (cap-std) refuses an absolute target but creates any
    // relative one, `../../etc` too: the plugin itself could not follow it,
    // but nginx serving the grant, or the host, would. So `symlink-at` is
    // replaced by one that checks the target first, and `open-at` by one
    // that opens only regular files and directories.
    // The calls that change a directory are wrapped too, to record what
    // the call wrote: a plugin that refuses after writing has changed
    // something (see [`Written`]).
    linker.allow_shadowing(true);
    let defined = shadow(&mut linker.instance(FS_TYPES)?);
    linker.allow_shadowing(false);
    defined
}

fn shadow(types: &mut wasmtime::component::LinkerInstance<'_, Sandbox>) -> wasmtime::Result<()> {
    types.func_wrap_async("[method]descriptor.symlink-at", |mut store, args| {
        Box::new(async move { symlink_at(store.data_mut(), args).await })
    })?;
    types.func_wrap_async("[method]descriptor.open-at", |mut store, args| {
        Box::new(async move { open_at(store.data_mut(), args).await })
    })?;
    types.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store, (dir, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let sandbox = store.data_mut();
                let changed = (Resource::new_borrow(dir.rep()), path.clone());
                let done =
                    HostDescriptor::create_directory_at(&mut sandbox.filesystem(), dir, path).await;
                wrote(sandbox, changed, done)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.unlink-file-at",
        |mut store, (dir, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let sandbox = store.data_mut();
                let changed = (Resource::new_borrow(dir.rep()), path.clone());
                let done =
                    HostDescriptor::unlink_file_at(&mut sandbox.filesystem(), dir, path).await;
                wrote(sandbox, changed, done)
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.rename-at",
        |mut store, (dir, from, to_dir, to): (Resource<Descriptor>, String, Resource<Descriptor>, String)| {
            Box::new(async move {
                let sandbox = store.data_mut();
                let changed = (Resource::new_borrow(to_dir.rep()), to.clone());
                let done = HostDescriptor::rename_at(&mut sandbox.filesystem(), dir, from, to_dir, to).await;
                wrote(sandbox, changed, done)
            })
        },
    )
}

/// `open-at`: wasmtime-wasi's, for anything but a FIFO, socket or device.
/// Opening a FIFO blocks until a writer comes, on the thread that runs the
/// plugin (its file calls run inline), where the call's timeout cannot stop
/// it; a device may never end. A build or a container sharing the
/// directory can leave one there, so the path is looked at first, as the
/// open would follow it. (A file swapped for a FIFO between the two calls
/// would still be opened: that takes a process racing the plugin inside
/// the grant, which could as well fill it.)
async fn open_at(
    sandbox: &mut Sandbox,
    (dir, path_flags, path, oflags, flags): (
        Resource<Descriptor>,
        PathFlags,
        String,
        OpenFlags,
        DescriptorFlags,
    ),
) -> wasmtime::Result<(Result<Resource<Descriptor>, ErrorCode>,)> {
    let mut fs = sandbox.filesystem();
    let at = Resource::new_borrow(dir.rep());
    if let Ok(stat) = HostDescriptor::stat_at(&mut fs, at, path_flags, path.clone()).await
        && !matches!(
            stat.type_,
            DescriptorType::RegularFile | DescriptorType::Directory | DescriptorType::SymbolicLink
        )
    {
        let file = host_path(sandbox, &dir, &path);
        let kind = kind(&file, path_flags);
        tracing::warn!(
            "{}: refused to open `{path}` ({file}): it is {kind}, which a plugin never opens (only regular files and directories); \
             remove it from the granted directory",
            sandbox.log.sink.caller()
        );
        return Ok((Err(ErrorCode::Access),));
    }
    let writes = flags.contains(DescriptorFlags::WRITE)
        || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
    let changed = writes.then(|| (Resource::new_borrow(dir.rep()), path.clone()));
    let opened = HostDescriptor::open_at(
        &mut sandbox.filesystem(),
        dir,
        path_flags,
        path,
        oflags,
        flags,
    )
    .await;
    match changed {
        Some(changed) => wrote(sandbox, changed, opened),
        None => to_guest(sandbox, opened),
    }
}

/// A filesystem call's result as the plugin receives it: an error code,
/// or a trap for what is not one.
fn to_guest<T>(
    sandbox: &mut Sandbox,
    done: FsResult<T>,
) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    match done {
        Ok(value) => Ok((Ok(value),)),
        Err(e) => Ok((Err(sandbox.filesystem().convert_error_code(e)?),)),
    }
}

/// What one call wrote in its granted directories, by host path: the first
/// few, and how many in all.
#[derive(Debug, Default)]
pub struct Written {
    first: Vec<String>,
    count: usize,
}

impl Written {
    const SHOWN: usize = 3;

    /// Whether the next write is one shown by name: only those are worth
    /// finding the host path of (a publish writes thousands).
    pub fn named(&self) -> bool {
        self.first.len() < Self::SHOWN
    }

    /// One more write, by host path when it is [`Written::named`].
    pub fn record(&mut self, path: Option<String>) {
        if let Some(path) = path.filter(|_| self.named()) {
            self.first.push(path);
        }
        self.count += 1;
    }

    /// `/srv/site/releases/x, /srv/site/current and 40 more`, if anything.
    pub fn describe(&self) -> Option<String> {
        let shown = self.first.join(", ");
        match self.count - self.first.len() {
            _ if self.count == 0 => None,
            0 => Some(shown),
            more => Some(format!("{shown} and {more} more")),
        }
    }
}

/// [`to_guest`] of a call that changed `path` under `dir`, recorded as
/// written when the call succeeded.
fn wrote<T>(
    sandbox: &mut Sandbox,
    (dir, path): (Resource<Descriptor>, String),
    done: FsResult<T>,
) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    if done.is_ok() {
        let named = sandbox.written.named();
        let file = named.then(|| host_path(sandbox, &dir, &path));
        sandbox.written.record(file);
    }
    to_guest(sandbox, done)
}

/// The host path of `path` under the plugin's directory `dir`, for the
/// operator; `path` as the plugin gave it when that cannot be told.
fn host_path(sandbox: &Sandbox, dir: &Resource<Descriptor>, path: &str) -> String {
    use std::os::unix::io::AsRawFd;
    let Ok(Descriptor::Dir(d)) = sandbox.table.get(dir) else {
        return path.to_owned();
    };
    match std::fs::read_link(format!("/proc/self/fd/{}", d.dir.as_raw_fd())) {
        Ok(dir) => dir.join(path).display().to_string(),
        Err(_) => path.to_owned(),
    }
}

/// What kind of file the host path `file` is, when it is none a plugin
/// opens. (wasmtime-wasi reports a FIFO and a device alike, as of an
/// unknown type.)
fn kind(file: &str, flags: PathFlags) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let meta = match flags.contains(PathFlags::SYMLINK_FOLLOW) {
        true => std::fs::metadata(file),
        false => std::fs::symlink_metadata(file),
    };
    match meta.map(|m| m.file_type()) {
        Ok(t) if t.is_fifo() => "a FIFO",
        Ok(t) if t.is_socket() => "a socket",
        Ok(t) if t.is_char_device() => "a character device",
        Ok(t) if t.is_block_device() => "a block device",
        _ => "not a regular file or directory",
    }
}

/// `symlink-at`: wasmtime-wasi's, for a target [`symlink_refused`] allows.
async fn symlink_at(
    sandbox: &mut Sandbox,
    (dir, target, link): (Resource<Descriptor>, String, String),
) -> wasmtime::Result<(Result<(), ErrorCode>,)> {
    if let Some(why) = symlink_refused(&target) {
        tracing::warn!(
            "{}: refused to create the symlink `{link}` -> `{target}`: {why}; \
             a plugin may only create a symlink to a relative path without `..`, \
             which stays inside the directory that holds it",
            sandbox.log.sink.caller()
        );
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    let changed = (Resource::new_borrow(dir.rep()), link.clone());
    let done = HostDescriptor::symlink_at(&mut sandbox.filesystem(), dir, target, link).await;
    wrote(sandbox, changed, done)
}

/// Why a plugin may not create a symlink to `target`, if it may not. The
/// target must go down: relative, without `..`. Such a link resolves inside
/// the directory that holds it wherever it is later renamed or hard-linked
/// to, so nothing that follows it leaves the grant. A `..` that stays inside
/// today is refused too, since moving the link (or its directory) up would
/// take it out.
fn symlink_refused(target: &str) -> Option<&'static str> {
    if target.starts_with('/') {
        Some("its target is absolute")
    } else if target.split('/').any(|part| part == "..") {
        Some("its target climbs with `..`")
    } else if target.is_empty() {
        Some("its target is empty")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_may_only_point_down() {
        for allowed in [
            "releases/20250101T000000000Z-ab",
            "file.txt",
            "./a",
            "a/./b",
            "a..b",
        ] {
            assert_eq!(symlink_refused(allowed), None, "{allowed}");
        }
        for (refused, why) in [
            ("../../outside", "climbs"),
            ("..", "climbs"),
            ("a/../../b", "climbs"),
            ("a/..", "climbs"),
            ("/etc/passwd", "absolute"),
            ("", "empty"),
        ] {
            let said = symlink_refused(refused).unwrap_or_default();
            assert!(said.contains(why), "{refused}: {said}");
        }
    }

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
