//! Atomic releases of a static site (rule 4), as Capistrano lays them out:
//!
//! ```text
//! <root>/current -> releases/<id>        one symlink, replaced by rename(2)
//! <root>/releases/<id>/…                 a complete copy of one build
//! <root>/releases/<id>.json              its manifest: files, sizes, hashes
//! ```
//!
//! A publish copies the build into a hidden `.partial-*` directory. Files
//! unchanged since the live release become hard links to it (as
//! `rsync --link-dest` does). Only a complete directory is renamed into
//! place and only then is `current` switched, so a crash at any point leaves
//! the site serving a whole release. The next publish sweeps the leftovers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::Xxh3;

/// One file of a release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    /// Modification time of the build file it came from, in nanoseconds.
    pub mtime_ns: u128,
    /// XXH3-128 of the content, hex.
    pub hash: String,
    /// Sequence number of the release whose build produced this content.
    pub born: u64,
    /// False for files carried over from an earlier release (see
    /// [`Options::carry`]).
    pub own: bool,
}

/// What a release contains.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub seq: u64,
    /// Hash of the build (own files only): equal builds, equal hashes.
    pub content: String,
    pub files: BTreeMap<String, Entry>,
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directories (relative to the build root, e.g. `_astro`) whose files
    /// stay available after the build that made them is replaced, so a page
    /// loaded from the old release still finds its hashed assets.
    pub carry: Vec<String>,
    /// How many releases back carried files may come from.
    pub carry_releases: u64,
    /// Files (relative to the build root) published with these bytes instead
    /// of the build's, e.g. a service worker stamped for this release. The
    /// build itself stays read-only.
    pub replace: BTreeMap<String, Vec<u8>>,
}

impl Default for Options {
    /// Carries nothing.
    fn default() -> Options {
        Options {
            carry: Vec::new(),
            carry_releases: 2,
            replace: BTreeMap::new(),
        }
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub id: String,
    /// True when the build equals the live release: nothing was published.
    pub unchanged: bool,
    pub files: usize,
    pub copied: usize,
    pub linked: usize,
    pub carried: usize,
    pub bytes_copied: u64,
}

/// The releases under one served root.
pub struct Releases {
    root: PathBuf,
}

const CURRENT: &str = "current";
const NEXT: &str = "current.next";

impl Releases {
    pub fn open(root: impl Into<PathBuf>) -> Releases {
        Releases { root: root.into() }
    }

    fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// The live release, read from the `current` symlink.
    pub fn current(&self) -> Result<Option<String>, String> {
        match std::fs::read_link(self.root.join(CURRENT)) {
            Ok(target) => {
                let target = target.to_string_lossy().into_owned();
                let id = target.strip_prefix("releases/").ok_or_else(|| {
                    format!(
                        "{}/current points to `{target}`, not into releases/",
                        self.root.display()
                    )
                })?;
                Ok(Some(id.to_owned()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}/current: {e}", self.root.display())),
        }
    }

    /// Complete releases (directory and manifest), oldest first.
    pub fn list(&self) -> Result<Vec<Manifest>, String> {
        let dir = self.releases_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
        };
        let mut releases = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json")
                && dir.join(id).is_dir()
                && let Some(m) = self.manifest(id)?
            {
                releases.push(m);
            }
        }
        releases.sort_by_key(|m| m.seq);
        Ok(releases)
    }

