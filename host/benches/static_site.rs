//! Static-site publishing (rule 4) on a generated site shaped as Astro
//! writes one: 1,000 pages in each of 20 languages, a directory per page
//! (`l07/page0412/index.html`, Astro's default `build.format`), pages of
//! 8–40 KiB, plus assets. Prints, from one run:
//! - `cp -r` of the tree, the baseline, and `cp -al`: a release of hard
//!   links, the floor of any publish that keeps unchanged files in a
//!   complete directory;
//! - a plain parallel read of the tree: the least time any publish of a
//!   rebuilt tree takes to learn which files changed;
//! - `slipway plan website`: the agent's start, loading the compiled plugin
//!   and scanning the build, which every deploy below includes;
//! - the first `slipway deploy website`;
//! - a full rebuild: `dist/` emptied and written afresh, as every Astro
//!   build does, with 1% of the pages different;
//! - 1% of the files edited in place;
//! - the same build again, which must be found unchanged;
//! - the switch itself (symlink + rename), on a small and on this site;
//! - disk used by two releases versus two full copies.
//!
//! Each deploy runs under `ulimit -n 256`. Run with
//! `cargo bench -p slipway --bench static_site`.

use slipway_sdk::release::{Options, Releases};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slipway_fixtures::site::{LANGS, PAGES};

/// The build, every file written afresh, pages of 8–40 KiB; the first
/// `changed` pages carry `edition`.
fn build(dist: &Path, changed: usize, edition: u32) {
    let words = "<p>HoneyChat lets you talk to characters in twenty languages.</p>\n";
    slipway_fixtures::site::build(dist, changed, edition, |n, mark| {
        let kib = 8 + (n * 7919) % 33;
        let body = words.repeat(kib * 1024 / words.len());
        format!(
            "<!doctype html><html><head><link rel=\"stylesheet\" href=\"/_astro/app.css\"></head><body><h1>{n}</h1>{body}<!-- edition {mark} --></body></html>\n"
        )
    });
}

/// Read every file of the tree once on as many threads as the agent's
/// workers, discarding the bytes.
fn parallel_read(dist: &Path) -> Duration {
    let paths = slipway_sdk::release::scan(dist).unwrap();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                use std::io::Read;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let mut file = std::fs::File::open(dist.join(path)).unwrap();
                    while file.read(&mut buf).unwrap() > 0 {}
                }
            });
        }
    });
    start.elapsed()
}

fn files(dist: &Path) -> usize {
    slipway_sdk::release::scan(dist).unwrap().len()
}

/// Time a command, after flushing earlier writes so they are not billed to
/// it. Returns its stderr too, and the most descriptors it held open at
/// once (sampled every few milliseconds).
fn run(cmd: &mut Command) -> (Duration, String, usize) {
    let _ = Command::new("sync").status();
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fds = format!("/proc/{}/fd", child.id());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (out, peak) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let open = std::fs::read_dir(&fds).map_or(0, |d| d.count());
                peak = peak.max(open);
                std::thread::sleep(Duration::from_millis(3));
            }
            peak
        });
        let out = child.wait_with_output().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, sampler.join().unwrap())
    });
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (took, stderr, peak)
}

/// The summary the astro step logged for its apply.
fn summary(stderr: &str) -> &str {
    stderr
        .lines()
        .find_map(|l| l.split_once("astro apply: ").map(|(_, s)| s))
        .unwrap_or("(no summary)")
}

