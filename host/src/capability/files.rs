//! The `files` import: bulk file work in the granted directories, for a
//! static-site publish of tens of thousands of files. Through WASI each file
//! costs several calls and every byte crosses the plugin's memory in 64 KiB
//! pieces: a publish ran at a third of `cp -r`'s speed, and most of that
//! was the sandbox, not the disk.
//!
//! Every path is resolved through the plugin's own WASI preopens, by the
//! same cap-primitives code as its `std::fs` calls: beneath the granted
//! directory it names, with `..` and symlinks unable to leave it, read-only
//! where the grant (or a plan) is. So this import reaches exactly what the
//! plugin already could; only the bytes move natively, copied in the kernel
//! (`copy_file_range`) and hashed on worker threads.

use super::fs::FsGrant;
use super::{Denied, Mode, Sandbox};
mod tree;
use crate::bindings::slipway::plugin::files;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::FsError;
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
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
        Ok(Place {
            guest: path.to_owned(),
            preopen: grant.guest.clone(),
            rel: beneath(path, &grant.guest).unwrap_or(".").to_owned(),
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
    rel: String,
    writable: bool,
}

pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    files::add_to_linker::<_, HasSelf<Sandbox>>(linker, |s| s)
}

impl files::Host for Sandbox {
    async fn scan(&mut self, dir: String) -> Result<Vec<files::FileStat>, String> {
        let root = self.files.read(&dir)?;
        let mut wasi = Wasi::new(self)?;
        let result = wasi.scan(&root).await;
        wasi.close();
        result
    }

