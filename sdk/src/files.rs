//! Bulk file work in the granted directories: the `files` import. One call
//! scans a tree with sizes and times, or hashes, copies or hard-links a
//! whole list of files, at the speed of the disk: through WASI each file
//! costs several calls and every byte a copy through the plugin's memory.
//! Paths are as the plugin sees them (`/build/index.html`) and reach what
//! its `std::fs` calls reach, no more; see `wit/slipway.wit`.
//!
//! Built natively (the SDK's own tests, a tool), the same functions run on
//! `std::fs`.

use std::path::Path;

/// A file found by [`scan`]: its path relative to the scanned directory,
/// size, `mtime` and `ctime` in nanoseconds, and whether it is a symlink.
pub use crate::imports::files::FileStat;

/// Every regular file and symlink under `dir`, at any depth, sorted by path.
pub fn scan(dir: &Path) -> Result<Vec<FileStat>, String> {
    imp::scan(&text(dir)?)
}

/// The XXH3-128 of each file, hex, as [`crate::release::hash_bytes`] gives.
pub fn hash(paths: &[String]) -> Result<Vec<String>, String> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    imp::hash(paths)
}

/// Copy each `(from, to)`, creating `to`'s parents; `to` must not exist.
/// Returns the XXH3-128 of each copy.
pub fn copy(pairs: &[(String, String)]) -> Result<Vec<String>, String> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    imp::copy(pairs)
}

/// Hard-link each `(existing, new)`, creating `new`'s parents. Both must be
/// in directories granted read-write.
pub fn link(pairs: &[(String, String)]) -> Result<(), String> {
    if pairs.is_empty() {
        return Ok(());
    }
    imp::link(pairs)
}

/// A path as the import takes it.
pub fn text(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))
}

#[cfg(target_os = "wasi")]
mod imp {
    pub use crate::imports::files::{copy, hash, link};

    pub fn scan(dir: &str) -> Result<Vec<super::FileStat>, String> {
        crate::imports::files::scan(dir)
    }
}

#[cfg(not(target_os = "wasi"))]
mod imp {
    use super::FileStat;
    use std::io::Read;
    use std::path::{Path, PathBuf};

    pub fn scan(dir: &str) -> Result<Vec<FileStat>, String> {
        let root = Path::new(dir);
        let mut found = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let at = root.join(&prefix);
            let entries =
                std::fs::read_dir(&at).map_err(|e| format!("cannot list {}: {e}", at.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot list {}: {e}", at.display()))?;
                let path = format!("{prefix}{}", entry.file_name().to_string_lossy());
                let meta = entry
                    .metadata()
                    .map_err(|e| format!("cannot stat {path}: {e}"))?;
                let kind = meta.file_type();
                if kind.is_dir() {
                    stack.push(format!("{path}/"));
                } else if kind.is_file() || kind.is_symlink() {
                    found.push(stat(path, &meta));
                } else {
                    return Err(format!("{path} is not a file or a directory"));
                }
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn stat(path: String, meta: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| u64::try_from(s).ok().map(|s| s * 1_000_000_000 + n as u64);
        FileStat {
            path,
            size: meta.len(),
            modified_ns: ns(meta.mtime(), meta.mtime_nsec()),
            changed_ns: ns(meta.ctime(), meta.ctime_nsec()),
            symlink: meta.file_type().is_symlink(),
        }
    }

    pub fn hash(paths: &[String]) -> Result<Vec<String>, String> {
        paths.iter().map(|p| hash_file(Path::new(p))).collect()
    }

    fn hash_file(path: &Path) -> Result<String, String> {
        let mut file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 {
                return Ok(format!("{:032x}", hasher.digest128()));
            }
            hasher.update(&buf[..n]);
        }
    }

    fn parent(to: &str) -> Result<PathBuf, String> {
        let to = Path::new(to);
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(to.to_owned())
    }

    pub fn copy(pairs: &[(String, String)]) -> Result<Vec<String>, String> {
        pairs
            .iter()
            .map(|(from, to)| {
                let to = parent(to)?;
                let mut src =
                    std::fs::File::open(from).map_err(|e| format!("cannot read {from}: {e}"))?;
                let mut dst = std::fs::File::create_new(&to)
                    .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
                std::io::copy(&mut src, &mut dst)
                    .map_err(|e| format!("cannot copy {from}: {e}"))?;
                hash_file(&to)
            })
            .collect()
    }

    pub fn link(pairs: &[(String, String)]) -> Result<(), String> {
        for (existing, new) in pairs {
            std::fs::hard_link(existing, parent(new)?)
                .map_err(|e| format!("cannot link {existing} to {new}: {e}"))?;
        }
        Ok(())
    }
}
