//! Rule 4 at the seed's scale, shaped as Astro writes a site: 1,000 pages in
//! each of 20 languages, a directory per page (`l07/page0412/index.html`),
//! and every build written afresh into an emptied `dist/`. Published three
//! times (first, a full rebuild with 1% of the pages different, the same
//! build again) by `slipway deploy website` under `ulimit -n 256`, the soft
//! limit many shells and services start with, and a quarter of it: the
//! agent holds descriptors by the depth of the tree, never by its size.

use crate::harness::{cache_dir, text};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use slipway_fixtures::site::{LANGS, PAGES};

/// The build, every file written afresh; the first `changed` pages carry
/// `edition`.
fn build(dist: &Path, changed: usize, edition: u32) {
    slipway_fixtures::site::build(dist, changed, edition, |n, mark| {
        format!("<!doctype html><html><body><h1>{n}</h1><p>edition {mark}</p></body></html>\n")
    });
}

/// Every file under `root` and its bytes, by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

/// `slipway deploy website` under `ulimit -n 256`, and the most
/// descriptors it held at once, sampled every few milliseconds.
fn deploy(dir: &Path) -> (std::process::Output, usize) {
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" deploy website")
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .current_dir(dir)
        .env("SLIPWAY_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fds = format!("/proc/{}/fd", child.id());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(std::fs::read_dir(&fds).map_or(0, |d| d.count()));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        });
        let out = child.wait_with_output().unwrap();
        stop.store(true, Ordering::Relaxed);
        (out, sampler.join().unwrap())
    })
}

#[test]
fn a_site_of_twenty_thousand_page_directories_publishes_whole_under_ulimit_256() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let dist = root.join("website/dist");
    crate::surface_build::astro_site(root, "scale", "timeout_secs = 600\n", "");
    // The agent's worker threads (as many as the machine's cores, up to 4)
    // each hold a file or two; the rest is the agent's own.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let changed = LANGS * PAGES / 100;
    let mut live = Vec::new();
    for (what, edition, unchanged) in [
        ("first publish", 1, false),
        ("full rebuild, 1% changed", 2, false),
        ("the same build again", 2, true),
    ] {
        if !unchanged {
            build(&dist, changed, edition);
        }
        let (out, peak) = deploy(root);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        eprintln!("{what}: peak open descriptors {peak}");
        assert!(
            peak < 64 + workers,
            "{what}: the agent held {peak} descriptors at once"
        );
        let current = std::fs::read_link(root.join("site/current")).unwrap();
        let release = root.join("site").join(&current);
        assert!(
            tree(&release) == tree(&dist),
            "{what}: release {} is not the build",
            current.display()
        );
        live.push(current);
    }
    assert_ne!(live[0], live[1], "the rebuild published no new release");
    assert_eq!(live[1], live[2], "an unchanged build published a release");
    // The rebuild linked what it did not change: one inode for both.
    use std::os::unix::fs::MetadataExt;
    let page = slipway_fixtures::site::page(10_000);
    let ino = |release: &Path| {
        std::fs::metadata(root.join("site").join(release).join(&page))
            .unwrap()
            .ino()
    };
    assert_eq!(
        ino(&live[0]),
        ino(&live[1]),
        "{page} was copied, not linked"
    );
}
