//! The per-plugin key-value store behind the `state` import: a JSON file
//! per plugin under the state directory, and beside it, while a call runs,
//! a log of that call's writes.
//!
//! A write appends one line to the log, so it costs the size of its value,
//! not of the store, and is in the file before the plugin goes on (a kill of
//! the agent loses nothing). When the call ends, the store is written whole
//! to its JSON file, flushed to the disk, and the log removed: one rewrite
//! per call, however many writes it made. Opening replays a log a killed
//! call left onto the file, which is right whether or not that call's
//! rewrite happened, since replaying writes the store already holds changes
//! nothing.

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Keys and values a plugin may keep. Bounded so a plugin cannot fill the disk.
pub const MAX_ENTRIES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct PluginState {
    files: Option<Files>,
    entries: BTreeMap<String, String>,
    /// Writes not yet in the log.
    pending: Vec<Change>,
    /// The log, once this call has written to it.
    log: Option<std::fs::File>,
}

/// Where one plugin's store lives.
#[derive(Debug)]
struct Files {
    store: PathBuf,
    log: PathBuf,
}

/// One line of the log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    Set(String, String),
    Delete(String),
}

impl PluginState {
    /// Load `<dir>/plugins/<plugin>.json` and replay `<plugin>.log` onto it;
    /// without a directory the state lives only as long as the call.
    pub fn open(dir: Option<&Path>, plugin: &str) -> Result<PluginState> {
        let Some(dir) = dir else {
            return Ok(PluginState::default());
        };
        let files = Files {
            store: dir.join("plugins").join(format!("{plugin}.json")),
            log: dir.join("plugins").join(format!("{plugin}.log")),
        };
        let corrupt = |file: &Path| {
            format!(
                "plugin state {} is corrupt; delete it to reset the plugin",
                file.display()
            )
        };
        let mut entries: BTreeMap<String, String> = match read(&files.store)? {
            Some(bytes) => serde_json::from_slice(&bytes).with_context(|| corrupt(&files.store))?,
            None => BTreeMap::new(),
        };
        let log = read(&files.log)?.unwrap_or_default();
        // A line without its newline is a write a kill cut short: the
        // plugin never heard it succeed.
        for line in log
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
        {
            match serde_json::from_slice(line).with_context(|| corrupt(&files.log))? {
                Change::Set(key, value) => entries.insert(key, value),
                Change::Delete(key) => entries.remove(&key),
            };
        }
        Ok(PluginState {
            files: Some(files),
            entries,
            ..PluginState::default()
        })
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.entries.get(key).cloned()
    }

    /// Refuses (returning false) past the size bounds.
    pub fn set(&mut self, key: String, value: String) -> bool {
        let new_key = !self.entries.contains_key(&key);
        if value.len() > MAX_VALUE_BYTES || new_key && self.entries.len() >= MAX_ENTRIES {
            return false;
        }
        self.entries.insert(key.clone(), value.clone());
        self.pending.push(Change::Set(key, value));
        true
    }

    pub fn delete(&mut self, key: &str) {
        if self.entries.remove(key).is_some() {
            self.pending.push(Change::Delete(key.to_owned()));
        }
    }

    /// Append the writes not yet saved to the log: a kill of the agent
    /// keeps them; a power loss may not until [`PluginState::sync`].
    pub fn save(&mut self) -> Result<()> {
        let Some(files) = &self.files else {
            self.pending.clear();
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for change in self.pending.drain(..) {
            serde_json::to_writer(&mut lines, &change)?;
            lines.push(b'\n');
        }
        if self.log.is_none() {
            let dir = files.log.parent().expect("the log has a parent");
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&files.log)
                .with_context(|| format!("cannot open {}", files.log.display()))?;
            self.log = Some(log);
        }
        let log = self.log.as_mut().expect("opened above");
        log.write_all(&lines)
            .with_context(|| format!("cannot write {}", files.log.display()))
    }

    /// Save, then write the store whole, flushed to the disk, and remove
    /// the log. Once per call rather than on every write: a watcher that
    /// counts on every tick pays one flush a tick, which on a busy disk is
    /// what a tick costs.
    pub fn sync(&mut self) -> Result<()> {
        self.save()?;
        let (Some(files), Some(_)) = (&self.files, self.log.take()) else {
            return Ok(());
        };
        replace(
            &files.store,
            &serde_json::to_vec_pretty(&self.entries)?,
            Flush::Now,
        )
        .with_context(|| format!("cannot write {}", files.store.display()))?;
        std::fs::remove_file(&files.log)
            .with_context(|| format!("cannot remove {}", files.log.display()))
    }
}

/// The file's bytes, or `None` when it does not exist.
fn read(file: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// Whether [`replace`] waits for the new content to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Before the rename: the file survives a power loss once this returns.
    Now,
    /// When the kernel writes it back: enough against a kill of the agent,
    /// for files that are flushed later or only inform.
    Later,
}

