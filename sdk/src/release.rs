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

use crate::files;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::Xxh3;

/// One file of a release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    /// The build file's `mtime` and `ctime` when it was published, in
    /// nanoseconds. Absent in manifests from before they were recorded, for
    /// replaced files, and for a file whose times cannot vouch for what was
    /// read (see [`racy`]): then the next publish reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<u64>,
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
    /// A digest of every own file's path, size, `mtime` and `ctime` (see
    /// [`stats_digest`]), absent when one has no times. A build with the
    /// same digest is this release, known without reading `files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    pub files: BTreeMap<String, Entry>,
}

/// The part of a manifest that orders the releases, read without its list
/// of files (which for a big site is most of a megabyte per release).
#[derive(Deserialize)]
struct Head {
    id: String,
    seq: u64,
    #[serde(default)]
    stats: Option<String>,
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
    /// Files whose content was read to tell whether they changed: those
    /// whose size, `mtime` or `ctime` differ from the live release's entry.
    pub checked: usize,
}

/// The releases under one served root.
pub struct Releases {
    root: PathBuf,
}

const CURRENT: &str = "current";
const NEXT: &str = "current.next";

/// Where a published file's bytes come from.
enum Source<'a> {
    /// The live release has them: hard-link its file.
    Live,
    /// Copy the build's file.
    Build,
    /// Write these (a replaced file).
    Bytes(&'a [u8]),
}

/// A build file, where its bytes come from, and its entry so far.
type Planned<'a> = (&'a files::FileStat, Source<'a>, Entry);