fn du_kib(path: &Path) -> u64 {
    let out = Command::new("du").args(["-sk"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn switch_cost(root: &Path, a: &str, b: &str) -> Duration {
    let releases = Releases::open(root);
    let rounds = 2000;
    let start = Instant::now();
    for i in 0..rounds {
        releases.switch(if i % 2 == 0 { a } else { b }).unwrap();
    }
    start.elapsed() / rounds
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let dist = root.join("website/dist");
    build(&dist, 0, 1);
    let count = files(&dist);
    let size = du_kib(&dist);

    // Baselines: the seed's copy, the floor of a release of links, and
    // reading the tree once.
    let cp = |from: &Path, to: &str, flags: &str| {
        run(Command::new("cp").arg(flags).arg(from).arg(root.join(to))).0
    };
    let copy = cp(&dist, "copy", "-r");
    let links = cp(&root.join("copy"), "links", "-al");
    let read = parallel_read(&dist);

    std::fs::create_dir_all(root.join("site")).unwrap();
    std::fs::write(
        root.join("docker-compose.yml"),
        "services:\n  nginx:\n    image: nginx\n",
    )
    .unwrap();
    let plugin = slipway_fixtures::plugin("astro");
    std::fs::write(
        root.join("slipway.toml"),
        format!(
            "[project]\nname = \"bench\"\n[plugins.astro]\npath = \"{}\"\ntimeout_secs = 600\n[surface.website]\n[[surface.website.step]]\nplugin = \"astro\"\n\
             grants = {{ fs = [{{ host = \"website/dist\", guest = \"/build\", mode = \"ro\" }}, {{ host = \"site\", guest = \"/site\", mode = \"rw\" }}] }}\n",
            plugin.display()
        ),
    )
    .unwrap();
    let cache = root.join("cache");
    // Under the open-files limit most shells and services start with, and
    // a quarter of it.
    let slipway = |args: &str| {
        run(Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n 256 && exec \"$0\" {args}"))
            .arg(env!("CARGO_BIN_EXE_slipway"))
            .current_dir(root)
            .env("SLIPWAY_CACHE_DIR", &cache))
    };
    let deploy = || slipway("deploy website");
    // Compile the plugin into the cache first: that is not publishing.
    slipway("plan website");
    let (start, _, _) = slipway("plan website");
    let (first, first_log, first_fds) = deploy();
    let site = Releases::open(root.join("site"));
    let first_id = site.current().unwrap().unwrap();

    // A full rebuild: every file written afresh, 1% of them different.
    let changed = count / 100;
    build(&dist, changed, 2);
    let rebuilt_read = parallel_read(&dist);
    let (rebuild, rebuild_log, rebuild_fds) = deploy();
    let second_id = site.current().unwrap().unwrap();
    let two_releases = du_kib(&root.join("site/releases"));

    // 1% edited in place, the rest untouched.
    for n in 0..changed {
        let page = dist.join(slipway_fixtures::site::page(n));
        let mut html = std::fs::read_to_string(&page).unwrap();
        html.push_str("<!-- edited -->\n");
        std::fs::write(page, html).unwrap();
    }
    let (in_place, in_place_log, _) = deploy();

    // The same build again: recognised, nothing published.
    let (third, third_log, _) = deploy();
    assert!(
        summary(&third_log).contains("nothing published"),
        "{third_log}"
    );
    // The baseline again: on a filesystem whose inode allocation depends on
    // what was deleted in the last minutes, it says how far to trust a ratio.
    let copy_again = cp(&dist, "copy-again", "-r");

    let big_switch = switch_cost(&root.join("site"), &first_id, &second_id);
    let small = root.join("small");
    let small_dist = small.join("dist");
    std::fs::create_dir_all(&small_dist).unwrap();
    std::fs::write(small_dist.join("index.html"), "a").unwrap();
    let small_releases = Releases::open(small.join("site"));
    let a = small_releases
        .publish(&small_dist, &Options::default())
        .unwrap()
        .id;
    std::fs::write(small_dist.join("index.html"), "b").unwrap();
    let b = small_releases
        .publish(&small_dist, &Options::default())
        .unwrap()
        .id;
    let small_switch = switch_cost(&small.join("site"), &a, &b);

    let secs = |d: Duration| d.as_secs_f64();
    let ratio = |d: Duration| secs(d) / secs(copy);
    println!(
        "site: {count} files in {} page directories, {:.1} MiB",
        LANGS * PAGES,
        size as f64 / 1024.0
    );
    println!("cp -r                          {:>8.3} s", secs(copy));
    println!(
        "cp -al (hard links only)       {:>8.3} s   {:.2}x cp -r",
        secs(links),
        ratio(links)
    );
    println!(
        "parallel read of the tree      {:>8.3} s   {:.2}x cp -r (rebuilt tree: {:.3} s)",
        secs(read),
        ratio(read),
        secs(rebuilt_read)
    );
    println!(
        "plan (start, load, scan)       {:>8.3} s   {:.2}x cp -r",
        secs(start),
        ratio(start)
    );
    println!(
        "first publish                  {:>8.3} s   {:.2}x cp -r   goal <= 1.0x   peak fds {first_fds}",
        secs(first),
        ratio(first)
    );
    println!("  {}", summary(&first_log));
    let floor = secs(links) * 1.3 + secs(rebuilt_read);
    println!(
        "full rebuild, 1% changed       {:>8.3} s   {:.2}x cp -r   goal <= 1.3x cp -al + read = {floor:.3} s ({:.2}x of it)   peak fds {rebuild_fds}",
        secs(rebuild),
        ratio(rebuild),
        secs(rebuild) / floor
    );
    println!("  {}", summary(&rebuild_log));
    println!(
        "1% edited in place ({changed:>3})      {:>8.3} s   {:.2}x cp -r",
        secs(in_place),
        ratio(in_place)
    );
    println!("  {}", summary(&in_place_log));
    println!(
        "unchanged redeploy             {:>8.3} s   {:.2}x cp -r   goal <= 0.05x",
        secs(third),
        ratio(third)
    );
    println!("  {}", summary(&third_log));
    println!("cp -r again, after the above   {:>8.3} s", secs(copy_again));
    println!(
        "switch (symlink + rename)      {:>8.1} us on this site, {:.1} us on a 1-file site",
        big_switch.as_secs_f64() * 1e6,
        small_switch.as_secs_f64() * 1e6
    );
    println!(
        "disk: two releases {:.1} MiB, two full copies {:.1} MiB ({:.0}%)",
        two_releases as f64 / 1024.0,
        2.0 * size as f64 / 1024.0,
        100.0 * two_releases as f64 / (2.0 * size as f64)
    );
}
