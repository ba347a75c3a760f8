//! Front-end fixtures built at test time by their real toolchains (vite,
//! vite-plugin-pwa, Next.js), installed by scripts/setup from
//! tests/frontends/package-lock.json. Nothing built is committed.

use crate::harness::{repo_root, unique};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh copy of the fixture `tests/frontends/<name>`, inside
/// tests/frontends/.work so that its toolchain resolves from the shared
/// node_modules, and so that tests building the same fixture at once do not
/// share a build directory. Removed, with what was built in it, on drop.
pub struct Copy(PathBuf);

impl std::ops::Deref for Copy {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn copy(name: &str) -> Copy {
    let root = repo_root().join("tests/frontends");
    assert!(
        root.join("node_modules/.bin").is_dir(),
        "tests/frontends/node_modules is missing: run scripts/setup (npm ci)"
    );
    let dir = root.join(".work").join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    copy_tree(&root.join(name), &dir);
    Copy(dir)
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Run a toolchain binary from tests/frontends/node_modules/.bin in `dir`;
/// panic with its output when it fails.
pub fn run(dir: &Path, bin: &str, args: &[&str], env: &[(&str, &str)]) {
    let exe = repo_root()
        .join("tests/frontends/node_modules/.bin")
        .join(bin);
    let out = Command::new(&exe)
        .args(args)
        .current_dir(dir)
        .env("NEXT_TELEMETRY_DISABLED", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "{bin} {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
