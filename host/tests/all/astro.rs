//! Rule 4 against a real nginx serving the site directory: a plain `cp -r`
//! serves broken pages mid-copy; slipway's releases never do, roll back
//! byte for byte, survive SIGKILL, and share unchanged files by hard link.

use crate::harness::{Stack, Tmpfs, json, sh, text};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LANGS: [&str; 4] = ["en", "fr", "de", "es"];

/// Write build `version` of a generated site into `dist` (replacing it):
/// `pages` pages per language of about `page_kb` KiB, each linking the
/// version's hashed stylesheet.
pub(crate) fn generate(dist: &Path, version: u32, pages: usize, page_kb: usize) {
    let _ = std::fs::remove_dir_all(dist);
    std::fs::create_dir_all(dist.join("_astro")).unwrap();
    std::fs::write(
        dist.join(format!("_astro/app.v{version}.css")),
        format!("/* css v{version} */ body {{}}\n"),
    )
    .unwrap();
    let padding = "<p>lorem ipsum dolor sit amet</p>\n".repeat(page_kb * 1024 / 34);
    for lang in LANGS {
        std::fs::create_dir_all(dist.join(lang)).unwrap();
        for n in 0..pages {
            let page = format!(
                "<!doctype html><html lang=\"{lang}\"><head><link rel=\"stylesheet\" href=\"/_astro/app.v{version}.css\"></head>\n<body><p data-build=\"v{version}\">page {n}</p>\n{padding}</body></html>\n"
            );
            std::fs::write(dist.join(format!("{lang}/page-{n}.html")), page).unwrap();
        }
    }
    std::fs::write(
        dist.join("index.html"),
        format!("<!doctype html><html><body>build v{version}</body></html>\n"),
    )
    .unwrap();
}

fn get(port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: site\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// Fetch a page and the stylesheet it links: both must be whole and of the
/// same build. Returns the build version.
pub(crate) fn check_page(port: u16, path: &str) -> Result<u32, String> {
    let (status, body) = get(port, path)?;
    let body = String::from_utf8_lossy(&body);
    if status != 200 {
        return Err(format!("{path} answered {status}"));
    }
    if !body.ends_with("</html>\n") {
        return Err(format!("{path} came back truncated ({} bytes)", body.len()));
    }
    let version: u32 = body
        .split("data-build=\"v")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{path} has no build marker"))?;
    let css = format!("/_astro/app.v{version}.css");
    if !body.contains(&css) {
        return Err(format!(
            "{path} mixes builds: marker v{version} but another stylesheet"
        ));
    }
    let (status, asset) = get(port, &css)?;
    if status != 200 || !String::from_utf8_lossy(&asset).contains(&format!("css v{version}")) {
        return Err(format!(
            "{path} (v{version}) links {css}, which answered {status}"
        ));
    }
    Ok(version)
}

/// Threads checking pages until stopped; counts checks and violations.
struct Checker {
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    violations: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Checker {
    fn start(port: u16, pages: Vec<String>, threads: usize) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let pages = Arc::new(pages);
        let handles = (0..threads)
            .map(|t| {
                let (stop, checks, violations, pages) = (
                    stop.clone(),
                    checks.clone(),
                    violations.clone(),
                    pages.clone(),
                );
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = check_page(port, &pages[i % pages.len()]) {
                            violations.lock().unwrap().push(e);
                        }
                        checks.fetch_add(1, Ordering::Relaxed);
                        i += threads;
                    }
                })
            })
            .collect();
        Checker {
            stop,
            checks,
            violations,
            threads: handles,
        }
    }

    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let violations = self.violations.lock().unwrap().clone();
        (self.checks.load(Ordering::Relaxed), violations)
    }
}

pub(crate) fn hot_pages(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| format!("/{}/page-{}.html", LANGS[n % LANGS.len()], n / LANGS.len()))
        .collect()
}

fn dist(stack: &Stack) -> PathBuf {
    stack.path().join("website/dist")
}

fn site(stack: &Stack) -> PathBuf {
    stack.path().join("frontend/website")
}

fn deploy_website(stack: &Stack) -> std::process::Output {
    stack.slipway(&["deploy", "website", "--json"], &[])
}

