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
/// `/app/.next/static`); that first component becomes `to`.
pub fn unpack_archive(archive: &[u8], to: &Path) -> Result<Unpacked, String> {
    if to.exists() {
        return Err(format!("{} already exists", to.display()));
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
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
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("cannot read {}: {e}", name.display()))?;
                write_new(&target, &bytes)?;
                done.files += 1;
                done.bytes += bytes.len() as u64;
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

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
        let e = unpack_archive(&archive(&[]), dir.path()).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        let e = unpack_archive(b"not a tar", &dir.path().join("junk")).unwrap_err();
        assert!(!e.is_empty());
    }
}