    pub fn manifest(&self, id: &str) -> Result<Option<Manifest>, String> {
        let path = self.releases_dir().join(format!("{id}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{} is corrupt: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Copy `build` into a new release, hard-linking what is unchanged since
    /// the live release. Does not switch `current`.
    pub fn publish(&self, build: &Path, options: &Options) -> Result<Published, String> {
        let sources = scan(build)?;
        std::fs::create_dir_all(self.releases_dir())
            .map_err(|e| format!("cannot create {}: {e}", self.releases_dir().display()))?;
        self.sweep()?;
        let live = match self.current()? {
            Some(id) => self.manifest(&id)?.map(|m| (id, m)),
            None => None,
        };
        let seq = self.list()?.last().map_or(1, |m| m.seq + 1);
        let partial = self.releases_dir().join(format!(".partial-{seq}"));
        std::fs::create_dir(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let result = self.fill(build, &partial, &sources, live.as_ref(), seq, options);
        let (files, mut published) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(format!("{e}; the live site was not touched"));
            }
        };
        let content = content_hash(&files);
        if let Some((id, live)) = &live
            && live.content == content
        {
            let _ = std::fs::remove_dir_all(&partial);
            published.id = id.clone();
            published.unchanged = true;
            return Ok(published);
        }
        let id = format!("{}-{}", utc_stamp(), &content[..12]);
        let manifest = Manifest {
            id: id.clone(),
            seq,
            content,
            files,
        };
        let json = self.releases_dir().join(format!("{id}.json"));
        let written = write_atomically(
            &json,
            &serde_json::to_vec(&manifest).expect("manifest serializes"),
        )
        .and_then(|()| {
            std::fs::rename(&partial, self.releases_dir().join(&id))
                .map_err(|e| format!("cannot move the release into place: {e}"))
        });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&partial);
            let _ = std::fs::remove_file(&json);
            return Err(format!("{e}; the live site was not touched"));
        }
        published.id = id;
        Ok(published)
    }

    fn fill(
        &self,
        build: &Path,
        partial: &Path,
        sources: &[PathBuf],
        live: Option<&(String, Manifest)>,
        seq: u64,
        options: &Options,
    ) -> Result<(BTreeMap<String, Entry>, Published), String> {
        let mut files = BTreeMap::new();
        let mut stats = Published::default();
        let live_dir = live.map(|(id, _)| self.releases_dir().join(id));
        let mut made = std::collections::HashSet::new();
        for rel in sources {
            let key = rel.to_string_lossy().into_owned();
            let src = build.join(rel);
            let dst = partial.join(rel);
            make_parent(&dst, &mut made)?;
            let meta = std::fs::metadata(&src)
                .map_err(|e| format!("cannot stat {}: {e}", src.display()))?;
            let mtime_ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let previous = live.and_then(|(_, m)| m.files.get(&key));
            let replaced = options.replace.get(&key);
            let size = replaced.map_or(meta.len(), |bytes| bytes.len() as u64);
            // Quick check, as rsync: same size and mtime means same file.
            let quick = previous
                .filter(|p| replaced.is_none() && p.size == meta.len() && p.mtime_ns == mtime_ns);
            let linked = match (quick, &live_dir) {
                (Some(p), Some(dir)) => std::fs::hard_link(dir.join(rel), &dst)
                    .ok()
                    .map(|()| p.clone()),
                _ => None,
            };
            let entry = match linked {
                Some(p) => {
                    stats.linked += 1;
                    Entry { mtime_ns, ..p }
                }
                None => {
                    let hash = match replaced {
                        Some(bytes) => write_hashing(bytes, &dst)?,
                        None => copy_hashing(&src, &dst)?,
                    };
                    // A rebuild rewrites every file: same bytes still link.
                    let same = previous.filter(|p| p.hash == hash);
                    match (same, &live_dir) {
                        (Some(p), Some(dir)) if relink(&dir.join(rel), &dst) => {
                            stats.linked += 1;
                            Entry {
                                mtime_ns,
                                ..p.clone()
                            }
                        }
                        _ => {
                            stats.copied += 1;
                            stats.bytes_copied += size;
                            Entry {
                                size,
                                mtime_ns,
                                hash,
                                born: seq,
                                own: true,
                            }
                        }
                    }
                }
            };
            files.insert(key, Entry { own: true, ..entry });
        }
        stats.files = files.len();
        if let (Some((_, live)), Some(dir)) = (live, &live_dir) {
            for (key, entry) in &live.files {
                let carried = !files.contains_key(key)
                    && options
                        .carry
                        .iter()
                        .any(|c| key.starts_with(&format!("{}/", c.trim_matches('/'))))
                    && seq.saturating_sub(entry.born) <= options.carry_releases;
                if !carried {
                    continue;
                }
                let dst = partial.join(key);
                make_parent(&dst, &mut made)?;
                std::fs::hard_link(dir.join(key), &dst)
                    .map_err(|e| format!("cannot carry {key}: {e}"))?;
                files.insert(
                    key.clone(),
                    Entry {
                        own: false,
                        ..entry.clone()
                    },
                );
                stats.carried += 1;
            }
        }
        Ok((files, stats))
    }

