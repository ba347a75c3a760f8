//! The `files` import: bulk file work in the granted directories, for a
//! static-site publish of tens of thousands of files. Through WASI each file
//! costs several calls and every byte crosses the plugin's memory in 64 KiB
//! pieces: a publish ran at a third of `cp -r`'s speed, and most of that
//! was the sandbox, not the disk.
//!
//! Every path is resolved beneath the plugin's own WASI preopens by cap-std,
//! whose resolution (cap-primitives') is the one WASI's filesystem runs for
//! the plugin's `std::fs` calls: `..` and symlinks cannot leave the granted
//! directory, and writing needs a read-write grant outside a plan. So this
//! import reaches exactly what the plugin already could; only the bytes move
//! natively, copied in the kernel (`copy_file_range`) and hashed, on worker
//! threads.
//!
//! A file is opened by the worker that handles it and closed when it is
//! done, so a call holds a few descriptors per worker whatever the size of
//! the tree: a site of 20,000 directories publishes under `ulimit -n 256`.

use super::fs::FsGrant;
use super::{Denied, Mode, Sandbox};
mod tree;
use crate::bindings::slipway::plugin::files;
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::HostDescriptor;
use xxhash_rust::xxh3::Xxh3;

/// The import's state during one call: which directories are granted, and
/// whether the call may change anything.
pub struct FilesCtx {
    grants: Vec<FsGrant>,
    mode: Mode,
}

impl FilesCtx {
    pub fn new(grants: Vec<FsGrant>, mode: Mode) -> FilesCtx {
        FilesCtx { grants, mode }
    }

    /// See [`super::fs::full_disk_note`].
    pub fn full_disk_note(&self) -> Option<String> {
        super::fs::full_disk_note(&self.grants, self.mode)
    }

    /// Where `path` is: its grant's preopen and the path beneath it. The
    /// innermost grant wins, as it does for WASI.
    fn locate(&self, path: &str) -> Result<Place, Denied> {
        let grant = self
            .grants
            .iter()
            .filter(|g| beneath(path, &g.guest).is_some())
            .max_by_key(|g| g.guest.len())
            .ok_or_else(|| {
                Denied(format!(
                    "`{path}` is not in a granted directory; grant its directory in this step's grants.fs in slipway.toml"
                ))
            })?;
        let rel = beneath(path, &grant.guest).unwrap_or(".").to_owned();
        Ok(Place {
            guest: path.to_owned(),
            preopen: grant.guest.clone(),
            host: grant.host.join(&rel),
            rel,
            writable: grant.writable,
        })
    }

    fn read(&self, path: &str) -> Result<Place, Denied> {
        self.locate(path)
    }

    fn write(&self, path: &str) -> Result<Place, Denied> {
        let place = self.locate(path)?;
        if !place.writable {
            return Err(Denied(format!(
                "writing `{path}` is not granted: `{}` is granted read-only; set mode = \"rw\" on it in this step's grants.fs",
                place.preopen
            )));
        }
        self.mode.allow_change(format!("writing `{path}`"))?;
        Ok(place)
    }
}

/// `path` relative to the directory `dir`, if it is in it.
fn beneath<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(dir.trim_end_matches('/'))?;
    if rest.is_empty() {
        return Some(".");
    }
    let rest = rest.strip_prefix('/')?;
    Some(if rest.is_empty() { "." } else { rest })
}

/// A path the plugin named, located in its grant.
struct Place {
    guest: String,
    preopen: String,
    /// Where it is on the host, for the operator.
    host: std::path::PathBuf,
    rel: String,
    writable: bool,
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    files::add_to_linker::<_, HasSelf<Sandbox>>(linker, |s| s)
}

impl files::Host for Sandbox {
    async fn scan(&mut self, dir: String) -> Result<Vec<files::FileStat>, String> {
        let root = self.files.read(&dir)?;
        let roots = Roots::new(self)?;
        let dir = roots.root(&root);
        // Refused by the open below too, which would only say "not a
        // directory".
        if dir
            .symlink_metadata(&root.rel)
            .is_ok_and(|m| m.is_symlink())
        {
            let why = "it is a symlink, which is not followed";
            return Err(format!("cannot open `{}`: {why}", root.guest));
        }
        let opened = dir
            .open_dir_nofollow(&root.rel)
            .map_err(|e| failed("open", &root.guest, e))?;
        tree::scan(&opened.into_std_file(), root.guest.trim_end_matches('/'))
    }

