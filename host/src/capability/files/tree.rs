//! A scan of a directory tree, native and side by side: a stat per file is
//! most of a static publish's recognition cost, and the kernel does them
//! in parallel.
//!
//! The root is a directory WASI already resolved beneath its grant. Below
//! it, every name comes from `readdir`, so it is one component and never
//! `..`; each is stat'ed and opened relative to its own directory without
//! following a symlink. Nothing can lead out of the root.

use crate::bindings::slipway::plugin::files::FileStat;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex};

/// Every regular file and symlink under `root`, sorted by path. `shown` is
/// the root as the plugin names it, for errors.
pub fn scan(root: &File, shown: &str) -> Result<Vec<FileStat>, String> {
    let work = Work {
        queue: Mutex::new(Queue {
            dirs: vec![String::new()],
            busy: 0,
            failed: None,
        }),
        changed: Condvar::new(),
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let mut found = std::thread::scope(|s| {
        // A thread the system will not start is one fewer; with none,
        // this thread walks the whole tree.
        let workers: Vec<_> = (0..threads)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(s, || work.run(root, shown))
                    .ok()
            })
            .collect();
        let mut found = match workers.is_empty() {
            true => work.run(root, shown),
            false => Vec::new(),
        };
        for worker in workers {
            found.extend(
                worker
                    .join()
                    .map_err(|_| "a scan thread stopped".to_owned())?,
            );
        }
        Ok::<_, String>(found)
    })?;
    let queue = work
        .queue
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(e) = queue.failed {
        return Err(e);
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The directories still to list, shared by the scan's threads.
struct Work {
    queue: Mutex<Queue>,
    changed: Condvar,
}

struct Queue {
    /// Relative to the root, each ending in `/` (the root is empty).
    dirs: Vec<String>,
    /// Directories being listed: while any is, more may come.
    busy: usize,
    failed: Option<String>,
}

impl Work {
    /// List directories until none is left or one fails; returns the files.
    fn run(&self, root: &File, shown: &str) -> Vec<FileStat> {
        let mut found = Vec::new();
        while let Some(dir) = self.next() {
            let listed = list(root, &dir, shown);
            let mut queue = self.lock();
            queue.busy -= 1;
            match listed {
                Ok((files, dirs)) => {
                    found.extend(files);
                    queue.dirs.extend(dirs);
                }
                Err(e) => {
                    queue.failed.get_or_insert(e);
                    queue.dirs.clear();
                }
            }
            self.changed.notify_all();
        }
        found
    }

    /// The next directory to list; none once all are listed.
    fn next(&self) -> Option<String> {
        let mut queue = self.lock();
        loop {
            if let Some(dir) = queue.dirs.pop() {
                queue.busy += 1;
                return Some(dir);
            }
            if queue.busy == 0 {
                return None;
            }
            queue = self
                .changed
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The queue, even after a thread panicked holding it: its counts are
    /// only ever changed whole, and waiting on a poisoned lock would hang.
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The files of the directory `rel` and its subdirectories' paths.
fn list(root: &File, rel: &str, shown: &str) -> Result<(Vec<FileStat>, Vec<String>), String> {
    let here = format!("{shown}/{rel}");
    let dir = open(root, rel).map_err(|e| format!("cannot open `{here}`: {e}"))?;
    let entries =
        rustix::fs::Dir::read_from(&dir).map_err(|e| format!("cannot list `{here}`: {e}"))?;
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{here}`: {e}"))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let Ok(name) = name.to_str() else {
            return Err(format!("`{here}` holds a name that is not UTF-8"));
        };
        let path = format!("{rel}{name}");
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| format!("cannot stat `{shown}/{path}`: {e}"))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => dirs.push(format!("{path}/")),
            FileType::RegularFile | FileType::Symlink => files.push(file_stat(path, &stat)),
            _ => {
                return Err(format!(
                    "`{shown}/{path}` is neither a file nor a directory (a socket, FIFO or device)"
                ));
            }
        }
    }
    Ok((files, dirs))
}

/// The directory `rel` beneath `root`, one component at a time, none of
/// them followed if it is a symlink.
fn open(root: &File, rel: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut dir = rustix::fs::openat(root, c".", flags, Mode::empty())?;
    for name in rel.split('/').filter(|n| !n.is_empty()) {
        dir = rustix::fs::openat(&dir, name, flags, Mode::empty())?;
    }
    Ok(dir)
}

fn file_stat(path: String, stat: &Stat) -> FileStat {
    let ns = |s: i64, n: u64| {
        u64::try_from(s)
            .ok()?
            .checked_mul(1_000_000_000)?
            .checked_add(n)
    };
    FileStat {
        path,
        size: u64::try_from(stat.st_size).unwrap_or(0),
        modified_ns: ns(stat.st_mtime, stat.st_mtime_nsec),
        changed_ns: ns(stat.st_ctime, stat.st_ctime_nsec),
        symlink: FileType::from_raw_mode(stat.st_mode) == FileType::Symlink,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_at_every_depth_sorted_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let mut expected = vec!["top.txt".to_owned()];
        for a in 0..12 {
            for b in 0..3 {
                let dir = root.path().join(format!("d{a:02}/e{b}/f"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("x.html"), "x").unwrap();
                expected.push(format!("d{a:02}/e{b}/f/x.html"));
            }
        }
        std::fs::create_dir(root.path().join("empty")).unwrap();
        std::fs::write(root.path().join("top.txt"), "top").unwrap();
        expected.sort();
        let dir = File::open(root.path()).unwrap();
        let found = scan(&dir, "/build").unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, expected);
        assert_eq!(found[paths.len() - 1].size, 3);
        assert!(found.iter().all(|f| f.modified_ns.is_some() && !f.symlink));

        let fifo = root.path().join("d05/e1/pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        let err = scan(&dir, "/build").unwrap_err();
        assert!(
            err.contains("`/build/d05/e1/pipe` is neither a file nor a directory"),
            "{err}"
        );
    }
}
