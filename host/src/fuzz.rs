//! Entry points for the fuzz targets of the host (`fuzz/`; the nginx config
//! parser is the SDK's): each takes arbitrary bytes
//! the way slipway meets them (a file someone wrote, a command's output, a
//! journal a killed run left) and runs the code that reads them, end to end.
//! Every input must give a result or an error, never a panic.
//!
//! Files are written to a scratch directory of the process (on tmpfs when
//! there is one): the loaders read files as they do in a deploy.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Splits one input into the files a target writes, in order.
pub const FILE_SEPARATOR: &[u8] = b"\n#--- next file ---\n";

/// `slipway.toml`, loaded and validated as `-f` would, with the example's
/// compose file beside it; then every step's grants.
pub fn manifest(data: &[u8]) {
    let dir = scratch("manifest");
    write(&dir.join("docker-compose.yml"), EXAMPLE_COMPOSE.as_bytes());
    write(&dir.join("slipway.toml"), data);
    let Ok(loaded) = crate::manifest::Loaded::load(&dir.join("slipway.toml")) else {
        return;
    };
    for surface in loaded.manifest.surface.values() {
        for step in &surface.step {
            let _ = loaded.grants(&step.grants);
        }
    }
}

/// A compose project: `docker-compose.yml`, an override file and `.env`
/// (the input's parts, split at [`FILE_SEPARATOR`]), merged and
/// interpolated as compose does; then each service's container spec.
pub fn compose(data: &[u8]) {
    let dir = scratch("compose");
    let mut parts = split(data, FILE_SEPARATOR);
    let main = parts.next().unwrap_or_default();
    let files = [
        ("docker-compose.yml", main),
        (
            "docker-compose.override.yml",
            parts.next().unwrap_or_default(),
        ),
        (".env", parts.next().unwrap_or_default()),
    ];
    for (name, bytes) in files {
        write(&dir.join(name), bytes);
    }
    let paths = [
        dir.join("docker-compose.yml"),
        dir.join("docker-compose.override.yml"),
    ];
    let options = crate::compose::LoadOptions::default();
    let Ok(project) = crate::compose::ComposeProject::load(&paths, "fuzz", &options) else {
        return;
    };
    for (name, def) in &project.services {
        let _ = (def.depends_on(), def.image_tag("fuzz"));
        if let Ok(spec) = crate::desired::desired(&project, name, "fuzz/image:latest") {
            let _ = (spec.hash(), spec.create_body(&[]), spec.single_instance());
        }
    }
}

/// `journal.jsonl`, read as `slipway log`, `status` and `rollback` do.
pub fn journal(data: &[u8]) {
    let dir = scratch("journal");
    write(&crate::journal::path(&dir), data);
    let Ok((entries, _torn)) = crate::journal::read(&dir) else {
        return;
    };
    for entry in &entries {
        let _ = crate::journal::human(entry);
    }
    let current = crate::docker::ContainerInfo {
        service: "api".into(),
        image_id: "sha256:1".into(),
        ..Default::default()
    };
    for surface in ["backend", "web", ""] {
        let _ = crate::journal::last_deploy(&entries, surface);
        let _ = crate::journal::before(&entries, surface, "api", &current);
    }
}

const EXAMPLE_COMPOSE: &str = include_str!("../../examples/honeychat/docker-compose.yml");

/// A directory of this process for `target`'s files.
fn scratch(target: &str) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let base = match Path::new("/dev/shm").is_dir() {
            true => PathBuf::from("/dev/shm"),
            false => std::env::temp_dir(),
        };
        base.join(format!("slipway-fuzz-{}", std::process::id()))
    });
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("the fuzz scratch directory");
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("a fuzz scratch file");
}

fn split<'a>(data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current
            .windows(separator.len())
            .position(|w| w == separator)
        {
            Some(at) => {
                rest = Some(&current[at + separator.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_splits_into_files() {
        let input = [b"a".as_slice(), FILE_SEPARATOR, b"b", FILE_SEPARATOR, b""].concat();
        let parts: Vec<&[u8]> = split(&input, FILE_SEPARATOR).collect();
        assert_eq!(parts, [b"a".as_slice(), b"b", b""]);
        assert_eq!(split(b"", FILE_SEPARATOR).count(), 1);
    }
}