fn set_astro_config(stack: &Stack, config: &str) {
    let path = stack.path().join("slipway.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let manifest = manifest.replace("config = { keep = 5, ", &format!("config = {{ {config}, "));
    std::fs::write(path, manifest).unwrap();
}

#[test]
fn a_plain_copy_serves_broken_pages_while_it_runs() {
    let stack = Stack::up();
    let live = site(&stack).join("current");
    std::fs::create_dir_all(&live).unwrap();
    // Two pages a language, of 2 MiB: cp rewrites each in place, and the
    // time a reader can find one cut short grows with its size.
    let (pages, page_kb) = (2, 2048);
    generate(&dist(&stack), 1, pages, page_kb);
    sh(
        "cp -r website/dist/* frontend/website/current/",
        stack.path(),
        &[],
    );
    assert_eq!(check_page(stack.site_port, "/en/page-0.html"), Ok(1));

    let checker = Checker::start(stack.site_port, hot_pages(12), 6);
    for version in 2..32 {
        generate(&dist(&stack), version, pages, page_kb);
        // The seed's rule 4 target, verbatim.
        sh(
            "cp -r website/dist/* frontend/website/current/",
            stack.path(),
            &[],
        );
        if !checker.violations.lock().unwrap().is_empty() {
            break;
        }
    }
    let (checks, violations) = checker.stop();
    assert!(
        !violations.is_empty(),
        "{checks} checks during the copies saw no broken page; the checker cannot see the bug"
    );
}

#[test]
fn slipway_publishes_are_atomic_and_roll_back_byte_for_byte() {
    let stack = Stack::up();
    generate(&dist(&stack), 1, 100, 64);
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pages = hot_pages(12);
    let v1: Vec<Vec<u8>> = pages
        .iter()
        .map(|p| get(stack.site_port, p).unwrap().1)
        .collect();

    let checker = Checker::start(stack.site_port, pages.clone(), 6);
    for version in 2..12 {
        generate(&dist(&stack), version, 100, 64);
        let out = deploy_website(&stack);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let (checks, violations) = checker.stop();
    assert!(checks > 200, "only {checks} checks ran");
    assert!(
        violations.is_empty(),
        "{} of {checks} checks failed: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert_eq!(check_page(stack.site_port, "/en/page-0.html"), Ok(11));

    // Rollback goes back one release, byte for byte; and it is recorded.
    generate(&dist(&stack), 1, 100, 64);
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json(&out);
    let summary = report["surfaces"][0]["steps"][0]["calls"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.contains("linked"), "{summary}");
    generate(&dist(&stack), 12, 100, 64);
    assert_eq!(deploy_website(&stack).status.code(), Some(0));
    assert_eq!(check_page(stack.site_port, "/en/page-0.html"), Ok(12));
    let out = stack.slipway(&["rollback", "website", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["command"], "rollback");
    let after: Vec<Vec<u8>> = pages
        .iter()
        .map(|p| get(stack.site_port, p).unwrap().1)
        .collect();
    assert!(
        after == v1,
        "the rolled-back site differs from the v1 bytes"
    );
}

#[test]
fn an_unchanged_build_publishes_nothing() {
    let stack = Stack::up();
    generate(&dist(&stack), 1, 10, 4);
    assert_eq!(deploy_website(&stack).status.code(), Some(0));
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing published"), "{}", text(&out));
    let releases: Vec<_> = std::fs::read_dir(site(&stack).join("releases"))
        .unwrap()
        .collect();
    assert_eq!(releases.len(), 2, "one release directory and its manifest");
}

#[test]
fn sigkill_at_any_point_leaves_a_whole_release_and_the_next_publish_works() {
    let stack = Stack::up();
    generate(&dist(&stack), 1, 150, 32);
    assert_eq!(deploy_website(&stack).status.code(), Some(0));
    let pages = hot_pages(40);
    for (i, delay_ms) in [0u64, 5, 15, 30, 60, 100, 150, 250, 400]
        .into_iter()
        .enumerate()
    {
        generate(&dist(&stack), 2 + i as u32, 150, 32);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .current_dir(stack.path())
            .args(["deploy", "website"])
            .env("SLIPWAY_CACHE_DIR", crate::harness::cache_dir())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let versions: Vec<u32> = pages
            .iter()
            .map(|p| {
                check_page(stack.site_port, p)
                    .unwrap_or_else(|e| panic!("after SIGKILL at {delay_ms} ms: {e}"))
            })
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "after SIGKILL at {delay_ms} ms the site mixes builds: {versions:?}"
        );
    }
    generate(&dist(&stack), 50, 150, 32);
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(check_page(stack.site_port, "/en/page-0.html"), Ok(50));
    let leftovers = sh(
        "ls -a frontend/website/releases | grep -c partial || true",
        stack.path(),
        &[],
    );
    assert_eq!(leftovers.trim(), "0");
}

#[test]
fn retention_keeps_n_releases_that_share_unchanged_files() {
    let stack = Stack::up();
    set_astro_config(&stack, "keep = 3");
    generate(&dist(&stack), 1, 20, 8);
    for n in 0..6 {
        // Each build changes one page only.
        std::fs::write(
            dist(&stack).join("en/page-0.html"),
            format!("<html><body>edit {n}</body></html>\n"),
        )
        .unwrap();
        let out = deploy_website(&stack);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let releases = site(&stack).join("releases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&releases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    let unchanged: Vec<std::fs::Metadata> = dirs
        .iter()
        .map(|d| std::fs::metadata(d.join("fr/page-3.html")).unwrap())
        .collect();
    assert!(
        unchanged.iter().all(|m| m.ino() == unchanged[0].ino()),
        "unchanged files are not shared"
    );
    assert_eq!(unchanged[0].nlink(), 3);
    let changed: Vec<u64> = dirs
        .iter()
        .map(|d| std::fs::metadata(d.join("en/page-0.html")).unwrap().ino())
        .collect();
    assert!(changed[0] != changed[1] && changed[1] != changed[2]);
}

#[test]
fn bad_builds_and_a_full_disk_never_touch_the_live_site() {
    let stack = Stack::up();
    generate(&dist(&stack), 1, 10, 4);
    assert_eq!(deploy_website(&stack).status.code(), Some(0));
    let live = std::fs::read_link(site(&stack).join("current")).unwrap();

    std::fs::remove_dir_all(dist(&stack)).unwrap();
    std::fs::create_dir_all(dist(&stack)).unwrap();
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("is empty; run the build first"),
        "{}",
        text(&out)
    );

    generate(&dist(&stack), 2, 10, 4);
    std::os::unix::fs::symlink("/etc/shadow", dist(&stack).join("en/leak.html")).unwrap();
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("points outside the build"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_link(site(&stack).join("current")).unwrap(),
        live
    );

    // A disk that fills up partway: the served root on a small tmpfs.
    let tmpfs = stack.path().join("small-disk");
    std::fs::create_dir_all(&tmpfs).unwrap();
    let _unmount = Tmpfs::mount_at(&tmpfs, "2m");
    let manifest = std::fs::read_to_string(stack.path().join("slipway.toml")).unwrap();
    // nginx serves frontend/website, so the URL check does not apply here.
    let manifest = manifest
        .replace("host = \"frontend/website\"", "host = \"small-disk\"")
        .replace(
            "verify = [{ url = \"http://nginx:8081/index.html\", file = \"index.html\" }]",
            "verify = []",
        );
    std::fs::write(stack.path().join("slipway.toml"), manifest).unwrap();
    generate(&dist(&stack), 3, 10, 4);
    assert_eq!(deploy_website(&stack).status.code(), Some(0));
    let small_live = std::fs::read_link(tmpfs.join("current")).unwrap();
    generate(&dist(&stack), 4, 40, 64);
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("the live site was not touched"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_link(tmpfs.join("current")).unwrap(),
        small_live
    );
    assert!(
        std::fs::read_to_string(tmpfs.join("current/index.html"))
            .unwrap()
            .contains("build v3")
    );
    generate(&dist(&stack), 5, 10, 4);
    let out = deploy_website(&stack);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        std::fs::read_to_string(tmpfs.join("current/index.html"))
            .unwrap()
            .contains("build v5")
    );
}