    async fn hash(&mut self, paths: Vec<String>) -> Result<Vec<String>, String> {
        let places = paths
            .iter()
            .map(|p| self.files.read(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut wasi = Wasi::new(self)?;
        let mut pool = Pool::new(places.len());
        let mut result = Ok(());
        for (i, place) in places.iter().enumerate() {
            result = match wasi.open(place).await {
                Ok(file) => pool.send(i, Work::Hash(file), &place.guest),
                Err(e) => Err(e),
            };
            if result.is_err() {
                break;
            }
        }
        wasi.close();
        let hashes = pool.finish();
        result.and(hashes)
    }

    async fn copy(&mut self, pairs: Vec<(String, String)>) -> Result<Vec<String>, String> {
        let places = pairs
            .iter()
            .map(|(from, to)| Ok((self.files.read(from)?, self.files.write(to)?)))
            .collect::<Result<Vec<_>, Denied>>()?;
        let mut wasi = Wasi::new(self)?;
        let mut pool = Pool::new(places.len());
        let mut result = Ok(());
        for (i, (from, to)) in places.iter().enumerate() {
            result = async {
                let from = wasi.open(from).await?;
                wasi.make_parents(to).await?;
                // Created by the worker, in the parent WASI opened: inode
                // allocation is most of a copy's cost, and this spreads it.
                let (dir, name) = wasi.in_parent(to).await?;
                let work = Work::Copy { from, dir, name };
                pool.send(i, work, &to.guest)
            }
            .await;
            if result.is_err() {
                break;
            }
        }
        // The workers create files in the parents, so these stay open
        // until they are done.
        let hashes = pool.finish();
        wasi.close();
        result.and(hashes)
    }

    async fn link(&mut self, pairs: Vec<(String, String)>) -> Result<(), String> {
        // A hard link shares the file: the plugin could write it through
        // either name, so both must be granted read-write.
        let places = pairs
            .iter()
            .map(|(existing, new)| Ok((self.files.write(existing)?, self.files.write(new)?)))
            .collect::<Result<Vec<_>, Denied>>()?;
        let mut wasi = Wasi::new(self)?;
        let mut result = Ok(());
        for (existing, new) in &places {
            result = wasi.link(existing, new).await;
            if result.is_err() {
                break;
            }
        }
        wasi.close();
        result
    }
}

/// The plugin's preopens, for one call.
struct Wasi<'a> {
    view: WasiFilesystemCtxView<'a>,
    preopens: Vec<(Resource<Descriptor>, String)>,
    /// Directories known to exist, so each is created once per call.
    made: HashSet<String>,
    /// Parent directories opened for `link` and `copy`, with their host
    /// files.
    parents: HashMap<String, (Resource<Descriptor>, Arc<std::fs::File>)>,
}

impl Wasi<'_> {
    fn new(sandbox: &mut Sandbox) -> Result<Wasi<'_>, String> {
        let mut view = sandbox.filesystem();
        let preopens = preopens::Host::get_directories(&mut view)
            .map_err(|e| format!("cannot open the granted directories: {e:#}"))?;
        Ok(Wasi {
            view,
            preopens,
            made: HashSet::new(),
            parents: HashMap::new(),
        })
    }

    /// A borrowed handle to `place`'s preopen.
    fn preopen(&self, place: &Place) -> Resource<Descriptor> {
        let (fd, _) = self
            .preopens
            .iter()
            .find(|(_, name)| *name == place.preopen)
            .expect("every grant is preopened");
        Resource::new_borrow(fd.rep())
    }

    /// Open `place` to read as WASI would (`std::fs::File::open`, not
    /// following a symlink), and take the host file out of the plugin's
    /// table.
    async fn open(&mut self, place: &Place) -> Result<Arc<std::fs::File>, String> {
        let (oflags, flags) = (OpenFlags::empty(), DescriptorFlags::READ);
        let dir = self.preopen(place);
        let fd = self
            .view
            .open_at(dir, PathFlags::empty(), place.rel.clone(), oflags, flags)
            .await
            .map_err(|e| failed("open", &place.guest, e))?;
        match self.view.table.delete(fd) {
            Ok(Descriptor::File(f)) => Ok(f.file),
            Ok(Descriptor::Dir(_)) => {
                Err(format!("cannot open `{}`: it is a directory", place.guest))
            }
            Err(e) => Err(format!("cannot open `{}`: {e}", place.guest)),
        }
    }

    /// Create the missing parent directories of `place`, top down.
    async fn make_parents(&mut self, place: &Place) -> Result<(), String> {
        let Some((parent, _)) = place.rel.rsplit_once('/') else {
            return Ok(());
        };
        if self.made.contains(&format!("{}/{parent}", place.preopen)) {
            return Ok(());
        }
        let ends = parent.match_indices('/').map(|(i, _)| i);
        for end in ends.chain([parent.len()]) {
            let key = format!("{}/{}", place.preopen, &parent[..end]);
            if self.made.contains(&key) {
                continue;
            }
            let dir = self.preopen(place);
            match self
                .view
                .create_directory_at(dir, parent[..end].to_owned())
                .await
            {
                Ok(()) => {}
                Err(e) if code(&e) == Some(ErrorCode::Exist) => {}
                Err(e) => return Err(failed("create", &key, e)),
            }
            self.made.insert(key);
        }
        Ok(())
    }

    /// WASI's link-at opens both parent directories for every link; a
    /// publish links thousands of files out of a few directories. So each
    /// parent is opened once, through WASI, and the link is made by name
    /// relative to those descriptors (`linkat` does not follow the last
    /// component, nor does `O_CREAT | O_EXCL` for a copy).
    async fn link(&mut self, existing: &Place, new: &Place) -> Result<(), String> {
        self.make_parents(new).await?;
        let (from_dir, from) = self.in_parent(existing).await?;
        let (to_dir, to) = self.in_parent(new).await?;
        let flags = rustix::fs::AtFlags::empty();
        rustix::fs::linkat(&*from_dir, &from, &*to_dir, &to, flags).map_err(|e| {
            let what = format!("`{}` to `{}`", existing.guest, new.guest);
            format!("cannot link {what}: {e}")
        })
    }

    /// `place` as its parent directory, opened through WASI, and its name in
    /// it: a `*at` call on that descriptor reaches the very directory WASI
    /// resolved, whatever its path has become since. The name is one
    /// component, so nothing else is resolved.
    async fn in_parent(&mut self, place: &Place) -> Result<(Arc<std::fs::File>, String), String> {
        let (parent, name) = place.rel.rsplit_once('/').unwrap_or((".", &place.rel));
        if matches!(name, "" | "." | "..") {
            return Err(format!("`{}` names no file", place.guest));
        }
        let key = format!("{}/{parent}", place.preopen);
        let fd = match self.parents.get(&key) {
            Some((_, fd)) => fd.clone(),
            None => {
                let at = self.preopen(place);
                let flags = (OpenFlags::DIRECTORY, DescriptorFlags::READ);
                let dir = self
                    .view
                    .open_at(
                        at,
                        PathFlags::SYMLINK_FOLLOW,
                        parent.to_owned(),
                        flags.0,
                        flags.1,
                    )
                    .await
                    .map_err(|e| failed("open", &key, e))?;
                let fd = match self.view.table.get(&dir) {
                    Ok(Descriptor::Dir(d)) => d.dir.clone(),
                    _ => return Err(format!("cannot open `{key}`: not a directory")),
                };
                self.parents.insert(key, (dir, fd.clone()));
                fd
            }
        };
        Ok((fd, name.to_owned()))
    }

    /// The directory WASI resolves for `root`, walked by `tree::scan`.
    async fn scan(&mut self, root: &Place) -> Result<Vec<files::FileStat>, String> {
        let fd = self
            .open_dir(self.preopen(root), root.rel.clone(), &root.guest)
            .await?;
        let dir = match self.view.table.get(&fd) {
            Ok(Descriptor::Dir(d)) => Ok(d.dir.clone()),
            _ => Err(format!("cannot list `{}`: not a directory", root.guest)),
        };
        self.drop_fd(fd);
        tree::scan(&*dir?, root.guest.trim_end_matches('/'))
    }

    async fn open_dir(
        &mut self,
        at: Resource<Descriptor>,
        rel: String,
        shown: &str,
    ) -> Result<Resource<Descriptor>, String> {
        self.view
            .open_at(
                at,
                PathFlags::empty(),
                rel,
                OpenFlags::DIRECTORY,
                DescriptorFlags::READ,
            )
            .await
            .map_err(|e| failed("open", shown, e))
    }

    fn drop_fd(&mut self, fd: Resource<Descriptor>) {
        let _ = HostDescriptor::drop(&mut self.view, fd);
    }

    /// Give back the preopen handles this call took.
    fn close(mut self) {
        let parents = std::mem::take(&mut self.parents).into_values();
        for fd in parents.map(|(fd, _)| fd) {
            self.drop_fd(fd);
        }
        for (fd, _) in std::mem::take(&mut self.preopens) {
            self.drop_fd(fd);
        }
    }
}