    /// Point `current` at `id` with one atomic rename of a fresh symlink.
    pub fn switch(&self, id: &str) -> Result<(), String> {
        let dir = self.releases_dir();
        if !dir.join(id).is_dir() || !dir.join(format!("{id}.json")).is_file() {
            return Err(format!("release {id} does not exist"));
        }
        let next = self.root.join(NEXT);
        match std::fs::remove_file(&next) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove a stale {}: {e}", next.display()));
            }
            _ => {}
        }
        symlink(&self.root, &format!("releases/{id}"), NEXT)?;
        std::fs::rename(&next, self.root.join(CURRENT))
            .map_err(|e| format!("cannot switch current to {id}: {e}"))
    }

    /// The complete release before the live one.
    pub fn previous(&self) -> Result<Option<String>, String> {
        let Some(current) = self.current()? else {
            return Ok(None);
        };
        let list = self.list()?;
        let Some(pos) = list.iter().position(|m| m.id == current) else {
            return Ok(None);
        };
        Ok(pos.checked_sub(1).map(|p| list[p].id.clone()))
    }

    /// Switch back to the release before the live one. Returns the ids
    /// switched from and to.
    pub fn roll_back(&self) -> Result<(String, String), String> {
        let live = self
            .current()?
            .ok_or("there is no live release to roll back")?;
        let previous = self.previous()?.ok_or_else(|| {
            format!("release {live} is the oldest kept; there is nothing to roll back to")
        })?;
        self.switch(&previous)?;
        Ok((live, previous))
    }

    /// Keep the newest `keep` releases, and always the live one and the one
    /// before it. Returns the pruned ids.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>, String> {
        let list = self.list()?;
        let current = self.current()?;
        let previous = self.previous()?;
        let mut pruned = Vec::new();
        let cut = list.len().saturating_sub(keep);
        for m in &list[..cut] {
            if Some(&m.id) == current.as_ref() || Some(&m.id) == previous.as_ref() {
                continue;
            }
            std::fs::remove_dir_all(self.releases_dir().join(&m.id))
                .map_err(|e| format!("cannot prune release {}: {e}", m.id))?;
            let _ = std::fs::remove_file(self.releases_dir().join(format!("{}.json", m.id)));
            pruned.push(m.id.clone());
        }
        Ok(pruned)
    }

    /// Remove what an interrupted publish left: partial directories, and
    /// manifests or directories without their other half.
    fn sweep(&self) -> Result<(), String> {
        let dir = self.releases_dir();
        let current = self.current()?;
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let orphan = if name.starts_with(".partial-") {
                true
            } else if let Some(id) = name.strip_suffix(".json") {
                !dir.join(id).is_dir()
            } else {
                !dir.join(format!("{name}.json")).exists() && Some(&name) != current.as_ref()
            };
            if orphan {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed
                    .map_err(|e| format!("cannot remove the leftover {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// A static site served from releases, deployed the way every site plugin
/// does it: publish the build, switch `current`, reload nginx and wait until
/// its old workers are gone, prune. Then [`Site::live`] checks what nginx
/// serves, and [`Site::roll_back`] undoes the switch the same way. The
/// plugin keeps only its strategy: which files, replaced how, checked how.
///
/// ```no_run
/// use slipway_sdk::release::{Options, Site};
/// let site = Site::open("/site").nginx(Some("nginx")).keep(5);
/// let deployed = site.deploy(std::path::Path::new("/build"), &Options::default())?;
/// if !deployed.published.unchanged {
///     slipway_sdk::info!("live: {}, pruned {}", deployed.published.id, deployed.pruned.len());
/// }
/// let live = site.live()?;
/// let index = live.fetch("http://nginx:8081/index.html", "index.html")?;
/// assert!(index.matches, "nginx does not serve release {}", live.id);
/// # Ok::<(), String>(())
/// ```
pub struct Site {
    releases: Releases,
    nginx: Option<String>,
    keep: usize,
}

/// What [`Site::deploy`] did.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// `unchanged` when the build equals the live release: then nothing
    /// was switched, reloaded or pruned.
    pub published: Published,
    pub pruned: Vec<String>,
}

/// The live release, read for a check.
#[derive(Debug, Clone)]
pub struct Live {
    pub id: String,
    pub manifest: Manifest,
}

/// One GET of a URL that should serve a file of the live release.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub response: crate::probe::HttpResponse,
    /// It answered 200 with exactly the file's bytes.
    pub matches: bool,
}

impl Site {
    /// The site under `root`, with no nginx to reload, keeping 5 releases.
    pub fn open(root: impl Into<PathBuf>) -> Site {
        Site {
            releases: Releases::open(root),
            nginx: None,
            keep: 5,
        }
    }

    /// The compose service running nginx, to reload after every switch
    /// (needed with `open_file_cache`). It runs
    /// [`crate::nginx::RELOAD_EXEC`]: declare them, e.g.
    /// `exec: slipway_sdk::nginx::reload_exec_needs()`.
    pub fn nginx(mut self, service: Option<&str>) -> Site {
        self.nginx = service.map(str::to_owned);
        self
    }

    /// Releases to keep; the live one and the one before it always stay.
    pub fn keep(mut self, keep: usize) -> Site {
        self.keep = keep;
        self
    }

    pub fn releases(&self) -> &Releases {
        &self.releases
    }

    /// The live release's id, or `(no live release)`, for a plan.
    pub fn live_label(&self) -> Result<String, String> {
        Ok(self
            .releases
            .current()?
            .unwrap_or_else(|| "(no live release)".to_owned()))
    }

    /// Publish `build` as a release and, unless it equals the live one,
    /// switch `current` to it, reload nginx (waiting until its old workers
    /// are gone, so every answer from then on is the new release's) and
    /// prune.
    pub fn deploy(&self, build: &Path, options: &Options) -> Result<Deployed, String> {
        let published = self.releases.publish(build, options)?;
        if published.unchanged {
            return Ok(Deployed {
                published,
                pruned: Vec::new(),
            });
        }
        self.releases.switch(&published.id)?;
        crate::nginx::reload_after_switch(self.nginx.as_deref())?;
        let pruned = self.releases.prune(self.keep)?;
        Ok(Deployed { published, pruned })
    }

    /// The live release and its manifest.
    pub fn live(&self) -> Result<Live, String> {
        let id = self.releases.current()?.ok_or("no live release")?;
        let manifest = self
            .releases
            .manifest(&id)?
            .ok_or_else(|| format!("release {id} has no manifest"))?;
        Ok(Live { id, manifest })
    }

    /// Switch back to the release before the live one and reload nginx as
    /// [`Site::deploy`] does. Returns the ids switched from and to.
    pub fn roll_back(&self) -> Result<(String, String), String> {
        let switched = self.releases.roll_back()?;
        crate::nginx::reload_after_switch(self.nginx.as_deref())?;
        Ok(switched)
    }
}

impl Live {
    /// `file` (relative to the build root) of this release.
    pub fn entry(&self, file: &str) -> Result<&Entry, String> {
        self.manifest
            .files
            .get(file)
            .ok_or_else(|| format!("{file} is not in release {}", self.id))
    }

    /// GET `url` once (5 s) and compare the body with `file` of this
    /// release. The plugin words the mismatch: it knows what it means.
    pub fn fetch(&self, url: &str, file: &str) -> Result<Fetched, String> {
        let expected = self.entry(file)?;
        let response = crate::probe::http_get(url, 5_000)?;
        let matches = response.status == 200 && hash_bytes(&response.body) == expected.hash;
        Ok(Fetched { response, matches })
    }
}

/// Every file of the build, relative and sorted. Refuses an empty or missing
/// build and any symlink (a build is plain files; a link could point out).
pub fn scan(build: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(build).map_err(|e| {
        format!(
            "the build output {} is missing ({e}); run the build first",
            build.display()
        )
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "the build output {} is not a directory",
            build.display()
        ));
    }
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = build.join(&rel);
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let path = rel.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
            if kind.is_symlink() {
                // The sandbox will not even read a link that leaves it.
                let (target, escapes) = match std::fs::read_link(build.join(&path)) {
                    Ok(t) => (t.display().to_string(), escapes(&path, &t)),
                    Err(_) => ("(unreadable)".to_owned(), true),
                };
                return Err(format!(
                    "the build contains a symlink {} -> {target}{}; refusing to publish it",
                    path.display(),
                    if escapes {
                        ", which points outside the build"
                    } else {
                        ""
                    }
                ));
            } else if kind.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    if files.is_empty() {
        return Err(format!(
            "the build output {} is empty; run the build first",
            build.display()
        ));
    }
    files.sort();
    Ok(files)
}

/// Whether a symlink at `link` (relative to the build root) with `target`
/// resolves outside the build.
fn escapes(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// Create the parent directory of `path` once per directory.
fn make_parent(path: &Path, made: &mut std::collections::HashSet<PathBuf>) -> Result<(), String> {
    if let Some(parent) = path.parent()
        && !made.contains(parent)
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        made.insert(parent.to_owned());
    }
    Ok(())
}

fn copy_hashing(src: &Path, dst: &Path) -> Result<String, String> {
    let mut input =
        std::fs::File::open(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut output =
        std::fs::File::create(dst).map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

fn write_hashing(bytes: &[u8], dst: &Path) -> Result<String, String> {
    std::fs::write(dst, bytes).map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
    Ok(hash_bytes(bytes))
}

/// Replace the fresh copy `dst` with a hard link to `src`.
fn relink(src: &Path, dst: &Path) -> bool {
    let tmp = dst.with_extension("slipway-link");
    if std::fs::hard_link(src, &tmp).is_err() {
        return false;
    }
    std::fs::rename(&tmp, dst).is_ok()
}

/// The hash a manifest records for content, to compare a fetched body with.
pub fn hash_bytes(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

fn content_hash(files: &BTreeMap<String, Entry>) -> String {
    let mut hasher = Xxh3::new();
    for (path, entry) in files.iter().filter(|(_, e)| e.own) {
        hasher.update(path.as_bytes());
        hasher.update(&[0]);
        hasher.update(entry.hash.as_bytes());
    }
    format!("{:032x}", hasher.digest128())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// `YYYYMMDDTHHMMSSmmmZ` in UTC.
fn utc_stamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Create a symlink `link` (relative to `root`) pointing at `target`.
#[cfg(target_os = "wasi")]
fn symlink(root: &Path, target: &str, link: &str) -> Result<(), String> {
    // std's symlink is unstable on WASI; go through the preopen that holds `root`.
    let root_str = root.to_string_lossy();
    for (dir, guest) in wasip2::filesystem::preopens::get_directories() {
        let guest = guest.trim_end_matches('/');
        if let Some(rest) = root_str.strip_prefix(guest)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            let rest = rest.trim_start_matches('/');
            let link = if rest.is_empty() {
                link.to_owned()
            } else {
                format!("{rest}/{link}")
            };
            return dir.symlink_at(target, &link).map_err(|e| {
                format!("cannot create the symlink {}/{link}: {e:?}", root.display())
            });
        }
    }
    Err(format!(
        "{} is not inside a granted directory",
        root.display()
    ))
}

#[cfg(not(target_os = "wasi"))]
fn symlink(root: &Path, target: &str, link: &str) -> Result<(), String> {
    std::os::unix::fs::symlink(target, root.join(link))
        .map_err(|e| format!("cannot create the symlink {}/{link}: {e}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escapes() {
        assert!(escapes(Path::new("a"), Path::new("/etc/passwd")));
        assert!(escapes(Path::new("a"), Path::new("../x")));
        assert!(escapes(Path::new("d/a"), Path::new("../../x")));
        assert!(!escapes(Path::new("d/a"), Path::new("../x")));
        assert!(!escapes(Path::new("d/a"), Path::new("b")));
    }

    use std::os::unix::fs::MetadataExt;

    fn build(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn live_file(site: &Path, path: &str) -> String {
        std::fs::read_to_string(site.join("current").join(path)).unwrap()
    }

    #[test]
    fn publish_links_unchanged_files_and_switches_atomically() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let v1 = build(&[
            ("index.html", "v1"),
            ("about.html", "about"),
            ("_astro/a1.css", "css1"),
        ]);
        let p1 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert_eq!((p1.copied, p1.linked), (3, 0));
        releases.switch(&p1.id).unwrap();
        assert_eq!(live_file(site.path(), "index.html"), "v1");

        // Unchanged build: nothing to publish.
        let again = releases.publish(v1.path(), &Options::default()).unwrap();
        assert!(again.unchanged);
        assert_eq!(again.id, p1.id);

        // One file changed: the others are hard links to the live release.
        std::fs::write(v1.path().join("index.html"), "v2").unwrap();
        let p2 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert_eq!((p2.copied, p2.linked), (1, 2));
        assert_eq!(
            live_file(site.path(), "index.html"),
            "v1",
            "publishing must not switch"
        );
        releases.switch(&p2.id).unwrap();
        assert_eq!(live_file(site.path(), "index.html"), "v2");
        let old = std::fs::metadata(site.path().join("releases").join(&p1.id).join("about.html"))
            .unwrap();
        let new = std::fs::metadata(site.path().join("releases").join(&p2.id).join("about.html"))
            .unwrap();
        assert_eq!(old.ino(), new.ino());
        assert_eq!(new.nlink(), 2);
        assert_eq!(
            releases.previous().unwrap().as_deref(),
            Some(p1.id.as_str())
        );
    }

    #[test]
    fn replaced_files_publish_their_bytes_and_leave_the_build_alone() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let v1 = build(&[("index.html", "page"), ("sw.js", "const V = \"dev\";")]);
        let stamped = |stamp: &str| Options {
            replace: BTreeMap::from([("sw.js".to_owned(), stamp.as_bytes().to_vec())]),
            ..Options::default()
        };
        let p1 = releases.publish(v1.path(), &stamped("A")).unwrap();
        releases.switch(&p1.id).unwrap();
        assert_eq!(live_file(site.path(), "sw.js"), "A");
        assert_eq!(
            std::fs::read_to_string(v1.path().join("sw.js")).unwrap(),
            "const V = \"dev\";"
        );
        // Same build, same bytes: nothing to publish.
        assert!(
            releases
                .publish(v1.path(), &stamped("A"))
                .unwrap()
                .unchanged
        );
        // Same build (same size and mtime), new bytes: the quick check must
        // not link the old stamp.
        let p2 = releases.publish(v1.path(), &stamped("B")).unwrap();
        assert!(!p2.unchanged);
        assert_eq!((p2.copied, p2.linked), (1, 1));
        releases.switch(&p2.id).unwrap();
        assert_eq!(live_file(site.path(), "sw.js"), "B");
    }

    #[test]
    fn rebuilt_but_identical_files_still_link() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let v1 = build(&[("a.html", "same"), ("b.html", "b1")]);
        let p1 = releases.publish(v1.path(), &Options::default()).unwrap();
        releases.switch(&p1.id).unwrap();
        // A rebuild rewrites every file (new mtimes), one with new bytes.
        let v2 = build(&[("a.html", "same"), ("b.html", "b2")]);
        let p2 = releases.publish(v2.path(), &Options::default()).unwrap();
        assert_eq!((p2.copied, p2.linked), (1, 1));
    }

    #[test]
    fn carried_assets_outlive_their_build_for_a_while() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let options = Options {
            carry: vec!["_astro".into()],
            carry_releases: 1,
            ..Options::default()
        };
        let mut ids = Vec::new();
        for v in 1..=3 {
            let b = build(&[
                ("index.html", &format!("v{v}")),
                (&format!("_astro/app.{v}.css"), &format!("css{v}")),
            ]);
            let p = releases.publish(b.path(), &options).unwrap();
            releases.switch(&p.id).unwrap();
            ids.push(p.id);
        }
        let live = site.path().join("current/_astro");
        assert!(live.join("app.3.css").exists());
        assert!(
            live.join("app.2.css").exists(),
            "the previous build's assets stay"
        );
        assert!(!live.join("app.1.css").exists(), "older ones go");
    }

    #[test]
    fn retention_keeps_n_plus_live_and_previous() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let mut ids = Vec::new();
        for v in 0..6 {
            let b = build(&[("index.html", &format!("v{v}"))]);
            let p = releases.publish(b.path(), &Options::default()).unwrap();
            releases.switch(&p.id).unwrap();
            ids.push(p.id);
        }
        let pruned = releases.prune(3).unwrap();
        assert_eq!(pruned, ids[..3].to_vec());
        let left: Vec<String> = releases.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(left, ids[3..].to_vec());
        // After a rollback the live release and the one before it survive
        // even a prune that keeps only the newest.
        releases.switch(&ids[4]).unwrap();
        assert!(releases.prune(1).unwrap().is_empty());
        let left: Vec<String> = releases.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(left, ids[3..].to_vec());
    }

    #[test]
    fn bad_builds_fail_before_anything_moves() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let empty = tempfile::tempdir().unwrap();
        assert!(
            releases
                .publish(empty.path(), &Options::default())
                .unwrap_err()
                .contains("is empty")
        );
        let missing = empty.path().join("dist");
        assert!(
            releases
                .publish(&missing, &Options::default())
                .unwrap_err()
                .contains("is missing")
        );
        let b = build(&[("index.html", "x")]);
        std::os::unix::fs::symlink("/etc/passwd", b.path().join("passwd")).unwrap();
        let err = releases.publish(b.path(), &Options::default()).unwrap_err();
        assert!(err.contains("points outside the build"), "{err}");
        assert!(releases.current().unwrap().is_none());
    }

    #[test]
    fn leftovers_of_an_interrupted_publish_are_swept() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let b = build(&[("index.html", "v1")]);
        let p = releases.publish(b.path(), &Options::default()).unwrap();
        releases.switch(&p.id).unwrap();
        let dir = site.path().join("releases");
        std::fs::create_dir_all(dir.join(".partial-9/x")).unwrap();
        std::fs::write(dir.join("orphan.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.join("orphan-dir")).unwrap();
        std::fs::write(b.path().join("index.html"), "v2").unwrap();
        let p2 = releases.publish(b.path(), &Options::default()).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(".partial") || n.starts_with("orphan")),
            "{names:?}"
        );
        assert!(names.contains(&p2.id));
    }

    #[test]
    fn a_site_deploys_prunes_and_rolls_back() {
        let root = tempfile::tempdir().unwrap();
        let site = Site::open(root.path()).keep(2);
        assert_eq!(site.live_label().unwrap(), "(no live release)");
        assert_eq!(site.live().unwrap_err(), "no live release");
        let mut ids = Vec::new();
        for v in 1..=4 {
            let b = build(&[("index.html", &format!("v{v}"))]);
            let deployed = site.deploy(b.path(), &Options::default()).unwrap();
            assert!(!deployed.published.unchanged);
            assert_eq!(live_file(root.path(), "index.html"), format!("v{v}"));
            ids.push(deployed.published.id);
            match v {
                1 | 2 => assert!(deployed.pruned.is_empty()),
                _ => assert_eq!(deployed.pruned, [ids[v - 3].clone()]),
            }
            let again = site.deploy(b.path(), &Options::default()).unwrap();
            assert!(again.published.unchanged && again.pruned.is_empty());
        }
        let live = site.live().unwrap();
        assert_eq!(live.id, ids[3]);
        assert_eq!(site.live_label().unwrap(), ids[3]);
        assert_eq!(live.entry("index.html").unwrap().hash, hash_bytes(b"v4"));
        assert_eq!(
            live.entry("missing.html").unwrap_err(),
            format!("missing.html is not in release {}", ids[3])
        );
        assert_eq!(site.roll_back().unwrap(), (ids[3].clone(), ids[2].clone()));
        assert_eq!(live_file(root.path(), "index.html"), "v3");
    }

    #[test]
    fn stamps_sort_as_time() {
        // Stamps taken one after another sort one after another.
        let mut stamps = Vec::new();
        for _ in 0..5 {
            stamps.push(utc_stamp());
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        let mut sorted = stamps.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, stamps, "stamps taken in turn must sort in turn");
        // Across a second, a day or a year too: fixed width, most
        // significant field first, digits only but for `T` and `Z`, so byte
        // order is time order.
        for s in &stamps {
            assert_eq!(s.len(), 19, "{s}");
            let layout_ok = s.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                18 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
            assert!(layout_ok, "{s}");
            let field = |at: std::ops::Range<usize>| s[at].parse::<u64>().unwrap();
            assert!((2025..2200).contains(&field(0..4)), "{s}");
            assert!((1..=12).contains(&field(4..6)), "{s}");
            assert!((1..=31).contains(&field(6..8)), "{s}");
            assert!(
                field(9..11) < 24 && field(11..13) < 60 && field(13..15) < 60,
                "{s}"
            );
        }
        // It is UTC: its time of day is the clock's.
        let last = stamps.last().unwrap();
        let of_day = |s: &str| {
            let n = |at: std::ops::Range<usize>| s[at].parse::<u64>().unwrap();
            n(9..11) * 3600 + n(11..13) * 60 + n(13..15)
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 86_400;
        let behind = (now + 86_400 - of_day(last)) % 86_400;
        assert!(behind <= 2, "{last} is {behind} s from the UTC clock");
    }
}
