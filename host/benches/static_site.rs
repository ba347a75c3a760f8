//! Static-site publishing (rule 4) on a generated site of 20,000 files:
//! 1,000 pages in each of 20 languages, pages of 8–40 KiB, plus assets.
//! Prints, from one run:
//! - `cp -r` of the tree, the baseline;
//! - the first `slipway deploy website` (astro plugin) of the same tree;
//! - a second deploy after 1% of the files changed;
//! - a third deploy of the same build, which must find it unchanged;
//! - `slipway plan website`: the agent's start, loading the compiled
//!   plugin and scanning the build, which every deploy above includes;
//! - `cp -al` of the tree: a release of hard links, the floor of any
//!   publish that keeps unchanged files in a complete directory;
//! - the switch itself (symlink + rename), on a small and on this site;
//! - disk used by two releases versus two full copies.
//!
//! Run with `cargo bench -p slipway --bench static_site`.

use slipway_sdk::release::{Options, Releases};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LANGS: usize = 20;
const PAGES: usize = 1000;

fn generate(dist: &Path) {
    let words = "<p>HoneyChat lets you talk to characters in twenty languages.</p>\n";
    for lang in 0..LANGS {
        let dir = dist.join(format!("l{lang:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for page in 0..PAGES {
            let kib = 8 + (page * 7919 + lang * 31) % 33;
            let body = words.repeat(kib * 1024 / words.len());
            let html = format!(
                "<!doctype html><html><head><link rel=\"stylesheet\" href=\"/_astro/app.css\"></head><body><h1>{lang}/{page}</h1>{body}</body></html>\n"
            );
            std::fs::write(dir.join(format!("page-{page}.html")), html).unwrap();
        }
    }
    std::fs::create_dir_all(dist.join("_astro")).unwrap();
    std::fs::write(dist.join("_astro/app.css"), "body{}".repeat(2000)).unwrap();
}

fn files(dist: &Path) -> usize {
    slipway_sdk::release::scan(dist).unwrap().len()
}

/// Time a command, after flushing earlier writes so they are not billed to
/// it. Returns its stderr too.
fn run(cmd: &mut Command) -> (Duration, String) {
    let _ = Command::new("sync").status();
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (took, stderr)
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
    generate(&dist);
    let count = files(&dist);
    let size = du_kib(&dist);

    // Baseline: the seed's copy.
    let (copy, _) = run(Command::new("cp")
        .arg("-r")
        .arg(&dist)
        .arg(root.join("copy")));
    let (links, _) = run(Command::new("cp")
        .arg("-al")
        .arg(root.join("copy"))
        .arg(root.join("links")));

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
    let deploy = || {
        run(Command::new(env!("CARGO_BIN_EXE_slipway"))
            .current_dir(root)
            .args(["deploy", "website"])
            .env("SLIPWAY_CACHE_DIR", &cache))
    };
    // Compile the plugin into the cache first: that is not publishing.
    let plan = || {
        run(Command::new(env!("CARGO_BIN_EXE_slipway"))
            .current_dir(root)
            .args(["plan", "website"])
            .env("SLIPWAY_CACHE_DIR", &cache))
        .0
    };
    plan();
    let start = plan();
    let (first, first_log) = deploy();
    let first_id = Releases::open(root.join("site"))
        .current()
        .unwrap()
        .unwrap();

    // 1% of the files change.
    let changed = count / 100;
    for i in 0..changed {
        let page = dist.join(format!("l{:02}/page-{}.html", i % LANGS, i / LANGS));
        let mut html = std::fs::read_to_string(&page).unwrap();
        html.push_str("<!-- edited -->\n");
        std::fs::write(page, html).unwrap();
    }
    let (second, second_log) = deploy();
    let site = Releases::open(root.join("site"));
    let second_id = site.current().unwrap().unwrap();
    let two_releases = du_kib(&root.join("site/releases"));

    // The same build again: recognised, nothing published.
    let (third, third_log) = deploy();
    assert!(
        summary(&third_log).contains("nothing published"),
        "{third_log}"
    );
    assert_eq!(site.current().unwrap().unwrap(), second_id);
    // The baseline again: on a filesystem whose inode allocation depends on
    // what was deleted in the last minutes, it says how far to trust a ratio.
    let (copy_again, _) = run(Command::new("cp")
        .arg("-r")
        .arg(&dist)
        .arg(root.join("copy-again")));

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

    let ratio = |d: Duration| d.as_secs_f64() / copy.as_secs_f64();
    println!("site: {count} files, {:.1} MiB", size as f64 / 1024.0);
    println!(
        "cp -r                         {:>8.3} s",
        copy.as_secs_f64()
    );
    println!(
        "cp -al (hard links only)      {:>8.3} s   {:.2}x cp -r",
        links.as_secs_f64(),
        ratio(links)
    );
    println!(
        "plan (start, load, scan)      {:>8.3} s   {:.2}x cp -r",
        start.as_secs_f64(),
        ratio(start)
    );
    println!(
        "first publish                 {:>8.3} s   {:.2}x cp -r   goal <= 1.0x",
        first.as_secs_f64(),
        ratio(first)
    );
    println!("  {}", summary(&first_log));
    println!(
        "publish with 1% changed ({changed:>3})  {:>8.3} s   {:.2}x cp -r   goal <= 0.2x",
        second.as_secs_f64(),
        ratio(second)
    );
    println!("  {}", summary(&second_log));
    println!(
        "unchanged redeploy            {:>8.3} s   {:.2}x cp -r   goal <= 0.05x",
        third.as_secs_f64(),
        ratio(third)
    );
    println!("  {}", summary(&third_log));
    println!(
        "cp -r again, after the above  {:>8.3} s",
        copy_again.as_secs_f64()
    );
    println!(
        "switch (symlink + rename)     {:>8.1} us on this site, {:.1} us on a 1-file site",
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