    async fn hash(&mut self, paths: Vec<String>) -> Result<Vec<String>, String> {
        let places = paths
            .iter()
            .map(|p| self.files.read(p))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = Roots::new(self)?;
        parallel(places.len(), |i, buf| {
            let file = roots.open(&places[i])?;
            xxh3(&file, None, buf).map_err(|e| failed("hash", &places[i].guest, e))
        })
    }

    async fn copy(&mut self, pairs: Vec<(String, String)>) -> Result<Vec<String>, String> {
        let places = pairs
            .iter()
            .map(|(from, to)| Ok((self.files.read(from)?, self.files.write(to)?)))
            .collect::<Result<Vec<_>, Denied>>()?;
        for (_, to) in &places {
            let file = self.written.named().then(|| to.host.display().to_string());
            self.written.record(file);
        }
        let roots = Roots::new(self)?;
        parallel(places.len(), |i, buf| {
            let (from, to) = &places[i];
            let source = roots.open(from)?;
            let copy = roots.create(to)?;
            // Hashed from what landed, so the hash is the release's content
            // even if the source changes meanwhile.
            std::io::copy(&mut &source, &mut &copy)
                .and_then(|copied| xxh3(&copy, Some(copied), buf))
                .map_err(|e| failed("copy to", &to.guest, e))
        })
    }

    async fn link(&mut self, pairs: Vec<(String, String)>) -> Result<(), String> {
        // A hard link shares the file: the plugin could write it through
        // either name, so both must be granted read-write.
        let places = pairs
            .iter()
            .map(|(existing, new)| Ok((self.files.write(existing)?, self.files.write(new)?)))
            .collect::<Result<Vec<_>, Denied>>()?;
        for (_, new) in &places {
            let file = self.written.named().then(|| new.host.display().to_string());
            self.written.record(file);
        }
        let roots = Roots::new(self)?;
        parallel(places.len(), |i, _| {
            let (existing, new) = &places[i];
            roots.link(existing, new)
        })
        .map(drop)
    }
}

/// The plugin's preopens for one call, as host directories (one descriptor
/// each), and the directories this call has made.
struct Roots {
    dirs: HashMap<String, Dir>,
    made: Mutex<HashSet<String>>,
}