/// Replace `path` with `bytes` so that a reader, or a crash, sees the old
/// content or the new, never a part: a synced temporary file beside it,
/// renamed over it. The directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, Flush::Now)
}

/// The host's one way to replace a file: a temporary file beside it,
/// written (and flushed, with [`Flush::Now`]), renamed over it.
pub fn replace(path: &Path, bytes: &[u8], flush: Flush) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Unique per process and per call, so concurrent writers never share one.
    static N: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            match flush {
                Flush::Now => file.sync_all(),
                Flush::Later => Ok(()),
            }
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Free space below which a deploy does not start: what it writes to the
/// state directory (specs, state, the journal) takes kilobytes, and a deploy
/// that can no longer record itself leaves rollback blind.
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Refuse to start when the state directory's filesystem (that of its
/// nearest existing ancestor, before the first deploy) is all but full. A
/// filesystem that cannot say is given the benefit of the doubt.
pub fn check_room(state_dir: &Path) -> Result<(), String> {
    let Some(existing) = state_dir.ancestors().find(|dir| dir.is_dir()) else {
        return Ok(());
    };
    let Ok(stat) = rustix::fs::statvfs(existing) else {
        return Ok(());
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let no_inodes = stat.f_files > 0 && stat.f_favail == 0;
    if free >= MIN_FREE_BYTES && !no_inodes {
        return Ok(());
    }
    let what = match no_inodes {
        true => "no inodes left".to_owned(),
        false => format!("{free} bytes free"),
    };
    Err(format!(
        "the state directory {} (journal, specs, plugin state) is on a full filesystem ({what};          a deploy needs {} KiB there to record what it does); nothing was changed: free space there and rerun",
        state_dir.display(),
        MIN_FREE_BYTES / 1024
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PluginState::open(Some(dir.path()), "watchdog").unwrap();
        assert_eq!(s.get("ip"), None);
        assert!(s.set("ip".into(), "1.2.3.4".into()));
        s.save().unwrap();
        let mut s = PluginState::open(Some(dir.path()), "watchdog").unwrap();
        assert_eq!(s.get("ip").as_deref(), Some("1.2.3.4"));
        s.delete("ip");
        s.save().unwrap();
        assert_eq!(
            PluginState::open(Some(dir.path()), "watchdog")
                .unwrap()
                .get("ip"),
            None
        );
        // Other plugins don't see it.
        assert_eq!(
            PluginState::open(Some(dir.path()), "other")
                .unwrap()
                .get("ip"),
            None
        );
    }

    /// A call killed after its writes reached the log, before or after
    /// its rewrite of the store: the next open holds every write, and a
    /// write cut off mid-line is not one.
    #[test]
    fn a_killed_calls_log_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PluginState::open(Some(dir.path()), "p").unwrap();
        s.set("a".into(), "1".into());
        s.set("b".into(), "2".into());
        s.sync().unwrap();
        s.set("a".into(), "3".into());
        s.delete("b");
        s.save().unwrap();
        let log = dir.path().join("plugins/p.log");
        let mut torn = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        torn.write_all(br#"{"set":["c","#).unwrap();
        let reopened = PluginState::open(Some(dir.path()), "p").unwrap();
        assert_eq!(reopened.entries, [("a".into(), "3".into())].into());
        // The rewrite happened, the log's removal did not.
        let kept = std::fs::read(&log).unwrap();
        let mut s = PluginState::open(Some(dir.path()), "p").unwrap();
        s.set("d".into(), "4".into());
        s.sync().unwrap();
        assert!(!log.exists());
        std::fs::write(&log, kept).unwrap();
        let reopened = PluginState::open(Some(dir.path()), "p").unwrap();
        let want = [("a".into(), "3".into()), ("d".into(), "4".into())];
        assert_eq!(reopened.entries, want.into());
    }

    #[test]
    fn write_atomic_replaces_whole_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.json");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two, longer");
        // A failed write leaves the old content and no temporary file.
        let missing = dir.path().join("no-such-dir/f.json");
        assert!(write_atomic(&missing, b"x").is_err());
        let over_a_dir = dir.path().join("a-dir");
        std::fs::create_dir(&over_a_dir).unwrap();
        assert!(write_atomic(&over_a_dir, b"x").is_err());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a-dir", "f.json"]);
    }

    #[test]
    fn bounded() {
        let mut s = PluginState::default();
        assert!(!s.set("k".into(), "x".repeat(MAX_VALUE_BYTES + 1)));
        for i in 0..MAX_ENTRIES {
            assert!(s.set(i.to_string(), String::new()));
        }
        assert!(!s.set("one-more".into(), String::new()));
        assert!(s.set("0".into(), "overwrite is fine".into()));
    }

    #[test]
    fn corrupt_state_says_how_to_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("plugins/p.json"), b"{not json").unwrap();
        let err = PluginState::open(Some(dir.path()), "p").unwrap_err();
        assert!(format!("{err:#}").contains("delete it to reset"));
    }
}