fn code(e: &FsError) -> Option<ErrorCode> {
    e.downcast_ref().copied()
}

fn failed(what: &str, path: &str, e: FsError) -> String {
    let path = if path.starts_with('`') {
        path.to_owned()
    } else {
        format!("`{path}`")
    };
    match code(&e) {
        // What cap-primitives answers for a path that would leave its
        // directory, and what WASI answers for a write to a read-only one.
        Some(ErrorCode::NotPermitted) => format!(
            "cannot {what} {path}: not permitted (it would leave its granted directory, or that directory is read-only)"
        ),
        // O_NOFOLLOW on the last component.
        Some(ErrorCode::Loop) => {
            format!("cannot {what} {path}: it is a symlink, which is not followed")
        }
        Some(c) => format!("cannot {what} {path}: {}", c.name()),
        None => format!("cannot {what} {path}: {e}"),
    }
}

/// Worker threads that copy (in the kernel) and hash, while the calling
/// thread resolves and opens the next files: on two cores the hashing costs
/// no wall time.
struct Pool {
    jobs: Option<mpsc::SyncSender<Vec<Job>>>,
    /// Jobs not yet sent: they go in batches, as one hand-off per file
    /// costs the threads more than a small file's copy.
    batch: Vec<Job>,
    results: mpsc::Receiver<Vec<(usize, Result<String, String>)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    hashes: Vec<Option<String>>,
    failed: Option<String>,
}

const BATCH: usize = 32;

struct Job {
    index: usize,
    work: Work,
    shown: String,
}

enum Work {
    Hash(Arc<std::fs::File>),
    /// Create `name` in `dir` (see `Wasi::in_parent`) and copy `from` into
    /// it.
    Copy {
        from: Arc<std::fs::File>,
        dir: Arc<std::fs::File>,
        name: String,
    },
}

impl Pool {
    fn new(len: usize) -> Pool {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        // Bounded, so the open files stay a few batches per thread.
        let (jobs, queue) = mpsc::sync_channel::<Vec<Job>>(threads * 2);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let (done, results) = mpsc::channel();
        let threads = (0..threads.min(len.div_ceil(BATCH)))
            .map(|_| {
                let (queue, done) = (queue.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let batch = queue.lock().expect("queue").recv();
                        let Ok(batch) = batch else { break };
                        let results = batch.iter().map(|job| (job.index, run(job, &mut buf)));
                        if done.send(results.collect()).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            batch: Vec::with_capacity(BATCH),
            results,
            threads,
            hashes: vec![None; len],
            failed: None,
        }
    }

    fn send(&mut self, index: usize, work: Work, shown: &str) -> Result<(), String> {
        self.batch.push(Job {
            index,
            work,
            shown: shown.to_owned(),
        });
        if self.batch.len() < BATCH {
            return Ok(());
        }
        self.flush()?;
        self.collect();
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let jobs = self.jobs.as_ref().expect("open until finish");
        jobs.send(batch)
            .map_err(|_| "the copy threads stopped".to_owned())
    }

    /// Take the results that are in, keeping the first failure.
    fn collect(&mut self) {
        while let Ok(results) = self.results.try_recv() {
            for (index, hashed) in results {
                match hashed {
                    Ok(h) => self.hashes[index] = Some(h),
                    Err(e) => {
                        self.failed.get_or_insert(e);
                    }
                }
            }
        }
    }

    /// Wait for the work sent, and return every hash in order.
    fn finish(mut self) -> Result<Vec<String>, String> {
        if !self.batch.is_empty() {
            self.flush()?;
        }
        drop(self.jobs.take());
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
        self.collect();
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.hashes
            .into_iter()
            .map(|h| h.ok_or_else(|| "a copy thread stopped".to_owned()))
            .collect()
    }
}

fn run(job: &Job, buf: &mut [u8]) -> Result<String, String> {
    work(job, buf).map_err(|e| match job.work {
        Work::Hash(_) => format!("cannot hash `{}`: {e}", job.shown),
        Work::Copy { .. } => format!("cannot copy to `{}`: {e}", job.shown),
    })
}

/// Copy (`copy_file_range`, no bytes through user space) and hash what
/// landed, so the hash is the release's content even if the source changes.
fn work(job: &Job, buf: &mut [u8]) -> std::io::Result<String> {
    match &job.work {
        Work::Hash(file) => xxh3(file, None, buf),
        Work::Copy { from, dir, name } => {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
            let file = std::fs::File::from(rustix::fs::openat(
                &**dir,
                name.as_str(),
                flags,
                Mode::from_bits_truncate(0o666),
            )?);
            let copied = std::io::copy(&mut &**from, &mut &file)?;
            xxh3(&file, Some(copied), buf)
        }
    }
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