impl Roots {
    fn new(sandbox: &mut Sandbox) -> Result<Roots, String> {
        let mut view = sandbox.filesystem();
        let preopens = preopens::Host::get_directories(&mut view)
            .map_err(|e| format!("cannot open the granted directories: {e:#}"))?;
        let mut dirs = HashMap::new();
        let mut failure = None;
        for (fd, name) in preopens {
            if let Ok(Descriptor::Dir(d)) = view.table.get(&fd) {
                match d.dir.try_clone() {
                    Ok(dir) => drop(dirs.insert(name, Dir::from_std_file(dir))),
                    Err(e) => failure = Some(failed("open", &name, e)),
                }
            }
            let _ = HostDescriptor::drop(&mut view, fd);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Roots {
                dirs,
                made: Mutex::new(HashSet::new()),
            }),
        }
    }

    fn root(&self, place: &Place) -> &Dir {
        &self.dirs[&place.preopen]
    }

    /// `place` to read, as WASI opens it (a symlink as the last component is
    /// not followed), and only if it is a regular file: a FIFO or a device
    /// would block the read or never end it. `O_NONBLOCK` keeps the open of
    /// a FIFO itself from waiting for a writer.
    fn open(&self, place: &Place) -> Result<std::fs::File, String> {
        let mut options = OpenOptions::new();
        options
            .read(true)
            .follow(FollowSymlinks::No)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
        let file = self
            .root(place)
            .open_with(&place.rel, &options)
            .map_err(|e| failed("open", &place.guest, e))?
            .into_std();
        match file.metadata() {
            Ok(meta) if meta.is_file() => Ok(file),
            Ok(meta) if meta.is_dir() => {
                Err(format!("cannot open `{}`: it is a directory", place.guest))
            }
            Ok(_) => Err(format!(
                "cannot open `{}`: it is not a regular file (a FIFO, socket or device), which is never read",
                place.guest
            )),
            Err(e) => Err(failed("open", &place.guest, e)),
        }
    }

    /// A new file at `place`, with its missing parents; never one that
    /// exists, nor through a symlink.
    fn create(&self, place: &Place) -> Result<std::fs::File, String> {
        self.make_parents(place)?;
        let mut options = OpenOptions::new();
        options
            .read(true)
            .write(true)
            .create_new(true)
            .follow(FollowSymlinks::No);
        self.root(place)
            .open_with(&place.rel, &options)
            .map(|f| f.into_std())
            .map_err(|e| failed("copy to", &place.guest, e))
    }

    /// `linkat` without following `existing` if it is a symlink, as WASI's
    /// link-at does.
    fn link(&self, existing: &Place, new: &Place) -> Result<(), String> {
        self.make_parents(new)?;
        self.root(existing)
            .hard_link(&existing.rel, self.root(new), &new.rel)
            .map_err(|e| {
                let (from, to) = (&existing.guest, &new.guest);
                format!("cannot link `{from}` to `{to}`: {}", why(e))
            })
    }

    /// Create the missing parent directories of `place`, each once per
    /// call, and refuse a path that names no file.
    fn make_parents(&self, place: &Place) -> Result<(), String> {
        let (parent, name) = place.rel.rsplit_once('/').unwrap_or((".", &place.rel));
        if matches!(name, "" | "." | "..") {
            return Err(format!("`{}` names no file", place.guest));
        }
        let key = format!("{}/{parent}", place.preopen);
        if parent == "." || self.lock_made().contains(&key) {
            return Ok(());
        }
        match self.root(place).create_dir_all(parent) {
            Ok(()) => drop(self.lock_made().insert(key)),
            // Something that is not a directory, a symlink say: resolving
            // the path says what.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed("create", &key, e)),
        }
        Ok(())
    }

    /// The set, even after a worker panicked holding it: an entry is only
    /// ever added whole.
    fn lock_made(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `cannot {what} `{path}`: …`, saying why in the plugin's terms.
fn failed(what: &str, path: &str, e: std::io::Error) -> String {
    format!("cannot {what} `{path}`: {}", why(e))
}

fn why(e: std::io::Error) -> String {
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        // O_NOFOLLOW on the last component.
        Some(rustix::io::Errno::LOOP) => "it is a symlink, which is not followed".to_owned(),
        Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE) => format!(
            "too many open files ({e}); this process may open {}: raise `ulimit -n` where slipway runs",
            open_files_limit()
        ),
        // What cap-primitives answers for a path that would leave its
        // directory.
        _ if e.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("not permitted ({e}): a path may not leave its granted directory")
        }
        _ => e.to_string(),
    }
}

/// The soft limit on open files, as `ulimit -n` shows it.
fn open_files_limit() -> String {
    match rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
        Some(n) => n.to_string(),
        None => "unlimited".into(),
    }
}

/// How many threads the bulk calls use: the disk and the kernel do the work,
/// so a few more than two cores gain nothing.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// Run `job` for each index `0..len` on a few worker threads, each with its
/// own read buffer, handing out no more work after a failure. Returns the
/// results in order, or the failure of the lowest index that failed.
fn parallel<T: Send>(
    len: usize,
    job: impl Fn(usize, &mut [u8]) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let work = || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= len {
                break;
            }
            let result = job(i, &mut buf);
            stop.fetch_or(result.is_err(), Ordering::Relaxed);
            done.push((i, result));
        }
        done
    };
    let done: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..workers().min(len))
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
            .collect();
        // With no thread to be had, this one does the work.
        let mut done = if threads.is_empty() {
            work()
        } else {
            Vec::new()
        };
        for thread in threads {
            match thread.join() {
                Ok(results) => done.extend(results),
                Err(_) => done.push((0, Err("a file worker thread stopped".to_owned()))),
            }
        }
        done
    });
    let mut slots: Vec<Option<T>> = (0..len).map(|_| None).collect();
    let mut first_failure: Option<(usize, String)> = None;
    for (i, result) in done {
        match result {
            Ok(value) => slots[i] = Some(value),
            Err(e) if first_failure.as_ref().is_none_or(|(at, _)| i < *at) => {
                first_failure = Some((i, e));
            }
            Err(_) => {}
        }
    }
    if let Some((_, e)) = first_failure {
        return Err(e);
    }
    slots
        .into_iter()
        .map(|slot| slot.ok_or_else(|| "a file worker thread stopped".to_owned()))
        .collect()
}