/// Where each build file's bytes come from, judged by size and times
/// against `live`; and which files those leave in doubt, to be read and
/// compared by hash (indices into the plan).
fn plan<'a>(
    sources: &'a [files::FileStat],
    live: Option<&Manifest>,
    options: &'a Options,
) -> (Vec<Planned<'a>>, Vec<usize>) {
    let mut plan = Vec::new();
    let mut check = Vec::new();
    // Both are in path order: walk them side by side, not a lookup apiece.
    let mut recorded = live.iter().flat_map(|m| &m.files).peekable();
    for stat in sources {
        let previous = loop {
            match recorded.peek() {
                Some((key, _)) if key.as_str() < stat.path.as_str() => recorded.next(),
                Some((key, entry)) if **key == stat.path => break Some(*entry),
                _ => break None,
            };
        };
        let entry = Entry {
            size: stat.size,
            mtime_ns: stat.modified_ns,
            ctime_ns: stat.changed_ns,
            hash: String::new(),
            born: 0,
            own: true,
        };
        if let Some(bytes) = options.replace.get(&stat.path) {
            let entry = Entry {
                size: bytes.len() as u64,
                mtime_ns: None,
                ctime_ns: None,
                hash: hash_bytes(bytes),
                ..entry
            };
            match previous.filter(|p| p.hash == entry.hash) {
                Some(p) => plan.push((stat, Source::Live, kept(p, entry))),
                None => plan.push((stat, Source::Bytes(bytes), entry)),
            }
        } else if let Some(p) = previous {
            if same_stat(p, stat) {
                plan.push((stat, Source::Live, kept(p, entry)));
            } else {
                check.push(plan.len());
                plan.push((stat, Source::Build, entry));
            }
        } else {
            plan.push((stat, Source::Build, entry));
        }
    }
    (plan, check)
}

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
        let mut releases = Vec::new();
        for id in self.order()? {
            if let Some(m) = self.manifest(&id)? {
                releases.push(m);
            }
        }
        Ok(releases)
    }

    /// The ids of the complete releases, oldest first.
    fn order(&self) -> Result<Vec<String>, String> {
        Ok(self.heads()?.into_iter().map(|h| h.id).collect())
    }

    fn heads(&self) -> Result<Vec<Head>, String> {
        let dir = self.releases_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
        };
        let mut heads = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json")
                && dir.join(id).is_dir()
                && let Some(head) = self.head(id)?
            {
                heads.push(head);
            }
        }
        heads.sort_by_key(|h| h.seq);
        Ok(heads)
    }

    pub fn manifest(&self, id: &str) -> Result<Option<Manifest>, String> {
        self.read(id)
    }

    /// A manifest's head. [`Manifest`] writes `files` last, and for a big
    /// site that list is nearly all of the file, so the head is parsed from
    /// the bytes before it; a manifest laid out otherwise is read whole.
    fn head(&self, id: &str) -> Result<Option<Head>, String> {
        use std::io::Read;
        let path = self.releases_dir().join(format!("{id}.json"));
        let mut start = Vec::with_capacity(4096);
        match std::fs::File::open(&path) {
            Ok(file) => file.take(4096).read_to_end(&mut start),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => Err(e),
        }
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let files = start.windows(9).position(|w| w == b",\"files\":");
        if let Some(at) = files {
            let mut head = start[..at].to_vec();
            head.push(b'}');
            if let Ok(head) = serde_json::from_slice(&head) {
                return Ok(Some(head));
            }
        }
        self.read(id)
    }

    fn read<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<T>, String> {
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
    /// the live release. Does not switch `current`. A build equal to the
    /// live release touches nothing and comes back `unchanged`.
    ///
    /// A file is taken as unchanged without reading it when its size,
    /// `mtime` and `ctime` equal the live release's entry, as rsync (size
    /// and `mtime`) and git (both times) decide. Every other file is read
    /// and compared by hash, so a rebuild that rewrote every file still
    /// links those with the same bytes. `ctime` is the kernel's: a tool that
    /// rewrites a file and sets its `mtime` back (`touch -d`, `tar -x`, a
    /// fixed `SOURCE_DATE_EPOCH`) still changes it. The one rewrite times
    /// cannot show is one within the same timestamp tick as the read that
    /// recorded them, so files are read only once that tick has passed
    /// ([`settle`]). What stays unseen is a tool that forges `ctime` (it
    /// takes changing the clock) or a filesystem whose times do not change.
    pub fn publish(&self, build: &Path, options: &Options) -> Result<Published, String> {
        let sources = scan_stats(build)?;
        let live_id = self.current()?;
        // The common redeploy: every file as the live release recorded it.
        let digest = stats_digest(
            sources
                .iter()
                .map(|s| (s.path.as_str(), s.size, s.modified_ns, s.changed_ns)),
        );
        if let (Some(id), Some(digest), true) = (&live_id, &digest, options.replace.is_empty())
            && self
                .head(id)?
                .is_some_and(|h| h.stats.as_ref() == Some(digest))
        {
            return Ok(Published {
                id: id.clone(),
                unchanged: true,
                files: sources.len(),
                ..Published::default()
            });
        }
        let live = match &live_id {
            Some(id) => self.manifest(id)?,
            None => None,
        };
        let previous = |key: &str| live.as_ref().and_then(|m| m.files.get(key));
        let mut stats = Published {
            files: sources.len(),
            ..Published::default()
        };
        let (mut plan, check) = plan(&sources, live.as_ref(), options);
        // The files to read from the build carry their times into the
        // manifest only if those will tell a later rewrite (see `racy`).
        let read_from = settle(
            plan.iter()
                .filter(|p| matches!(p.1, Source::Build))
                .map(|p| p.0),
        );
        for (stat, source, entry) in &mut plan {
            if matches!(source, Source::Build) && racy(stat, read_from) {
                (entry.mtime_ns, entry.ctime_ns) = (None, None);
            }
        }
        // Size or times differ: read those files, and link the ones whose
        // bytes did not change after all.
        let paths: Vec<String> = check
            .iter()
            .map(|&i| files::text(&build.join(&plan[i].0.path)))
            .collect::<Result<_, _>>()?;
        let hashes =
            files::hash(&paths).map_err(|e| format!("{e}; the live site was not touched"))?;
        stats.checked = check.len();
        for (&i, hash) in check.iter().zip(hashes) {
            let (stat, source, entry) = &mut plan[i];
            if let Some(p) = previous(&stat.path).filter(|p| p.hash == hash) {
                *entry = kept(p, entry.clone());
                *source = Source::Live;
            }
        }
        if let Some(live) = &live
            && plan
                .iter()
                .all(|(_, source, _)| matches!(source, Source::Live))
        {
            let own: BTreeMap<String, Entry> = plan
                .iter()
                .map(|(stat, _, entry)| (stat.path.clone(), entry.clone()))
                .collect();
            if content_hash(&own) == live.content {
                stats.id = live.id.clone();
                stats.unchanged = true;
                return Ok(stats);
            }
        }

        std::fs::create_dir_all(self.releases_dir())
            .map_err(|e| format!("cannot create {}: {e}", self.releases_dir().display()))?;
        self.sweep()?;
        let seq = self.heads()?.last().map_or(1, |h| h.seq + 1);
        let partial = self.releases_dir().join(format!(".partial-{seq}"));
        std::fs::create_dir(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let filled = self.fill(
            build,
            &partial,
            plan,
            live.as_ref(),
            seq,
            options,
            &mut stats,
        );
        let files = match filled {
            Ok(files) => files,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(format!("{e}; the live site was not touched"));
            }
        };
        let content = content_hash(&files);
        let id = format!("{}-{}", utc_stamp(), &content[..12]);
        let own = files.iter().filter(|(_, e)| e.own);
        let manifest = Manifest {
            id: id.clone(),
            seq,
            content,
            stats: stats_digest(own.map(|(k, e)| (k.as_str(), e.size, e.mtime_ns, e.ctime_ns))),
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
        stats.id = id;
        Ok(stats)
    }

    /// Put the planned files and the carried ones into `partial`: links and
    /// copies in one call each.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        build: &Path,
        partial: &Path,
        plan: Vec<Planned>,
        live: Option<&Manifest>,
        seq: u64,
        options: &Options,
        stats: &mut Published,
    ) -> Result<BTreeMap<String, Entry>, String> {
        let live_dir = live.map(|m| self.releases_dir().join(&m.id));
        let into = |key: &str| files::text(&partial.join(key));
        let from_live = |key: &str| match &live_dir {
            Some(dir) => files::text(&dir.join(key)),
            None => Err(format!("{key} has no live release to link from")),
        };
        let mut files = BTreeMap::new();
        let mut links = Vec::new();
        let mut copies = Vec::new();
        for (stat, source, mut entry) in plan {
            let key = stat.path.clone();
            match source {
                Source::Live => {
                    links.push((from_live(&key)?, into(&key)?));
                    stats.linked += 1;
                }
                Source::Build => {
                    copies.push((key.clone(), (files::text(&build.join(&key))?, into(&key)?)));
                    stats.copied += 1;
                    stats.bytes_copied += entry.size;
                    entry.born = seq;
                }
                Source::Bytes(bytes) => {
                    let dst = partial.join(&key);
                    if let Some(dir) = dst.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                    }
                    std::fs::write(&dst, bytes)
                        .map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
                    stats.copied += 1;
                    stats.bytes_copied += entry.size;
                    entry.born = seq;
                }
            }
            files.insert(key, entry);
        }
        // Carried: earlier builds' assets the new build dropped.
        let mut carried = Vec::new();
        for (key, entry) in live.iter().flat_map(|m| &m.files) {
            let carry = !files.contains_key(key)
                && options
                    .carry
                    .iter()
                    .any(|c| key.starts_with(&format!("{}/", c.trim_matches('/'))))
                && seq.saturating_sub(entry.born) <= options.carry_releases;
            if carry {
                links.push((from_live(key)?, into(key)?));
                carried.push((
                    key.clone(),
                    Entry {
                        own: false,
                        ..entry.clone()
                    },
                ));
            }
        }
        stats.carried = carried.len();
        files.extend(carried);
        files::link(&links)?;
        let (keys, pairs): (Vec<String>, Vec<(String, String)>) = copies.into_iter().unzip();
        for (key, hash) in keys.iter().zip(files::copy(&pairs)?) {
            if let Some(entry) = files.get_mut(key) {
                entry.hash = hash;
            }
        }
        Ok(files)
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
        Ok(before(&self.order()?, &current))
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
        let order = self.order()?;
        let current = self.current()?;
        let previous = current.as_ref().and_then(|c| before(&order, c));
        let mut pruned = Vec::new();
        let cut = order.len().saturating_sub(keep);
        for id in &order[..cut] {
            if Some(id) == current.as_ref() || Some(id) == previous.as_ref() {
                continue;
            }
            std::fs::remove_dir_all(self.releases_dir().join(id))
                .map_err(|e| format!("cannot prune release {id}: {e}"))?;
            let _ = std::fs::remove_file(self.releases_dir().join(format!("{id}.json")));
            pruned.push(id.clone());
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
    let mut files: Vec<PathBuf> = scan_stats(build)?
        .into_iter()
        .map(|f| PathBuf::from(f.path))
        .collect();
    files.sort();
    Ok(files)
}

/// [`scan`], with each file's size and times.
fn scan_stats(build: &Path) -> Result<Vec<files::FileStat>, String> {
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
    let found = files::scan(build)?;
    if let Some(link) = found.iter().find(|f| f.symlink) {
        let path = Path::new(&link.path);
        // The sandbox will not even read a link that leaves it.
        let (target, escapes) = match std::fs::read_link(build.join(path)) {
            Ok(t) => (t.display().to_string(), escapes(path, &t)),
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
    }
    if found.is_empty() {
        return Err(format!(
            "the build output {} is empty; run the build first",
            build.display()
        ));
    }
    Ok(found)
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

/// Whether the build file is, by its size and times, the one `previous`
/// recorded.
fn same_stat(previous: &Entry, stat: &files::FileStat) -> bool {
    previous.size == stat.size
        && previous.mtime_ns.is_some()
        && previous.mtime_ns == stat.modified_ns
        && previous.ctime_ns.is_some()
        && previous.ctime_ns == stat.changed_ns
}

/// `entry` (this build's file) with the content of the live release's
/// `previous`.
fn kept(previous: &Entry, entry: Entry) -> Entry {
    Entry {
        hash: previous.hash.clone(),
        born: previous.born,
        ..entry
    }
}

/// How long after a file's last change its times vouch for its content:
/// a rewrite within the same timestamp tick keeps both times, so what was
/// read in that tick may not be what is there later (git's "racily clean"
/// files). Twice the coarsest kernel tick (10 ms, at `HZ=100`), which is
/// how finely Linux stamps a write; or 2 s where times carry no fraction of
/// a second (FAT, some network filesystems).
fn tick_ns(time_ns: u64) -> u64 {
    if time_ns.is_multiple_of(1_000_000_000) {
        2_000_000_000
    } else {
        20_000_000
    }
}

/// Wait until each of `files` is a tick older than now, so that reading it
/// from then on reads content its times vouch for; returns when reading may
/// start. A build that just finished costs this wait once, instead of
/// leaving its newest files unrecorded and read again on every redeploy.
fn settle<'a>(files: impl Iterator<Item = &'a files::FileStat>) -> u64 {
    let now = now_ns();
    let ready = files
        .filter_map(|f| f.changed_ns.max(f.modified_ns))
        .filter(|&t| t <= now)
        .map(|t| t + tick_ns(t))
        .max();
    if let Some(ready) = ready.filter(|&r| r > now) {
        std::thread::sleep(std::time::Duration::from_nanos(ready - now));
    }
    now_ns()
}

/// Whether a file read from `read_from` on may have changed within the
/// tick of its times: then it is recorded without times and the next
/// publish reads it. After [`settle`], only a file without times or with
/// times ahead of the clock.
fn racy(stat: &files::FileStat, read_from: u64) -> bool {
    match (stat.modified_ns, stat.changed_ns) {
        (Some(m), Some(c)) => {
            let last = m.max(c);
            read_from.saturating_sub(last) < tick_ns(last)
        }
        _ => true,
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The id before `id` in `order`.
fn before(order: &[String], id: &str) -> Option<String> {
    let pos = order.iter().position(|o| o == id)?;
    pos.checked_sub(1).map(|p| order[p].clone())
}

/// The hash a manifest records for content, to compare a fetched body with.
pub fn hash_bytes(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// XXH3-128 of each file's path, size and times, in path order; none when a
/// file has no times to vouch for its content.
fn stats_digest<'a>(
    files: impl Iterator<Item = (&'a str, u64, Option<u64>, Option<u64>)>,
) -> Option<String> {
    let mut hasher = Xxh3::new();
    for (path, size, mtime, ctime) in files {
        hasher.update(path.as_bytes());
        hasher.update(&[0]);
        for n in [size, mtime?, ctime?] {
            hasher.update(&n.to_le_bytes());
        }
    }
    Some(format!("{:032x}", hasher.digest128()))
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

    /// Let the build's times age a tick, so a publish need not wait.
    fn age() {
        std::thread::sleep(std::time::Duration::from_millis(40));
    }

    fn release_names(site: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(site.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_unchanged_build_is_recognised_by_its_times_and_creates_nothing() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let v1 = build(&[("index.html", "v1"), ("a/b.html", "b")]);
        age();
        let p1 = releases.publish(v1.path(), &Options::default()).unwrap();
        releases.switch(&p1.id).unwrap();
        let entry = &releases.manifest(&p1.id).unwrap().unwrap().files["index.html"];
        assert!(entry.mtime_ns.is_some() && entry.ctime_ns.is_some());
        assert!(releases.manifest(&p1.id).unwrap().unwrap().stats.is_some());
        let before = release_names(site.path());
        let again = releases.publish(v1.path(), &Options::default()).unwrap();
        assert!(again.unchanged);
        assert_eq!(again.id, p1.id);
        assert_eq!(again.checked, 0, "no file was read");
        assert_eq!(release_names(site.path()), before, "no release, no partial");
        // One file fewer is another build, though every other file matches.
        std::fs::remove_file(v1.path().join("a/b.html")).unwrap();
        let p2 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert!(!p2.unchanged && p2.checked == 0);
        assert_eq!((p2.files, p2.linked), (1, 1));
    }

    #[test]
    fn a_file_whose_size_or_times_differ_is_read() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let v1 = build(&[
            ("same.html", "same"),
            ("grown.html", "g"),
            ("touched.html", "t1"),
        ]);
        age();
        let p1 = releases.publish(v1.path(), &Options::default()).unwrap();
        releases.switch(&p1.id).unwrap();
        // Another size; new times with the same bytes; nothing.
        std::fs::write(v1.path().join("grown.html"), "grown").unwrap();
        std::fs::write(v1.path().join("touched.html"), "t1").unwrap();
        let p2 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert_eq!(p2.checked, 2);
        assert_eq!(
            (p2.copied, p2.linked),
            (1, 2),
            "touched.html links: same bytes"
        );
        releases.switch(&p2.id).unwrap();
        assert_eq!(live_file(site.path(), "grown.html"), "grown");
        // The same size and times, new bytes: a rewrite (new ctime) with
        // its mtime set back, as `touch -d` or `tar -x` leave it.
        let page = v1.path().join("same.html");
        let mtime = std::fs::metadata(&page).unwrap().modified().unwrap();
        std::fs::write(&page, "SAME").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&page)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        age();
        let p3 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert_eq!((p3.checked, p3.copied, p3.linked), (1, 1, 2));
        releases.switch(&p3.id).unwrap();
        assert_eq!(live_file(site.path(), "same.html"), "SAME");
        assert_eq!(
            releases
                .publish(v1.path(), &Options::default())
                .unwrap()
                .checked,
            0
        );
    }

    #[test]
    fn files_written_just_before_a_publish_are_read_a_tick_later() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        // No age(): a same-size rewrite could still land in the same tick.
        let v1 = build(&[("index.html", "v1")]);
        let p1 = releases.publish(v1.path(), &Options::default()).unwrap();
        let done = now_ns();
        releases.switch(&p1.id).unwrap();
        let entry = &releases.manifest(&p1.id).unwrap().unwrap().files["index.html"];
        let ctime = entry.ctime_ns.expect("recorded once the tick passed");
        assert!(
            done >= ctime + tick_ns(ctime),
            "read before its tick passed"
        );
        // So a same-size rewrite right after has other times.
        std::fs::write(v1.path().join("index.html"), "v2").unwrap();
        let p2 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert_eq!((p2.checked, p2.copied), (1, 1));
        releases.switch(&p2.id).unwrap();
        assert_eq!(live_file(site.path(), "index.html"), "v2");
        let p3 = releases.publish(v1.path(), &Options::default()).unwrap();
        assert!(p3.unchanged && p3.checked == 0);
    }

    #[test]
    fn times_ahead_of_the_clock_are_not_recorded() {
        let stat = |t: u64| files::FileStat {
            path: "a".into(),
            size: 1,
            modified_ns: Some(t),
            changed_ns: Some(t),
            symlink: false,
        };
        let now = now_ns();
        assert!(racy(&stat(now + 60_000_000_000), now), "a minute ahead");
        assert!(racy(&stat(now - 10_000_000 + 1), now), "within 20 ms");
        assert!(!racy(&stat(now - 40_000_000 + 1), now));
        let second = now / 1_000_000_000 * 1_000_000_000;
        assert!(
            racy(&stat(second - 1_000_000_000), now),
            "coarse times: 2 s"
        );
        let none = files::FileStat {
            modified_ns: None,
            ..stat(now)
        };
        assert!(racy(&none, now));
    }

    #[test]
    fn a_manifest_from_before_ctime_is_read_and_its_files_still_link() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let options = Options {
            carry: vec!["_astro".into()],
            ..Options::default()
        };
        let v1 = build(&[("index.html", "v1"), ("_astro/a.css", "css")]);
        age();
        let p1 = releases.publish(v1.path(), &options).unwrap();
        releases.switch(&p1.id).unwrap();
        // Rewrite its manifest as the first releases wrote them: an
        // `mtime_ns` but no `ctime_ns`, and no digest of the times.
        let json = site.path().join(format!("releases/{}.json", p1.id));
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("stats");
        for entry in old["files"].as_object_mut().unwrap().values_mut() {
            entry.as_object_mut().unwrap().remove("ctime_ns");
        }
        std::fs::write(&json, serde_json::to_vec(&old).unwrap()).unwrap();
        let read = releases.manifest(&p1.id).unwrap().unwrap();
        assert_eq!(releases.head(&p1.id).unwrap().unwrap().seq, 1);
        assert_eq!(read.files["index.html"].ctime_ns, None);
        // Its times cannot vouch: the file is read, and links by its hash.
        std::fs::remove_file(v1.path().join("_astro/a.css")).unwrap();
        let p2 = releases.publish(v1.path(), &options).unwrap();
        assert!(!p2.unchanged);
        assert_eq!((p2.checked, p2.copied, p2.linked, p2.carried), (1, 0, 1, 1));
        releases.switch(&p2.id).unwrap();
        age();
        assert!(releases.publish(v1.path(), &options).unwrap().unchanged);
    }

    #[test]
    fn a_head_is_read_without_the_file_list_or_from_the_whole_file() {
        let site = tempfile::tempdir().unwrap();
        let releases = Releases::open(site.path());
        let v1 = build(&[("index.html", "v1")]);
        age();
        let p1 = releases.publish(v1.path(), &Options::default()).unwrap();
        let json = site.path().join(format!("releases/{}.json", p1.id));
        let written = std::fs::read_to_string(&json).unwrap();
        assert!(written.ends_with("}}}"), "files come last: {written}");
        let head = releases.head(&p1.id).unwrap().unwrap();
        assert_eq!((head.id.as_str(), head.seq), (p1.id.as_str(), 1));
        let stats = releases.manifest(&p1.id).unwrap().unwrap().stats;
        assert!(stats.is_some() && head.stats == stats);
        // Laid out otherwise (hand-edited, pretty-printed): read whole.
        let value: serde_json::Value = serde_json::from_str(&written).unwrap();
        std::fs::write(&json, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        assert_eq!(releases.head(&p1.id).unwrap().unwrap().stats, stats);
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
