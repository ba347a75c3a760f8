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

/// A build of the fixture `tests/frontends/<name>` by `bin args` with `env`,
/// made once and kept across runs under the hash of all that decides it: the
/// fixture's files, the lockfile, the command and its environment. It is the
/// real toolchain's output (only the minute of CPU a Next.js build takes is
/// saved once a run has built it), kept in cargo's target directory and laid
/// out in tests/frontends/.work/<name>-<hash>, where the toolchain built it,
/// since a Next.js standalone build records its path under tests/frontends.
/// Tests share it: they read it and never write to it.
pub fn cached_build(name: &str, bin: &str, args: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let root = repo_root().join("tests/frontends");
    let id = format!("{name}-{}", build_key(&root.join(name), bin, args, env));
    let here = root.join(".work").join(&id);
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("frontend-builds")
        .join(&id);
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    // Tests run in processes of their own: one builds, the others wait.
    let lock = std::fs::File::create(kept.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if !here.join(".built").exists() {
        let _ = std::fs::remove_dir_all(&here);
        if !kept.join(".built").exists() {
            let _ = std::fs::remove_dir_all(&kept);
            std::fs::create_dir_all(&here).unwrap();
            copy_tree(&root.join(name), &here);
            run(&here, bin, args, env);
            std::fs::write(here.join(".built"), "").unwrap();
            cp_a(&here, &kept);
        } else {
            cp_a(&kept, &here);
        }
    }
    here
}

/// The hash of a build's inputs: the fixture's files (paths and bytes), the
/// lockfile the toolchain comes from, the command and its environment.
fn build_key(fixture: &Path, bin: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    list_files(fixture, &mut files);
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(
            file.strip_prefix(fixture)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        );
        hash.update(std::fs::read(&file).unwrap());
    }
    hash.update(std::fs::read(fixture.parent().unwrap().join("package-lock.json")).unwrap());
    hash.update(format!("{bin} {args:?} {env:?}"));
    hex::encode(&hash.finalize()[..8])
}

fn list_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            list_files(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

/// `cp -a from to`, `to` made whole or not at all: copied beside it first.
fn cp_a(from: &Path, to: &Path) {
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(&partial)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        partial.display()
    );
    std::fs::rename(&partial, to).unwrap();
}