/// The XXH3-128 of `file`, as 32 hex digits: of its first `len` bytes, or
/// all of it.
fn xxh3(file: &std::fs::File, len: Option<u64>, buf: &mut [u8]) -> std::io::Result<String> {
    let mut hasher = Xxh3::new();
    let mut at = 0;
    while len.is_none_or(|len| at < len) {
        let n = file.read_at(buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Grants;
    use crate::sandbox::{Caller, HostServices};
    use files::Host as _;
    use std::path::Path;

    /// A build granted read-only at /build, a site granted read-write at
    /// /site, and a secret next to them that neither grant reaches.
    struct Fixture {
        root: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let p = root.path();
            std::fs::create_dir_all(p.join("build/d/e")).unwrap();
            std::fs::create_dir_all(p.join("site")).unwrap();
            std::fs::create_dir_all(p.join("outside")).unwrap();
            std::fs::write(p.join("build/a.txt"), "alpha").unwrap();
            std::fs::write(p.join("build/d/e/b.txt"), "beta").unwrap();
            std::fs::write(p.join("outside/secret"), "secret").unwrap();
            Fixture { root }
        }

        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.root.path().join(rel)
        }

        fn sandbox(&self, mode: Mode) -> Sandbox {
            let grant = |host: &str, guest: &str, writable| FsGrant {
                host: self.path(host).canonicalize().unwrap(),
                guest: guest.into(),
                writable,
            };
            let grants = Grants {
                fs: vec![
                    grant("build", "/build", false),
                    grant("site", "/site", true),
                ],
                mode,
                ..Grants::default()
            };
            let caller = Caller {
                surface: "website".into(),
                step: 0,
                plugin_key: "astro".into(),
                plugin: "astro".into(),
                version: "0.1.0".into(),
            };
            let services = HostServices {
                docker: None,
                state_dir: None,
            };
            Sandbox::new(caller, grants, Vec::new(), services, 64 << 20).unwrap()
        }
    }

    fn pair(from: &str, to: &str) -> (String, String) {
        (from.to_owned(), to.to_owned())
    }

    fn xxh3(bytes: &[u8]) -> String {
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
    }

    fn exists(p: &Path) -> bool {
        p.symlink_metadata().is_ok()
    }

    #[tokio::test]
    async fn scans_hashes_copies_and_links_in_the_grants() {
        let f = Fixture::new();
        let mut s = f.sandbox(Mode::Apply);
        let found = s.scan("/build".into()).await.unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "d/e/b.txt"]);
        let meta = std::fs::metadata(f.path("build/a.txt")).unwrap();
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(found[0].size, 5);
        assert_eq!(found[0].modified_ns, Some(mtime.as_nanos() as u64));
        assert!(found[0].changed_ns.is_some() && !found[0].symlink);
        assert_eq!(s.scan("/build/d".into()).await.unwrap()[0].path, "e/b.txt");

        let hashes = s.hash(vec!["/build/a.txt".into()]).await.unwrap();
        assert_eq!(hashes, [xxh3(b"alpha")]);
        let copied = s
            .copy(vec![
                pair("/build/a.txt", "/site/r1/a.txt"),
                pair("/build/d/e/b.txt", "/site/r1/d/e/b.txt"),
            ])
            .await
            .unwrap();
        assert_eq!(copied, [xxh3(b"alpha"), xxh3(b"beta")]);
        assert_eq!(std::fs::read(f.path("site/r1/d/e/b.txt")).unwrap(), b"beta");
        s.link(vec![pair("/site/r1/a.txt", "/site/r2/x/a.txt")])
            .await
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| std::fs::metadata(f.path(p)).unwrap().ino();
        assert_eq!(ino("site/r1/a.txt"), ino("site/r2/x/a.txt"));
        // A copy never overwrites: an existing target fails the call.
        let again = s.copy(vec![pair("/build/a.txt", "/site/r1/a.txt")]).await;
        let again = again.unwrap_err();
        assert!(
            again.contains("cannot copy to `/site/r1/a.txt`: File exists"),
            "{again}"
        );
    }

    #[tokio::test]
    async fn a_path_outside_every_grant_is_denied() {
        let f = Fixture::new();
        let mut s = f.sandbox(Mode::Apply);
        let secret = f.path("outside/secret").display().to_string();
        for err in [
            s.scan("/".into()).await.unwrap_err(),
            s.scan("/buildx".into()).await.unwrap_err(),
            s.hash(vec![secret.clone()]).await.unwrap_err(),
            s.copy(vec![pair(&secret, "/site/x")]).await.unwrap_err(),
            s.copy(vec![pair("/build/a.txt", "/tmp/x")])
                .await
                .unwrap_err(),
            s.link(vec![pair("/site/a", "/sitex/a")]).await.unwrap_err(),
        ] {
            assert!(err.contains("is not in a granted directory"), "{err}");
            assert!(err.contains("grants.fs"), "{err}");
        }
        assert!(!exists(&f.path("site/x")));
    }

    #[tokio::test]
    async fn writing_a_read_only_grant_is_denied() {
        let f = Fixture::new();
        let mut s = f.sandbox(Mode::Apply);
        let copy = s
            .copy(vec![pair("/site/..", "/build/x")])
            .await
            .unwrap_err();
        // A hard link would let the plugin write the build through the
        // site's name for it.
        let link = s
            .link(vec![pair("/build/a.txt", "/site/a.txt")])
            .await
            .unwrap_err();
        for err in [copy, link] {
            assert!(err.contains("`/build` is granted read-only"), "{err}");
            assert!(err.contains("mode = \"rw\""), "{err}");
        }
        assert!(!exists(&f.path("build/x")) && !exists(&f.path("site/a.txt")));
    }

    #[tokio::test]
    async fn a_plan_reads_but_writes_nothing() {
        let f = Fixture::new();
        let mut s = f.sandbox(Mode::Plan);
        assert_eq!(s.scan("/site".into()).await.unwrap().len(), 0);
        assert_eq!(s.hash(vec!["/build/a.txt".into()]).await.unwrap().len(), 1);
        let copy = s
            .copy(vec![pair("/build/a.txt", "/site/a.txt")])
            .await
            .unwrap_err();
        let link = s.link(vec![pair("/site/a", "/site/b")]).await.unwrap_err();
        for err in [copy, link] {
            assert!(err.contains("refused during `slipway plan`"), "{err}");
        }
        assert!(!exists(&f.path("site/a.txt")));
    }

    #[tokio::test]
    async fn dot_dot_cannot_leave_a_grant() {
        let f = Fixture::new();
        let mut s = f.sandbox(Mode::Apply);
        let read = s
            .copy(vec![pair("/build/../outside/secret", "/site/stolen")])
            .await
            .unwrap_err();
        let write = s
            .copy(vec![pair("/build/a.txt", "/site/../outside/planted")])
            .await
            .unwrap_err();
        let scan = s.scan("/build/..".into()).await.unwrap_err();
        for err in [read, write, scan] {
            assert!(err.contains("not permitted"), "{err}");
        }
        assert!(!exists(&f.path("site/stolen")));
        assert!(!exists(&f.path("outside/planted")));
        // `..` that stays inside resolves, as it does for WASI.
        let inside = s.hash(vec!["/build/d/../a.txt".into()]).await.unwrap();
        assert_eq!(inside, [xxh3(b"alpha")]);
    }

    #[tokio::test]
    async fn symlinks_cannot_leave_a_grant() {
        let f = Fixture::new();
        let outside = f.path("outside");
        // Links a plugin could have planted, absolute and relative.
        std::os::unix::fs::symlink(&outside, f.path("site/evil")).unwrap();
        std::fs::write(f.path("site/ok"), "ok").unwrap();
        std::os::unix::fs::symlink("../outside", f.path("build/up")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), f.path("build/leak")).unwrap();
        let mut s = f.sandbox(Mode::Apply);
        let errors = [
            // Through a symlinked parent, to write and to read.
            s.copy(vec![pair("/build/a.txt", "/site/evil/planted")])
                .await
                .unwrap_err(),
            s.copy(vec![pair("/build/up/secret", "/site/s1")])
                .await
                .unwrap_err(),
            s.hash(vec!["/build/up/secret".into()]).await.unwrap_err(),
            s.link(vec![pair("/site/evil/secret", "/site/s2")])
                .await
                .unwrap_err(),
            s.link(vec![pair("/site/ok", "/site/evil/planted")])
                .await
                .unwrap_err(),
        ];
        for err in &errors {
            assert!(err.contains("not permitted"), "{err}");
        }
        // A symlink as the last component is not followed at all.
        let last = [
            s.copy(vec![pair("/build/leak", "/site/s3")])
                .await
                .unwrap_err(),
            s.scan("/build/up".into()).await.unwrap_err(),
            s.scan("/site/evil".into()).await.unwrap_err(),
        ];
        for err in &last {
            assert!(err.contains("is a symlink, which is not followed"), "{err}");
        }
        assert!(!exists(&outside.join("planted")));
        let dots = s.link(vec![pair("/site/ok", "/site/..")]).await;
        assert!(dots.unwrap_err().contains("`/site/..` names no file"));
        for s in ["s1", "s2", "s3"] {
            assert!(!exists(&f.path("site").join(s)), "{s}");
        }
        // A scan reports symlinks without following them.
        let found = s.scan("/build".into()).await.unwrap();
        let links: Vec<&str> = found
            .iter()
            .filter(|f| f.symlink)
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(links, ["leak", "up"]);
    }

    /// A directory per page, as Astro writes a site, far more directories
    /// than the process may hold open: each is opened as it is worked on.
    #[tokio::test]
    async fn a_tree_of_many_directories_is_worked_on_under_a_small_open_files_limit() {
        let f = Fixture::new();
        let pages = 3000;
        let mut hashes = Vec::new();
        let mut pairs = Vec::new();
        for n in 0..pages {
            let dir = f.path(&format!("build/l{}/page{n:04}", n % 7));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("index.html"), format!("page {n}")).unwrap();
            hashes.push(xxh3(format!("page {n}").as_bytes()));
            let rel = format!("l{}/page{n:04}/index.html", n % 7);
            pairs.push((format!("/build/{rel}"), format!("/site/r1/{rel}")));
        }
        let mut s = f.sandbox(Mode::Apply);
        // This test's process alone (nextest runs each in its own).
        let limit = rustix::process::Rlimit {
            current: Some(64),
            maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
        assert_eq!(s.scan("/build".into()).await.unwrap().len(), pages + 2);
        let sources: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
        assert_eq!(s.hash(sources).await.unwrap(), hashes);
        assert_eq!(s.copy(pairs.clone()).await.unwrap(), hashes);
        let links = pairs
            .iter()
            .map(|(_, to)| (to.clone(), to.replace("/site/r1/", "/site/r2/")))
            .collect();
        s.link(links).await.unwrap();
        let last = format!(
            "site/r2/l{}/page{:04}/index.html",
            (pages - 1) % 7,
            pages - 1
        );
        assert_eq!(
            std::fs::read_to_string(f.path(&last)).unwrap(),
            format!("page {}", pages - 1)
        );
    }

    /// A FIFO would block the open (no writer) or the read, a device such
    /// as /dev/zero would never end it: neither is read.
    #[tokio::test]
    async fn a_fifo_is_refused_at_once_as_anything_but_a_file_is() {
        let f = Fixture::new();
        let fifo = f.path("build/pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let mut s = f.sandbox(Mode::Apply);
        let start = std::time::Instant::now();
        let errors = [
            s.hash(vec!["/build/pipe".into()]).await.unwrap_err(),
            s.copy(vec![pair("/build/pipe", "/site/pipe")])
                .await
                .unwrap_err(),
        ];
        for err in &errors {
            assert!(err.contains("it is not a regular file"), "{err}");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert!(!exists(&f.path("site/pipe")));
    }

    #[test]
    fn paths_are_located_in_the_innermost_grant() {
        let grant = |guest: &str, writable| FsGrant {
            host: "/srv".into(),
            guest: guest.into(),
            writable,
        };
        let ctx = FilesCtx::new(
            vec![grant("/site", true), grant("/site/ro", false)],
            Mode::Apply,
        );
        let at = |p: &str| ctx.locate(p).map(|p| (p.preopen, p.rel));
        assert_eq!(at("/site"), Ok(("/site".into(), ".".into())));
        assert_eq!(at("/site/"), Ok(("/site".into(), ".".into())));
        assert_eq!(at("/site/a/b"), Ok(("/site".into(), "a/b".into())));
        assert_eq!(at("/site/ro/x"), Ok(("/site/ro".into(), "x".into())));
        assert!(at("/sitex").is_err() && at("site/a").is_err() && at("").is_err());
        assert!(ctx.write("/site/ro/x").is_err() && ctx.write("/site/x").is_ok());
    }
}
