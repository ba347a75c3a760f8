//! Files out of a service's images, through the `docker.image-archive`
//! import: the host reads a path from an image (`docker cp`), and this
//! module unpacks the archive into a directory the plugin was granted
//! read-write, through its own WASI preopens, so it writes nothing the
//! manifest does not grant.
//!
//! Only directories and regular files are unpacked. A symlink, a hard
//! link, a device or a path that climbs out (`..`, absolute) fails the
//! whole unpack: an image is the user's, but what it holds must not decide
//! where the plugin writes.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// What [`unpack`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unpacked {
    pub files: usize,
    pub bytes: u64,
}

/// Unpack the directory `path` of `image` (an image of `service`) into
/// `to`, which must not exist: `to` becomes that directory.
pub fn unpack(service: &str, image: &str, path: &str, to: &Path) -> Result<Unpacked, String> {
    let archive = archive(service, image, path)?;
    unpack_archive(&archive, to).map_err(|e| {
        format!(
            "cannot unpack `{path}` of {service}'s image {} into {}: {e}",
            short(image),
            to.display()
        )
    })
}

#[cfg(target_os = "wasi")]
fn archive(service: &str, image: &str, path: &str) -> Result<Vec<u8>, String> {
    crate::docker::image_archive(service, image, path)
}

#[cfg(not(target_os = "wasi"))]
fn archive(_: &str, _: &str, _: &str) -> Result<Vec<u8>, String> {
    Err("image archives come from the host's docker import, which only a plugin has".into())
}

/// Unpack a `docker cp` archive of one directory into `to`. Docker names
/// every entry under the directory's own name (`static/chunks/a.js` for
/// `/app/.next/static`); that first component becomes `to`. An archive
/// refused partway leaves nothing: `to` is removed.
pub fn unpack_archive(archive: &[u8], to: &Path) -> Result<Unpacked, String> {
    if to.exists() {
        return Err(format!("{} already exists", to.display()));
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let unpacked = unpack_into(archive, to);
    if unpacked.is_err() {
        let _ = std::fs::remove_dir_all(to);
    }
    unpacked
}

fn unpack_into(archive: &[u8], to: &Path) -> Result<Unpacked, String> {
    let mut done = Unpacked::default();
    let mut tar = tar::Archive::new(archive);
    let entries = tar
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("a damaged archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("an entry with a bad name: {e}"))?
            .into_owned();
        let Some(rel) = inside(&name)? else {
            continue;
        };
        let target = to.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&target)
                .map_err(|e| format!("cannot create {}: {e}", target.display()))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // Streamed: the header's size is a claim, and only the
                // archive's own bytes back it.
                let claimed = entry.size();
                let written = write_new(&target, &mut entry)?;
                if written != claimed {
                    return Err(format!(
                        "{} claims {claimed} bytes and the archive holds {written}: a damaged archive",
                        name.display()
                    ));
                }
                done.files += 1;
                done.bytes += written;
            }
            other => {
                return Err(format!(
                    "{} is a {other:?}, not a file or a directory; only those are unpacked",
                    name.display()
                ));
            }
        }
    }
    Ok(done)
}

/// `name` below the archive's top directory, or `None` for the top itself.
fn inside(name: &Path) -> Result<Option<PathBuf>, String> {
    let mut parts = Vec::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            _ => return Err(format!("{} leaves the archive's directory", name.display())),
        }
    }
    Ok((parts.len() > 1).then(|| parts[1..].iter().collect()))
}

/// A new file at `path` with what `from` reads; how many bytes that was.
fn write_new(path: &Path, from: &mut impl Read) -> Result<u64, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::copy(from, &mut file).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn short(image: &str) -> &str {
    let digits = image.strip_prefix("sha256:").unwrap_or(image);
    digits.get(..12).unwrap_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            // set_path refuses `..`; write the raw name as a hostile image would.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *body).unwrap();
        }
        builder.into_inner().unwrap()
    }

    use tar::EntryType::{Directory, Regular, Symlink};

    #[test]
    fn a_directory_becomes_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("build");
        let tar = archive(&[
            ("static/", Directory, b""),
            ("static/chunks/", Directory, b""),
            ("static/chunks/a-1.js", Regular, b"one"),
            ("static/b.css", Regular, b"two!"),
        ]);
        let done = unpack_archive(&tar, &to).unwrap();
        assert_eq!(done, Unpacked { files: 2, bytes: 7 });
        assert_eq!(std::fs::read(to.join("chunks/a-1.js")).unwrap(), b"one");
        assert_eq!(std::fs::read(to.join("b.css")).unwrap(), b"two!");
    }

    /// A header may claim any size: 8 GiB is neither allocated nor
    /// believed, and the partial unpack is removed.
    #[test]
    fn a_size_the_archive_does_not_hold_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = archive(&[
            ("static/", Directory, b""),
            ("static/ok.js", Regular, b"fine"),
            ("static/huge.bin", Regular, b"small"),
        ]);
        // The third header (after two 512-byte headers and ok.js's block),
        // claiming 8 GiB (in base 256, as GNU tar writes sizes that large).
        let mut huge = tar::Header::new_gnu();
        huge.set_entry_type(Regular);
        huge.set_path("static/huge.bin").unwrap();
        huge.set_size(8 << 30);
        huge.set_mode(0o644);
        huge.set_cksum();
        tar[3 * 512..4 * 512].copy_from_slice(huge.as_bytes());
        let to = dir.path().join("build");
        let e = unpack_archive(&tar, &to).unwrap_err();
        assert!(e.contains("huge.bin claims 8589934592 bytes"), "{e}");
        assert!(!to.exists());
    }

    #[test]
    fn links_climbing_names_and_an_existing_target_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, tar::EntryType, &str); 3] = [
            ("static/../../escape", Regular, "leaves the archive"),
            ("/etc/passwd", Regular, "leaves the archive"),
            ("static/link", Symlink, "not a file or a directory"),
        ];
        for (i, (name, kind, expect)) in cases.into_iter().enumerate() {
            let to = dir.path().join(format!("t{i}"));
            let e = unpack_archive(&archive(&[(name, kind, b"x")]), &to).unwrap_err();
            assert!(e.contains(expect), "{name}: {e}");
        }
        assert!(!dir.path().join("escape").exists());
        // Refused partway: nothing of it is left.
        for i in 0..3 {
            assert!(!dir.path().join(format!("t{i}")).exists(), "t{i}");
        }
        let e = unpack_archive(&archive(&[]), dir.path()).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        let e = unpack_archive(b"not a tar", &dir.path().join("junk")).unwrap_err();
        assert!(!e.is_empty());
    }
}
