//! The seed-scale example (examples/honeychat: 14 services, eight of them
//! on one shared Python image) under 100 requests/s through nginx, GET and
//! POST, the seed's Make targets against slipway, from one run:
//! - `make deploy` (compose build api bot, force-recreate api, bot,
//!   celery_worker and gen_worker, `sleep 3`, restart nginx) against
//!   `slipway deploy backend` with nginx-reload and with nginx-zero-downtime;
//! - `make deploy-all` (deploy, web, website, miniapp) against
//!   `slipway deploy --all` with nginx-zero-downtime.
//!
//! For each: failed requests, wall time, and the time from the deploy's
//! start to the first response from the new api; the ratios to the seed's
//! target in the same run. For `deploy --all` also the agent's peak RSS
//! and the time the agent adds per surface beyond the physical floor
//! (container start, readiness, the steps' nginx reloads and drains).
//!
//! Run with `scripts/setup && cargo bench -p slipway --bench seed_scale`.

#[allow(dead_code)]
#[path = "../tests/all/harness.rs"]
mod harness;

use harness::{Load, Stack, json, sh, text};
use std::time::{Duration, Instant};

const RUNS: usize = 2;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    SeedDeploy,
    SlipwayReload,
    SlipwayZeroDowntime,
    SeedDeployAll,
    SlipwayAll,
}

const ALL: [Way; 5] = [
    Way::SeedDeploy,
    Way::SlipwayReload,
    Way::SlipwayZeroDowntime,
    Way::SeedDeployAll,
    Way::SlipwayAll,
];

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::SeedDeploy => "make deploy (the seed)",
            Way::SlipwayReload => "slipway deploy backend, nginx-reload",
            Way::SlipwayZeroDowntime => "slipway deploy backend, nginx-zero-downtime",
            Way::SeedDeployAll => "make deploy-all (the seed)",
            Way::SlipwayAll => "slipway deploy --all, nginx-zero-downtime",
        }
    }
}

/// What one run measured.
struct Run {
    failed: u64,
    /// The first few failures, as the load saw them.
    failures: Vec<String>,
    wall: Duration,
    /// Deploy start to the first response from the new api.
    to_new: Option<Duration>,
    /// For `deploy --all`: peak RSS in KiB and the agent's time beyond the
    /// floor per surface.
    rss_kib: Option<u64>,
    overhead: Vec<(String, i64)>,
}

fn seed_deploy(stack: &Stack) {
    stack.compose("build api bot");
    stack.compose("up -d --force-recreate --no-deps api bot celery_worker gen_worker");
    sh("sleep 3", stack.path(), &[]);
    stack.compose("restart nginx");
}

/// The seed's other targets: web as deploy for nextjs; website and miniapp
/// build (the same clean `npm ci` and `npm run build` as the example's
/// surface builds), copy the build over the served directory, and reload
/// nginx (the Mini App's timestamp bump is a sed on sw.js).
fn seed_frontends(stack: &Stack) {
    stack.compose("build nextjs");
    stack.compose("up -d --force-recreate --no-deps nextjs");
    sh("sleep 3", stack.path(), &[]);
    stack.compose("restart nginx");
    for frontend in ["website", "miniapp"] {
        sh(
            &format!("cd {frontend} && npm ci --no-audit --no-fund && npm run build"),
            stack.path(),
            &[],
        );
    }
    sh(
        "mkdir -p frontend/website/current && cp -r website/dist/* frontend/website/current/",
        stack.path(),
        &[],
    );
    stack.compose("exec -T nginx nginx -s reload");
    sh(
        "mkdir -p frontend/miniapp/current && cp -r miniapp/dist/* frontend/miniapp/current/ && \
         sed -i \"s/^const SW_VERSION = .*/const SW_VERSION = \\\"$(date +%s)\\\";/\" frontend/miniapp/current/sw.js",
        stack.path(),
        &[],
    );
    stack.compose("exec -T nginx nginx -s reload");
}

fn run(way: Way, round: usize) -> Run {
    let stack = Stack::seed_scale();
    if matches!(way, Way::SlipwayZeroDowntime | Way::SlipwayAll) {
        // The path, not the comment above it that names the builds.
        stack.edit_manifest("nginx-reload.wasm\"", "nginx-zero-downtime.wasm\"");
    }
    let version = format!("v{}", round + 2);
    std::fs::write(stack.path().join("backend/VERSION"), format!("{version}\n")).unwrap();
    std::fs::write(stack.path().join("web/VERSION"), format!("{version}\n")).unwrap();
    let load = Load::watching(stack.port, 100, Some(format!("honeychat-api {version} ")));
    std::thread::sleep(Duration::from_secs(1));
    let env = [("APP_VERSION", version.as_str()), ("WEB_VERSION", &version)];
    let start = Instant::now();
    let (mut rss_kib, mut overhead) = (None, Vec::new());
    match way {
        Way::SeedDeploy => seed_deploy(&stack),
        Way::SeedDeployAll => {
            seed_deploy(&stack);
            seed_frontends(&stack);
        }
        Way::SlipwayReload | Way::SlipwayZeroDowntime => {
            let out = stack.slipway(&["deploy", "backend"], &env);
            assert!(out.status.success(), "{}", text(&out));
        }
        Way::SlipwayAll => {
            let cmd = stack.slipway_command(&["--json", "deploy", "--all"], &env);
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            let mut timed = std::process::Command::new("/usr/bin/time");
            timed.arg("-v").arg(program).args(args);
            for (k, v) in cmd.get_envs() {
                if let Some(v) = v {
                    timed.env(k, v);
                }
            }
            if let Some(dir) = cmd.get_current_dir() {
                timed.current_dir(dir);
            }
            let out = timed.output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            rss_kib = stderr
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("Maximum resident set size (kbytes): ")
                })
                .and_then(|v| v.parse().ok());
            overhead = beyond_floor(&json(&out));
        }
    }
    let wall = start.elapsed();
    // Keep the load on briefly: a stale route shows up after the deploy returns.
    std::thread::sleep(Duration::from_secs(2));
    let to_new = load
        .first_seen()
        .map(|t| t.saturating_duration_since(start));
    let (tally, _) = load.stop();
    Run {
        failed: tally.non_2xx + tally.errors,
        failures: tally.failures,
        wall,
        to_new,
        rss_kib,
        overhead,
    }
}

/// Per surface, its wall time minus what containers and nginx took: the
/// slowest service's create-or-replace plus readiness (they run side by
/// side), and the steps' calls (start-first replacements, reloads, drains
/// and their checks through nginx). What is left is the agent's own work:
/// reading the model, inspecting, deciding, the front-door check.
fn beyond_floor(report: &serde_json::Value) -> Vec<(String, i64)> {
    let ms = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
    report["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let services = s["services"].as_array().unwrap();
            let host = services
                .iter()
                .map(|svc| ms(&svc["recreate_ms"]) + ms(&svc["ready_ms"]))
                .max()
                .unwrap_or(0);
            let steps: i64 = s["steps"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|st| st["calls"].as_array().unwrap())
                .map(|c| ms(&c["duration_ms"]))
                .sum();
            let name = s["name"].as_str().unwrap().to_owned();
            (name, ms(&s["duration_ms"]) - host - steps)
        })
        .collect()
}

/// The runs of one way; medians of wall time and time to the new version.
fn measure(way: Way) -> (f64, f64) {
    println!("{}", way.label());
    let (mut walls, mut news, mut failed_total) = (Vec::new(), Vec::new(), 0);
    for round in 0..RUNS {
        let r = run(way, round);
        let to_new = r.to_new.map_or(f64::NAN, |d| d.as_secs_f64());
        println!(
            "  run {}: {} failed requests, wall {:.2} s, first new-version response after {to_new:.2} s",
            round + 1,
            r.failed,
            r.wall.as_secs_f64()
        );
        if !r.failures.is_empty() {
            println!("    first failures: {}", r.failures.join("; "));
        }
        if let Some(kib) = r.rss_kib {
            println!(
                "    agent peak RSS {:.1} MB   goal <= 40 MB",
                kib as f64 / 1024.0
            );
        }
        for (surface, ms) in &r.overhead {
            println!("    agent time beyond the floor, {surface}: {ms} ms   goal <= 100 ms");
        }
        failed_total += r.failed;
        walls.push(r.wall.as_secs_f64());
        news.push(to_new);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (wall, new) = (median(&mut walls), median(&mut news));
    println!(
        "  total failed requests {failed_total}, median wall {wall:.2} s, median time to new version {new:.2} s"
    );
    (wall, new)
}

fn main() {
    // `cargo bench … -- WORD` runs only the ways whose label has WORD.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if let Some(word) = only {
        for way in ALL.into_iter().filter(|w| w.label().contains(&word)) {
            measure(way);
        }
        return;
    }
    println!("== backend: make deploy vs slipway deploy backend (100 req/s)");
    let seed = measure(Way::SeedDeploy);
    for way in [Way::SlipwayReload, Way::SlipwayZeroDowntime] {
        let (wall, new) = measure(way);
        println!(
            "  ratio to make deploy: wall {:.2} (goal <= 0.5), time to new version {:.2} (goal <= 0.3)",
            wall / seed.0,
            new / seed.1
        );
    }
    println!("== full release: make deploy-all vs slipway deploy --all (100 req/s)");
    let seed = measure(Way::SeedDeployAll);
    let (wall, new) = measure(Way::SlipwayAll);
    println!(
        "  ratio to make deploy-all: wall {:.2} (goal <= 0.5), time to new version {:.2} (goal <= 0.3)",
        wall / seed.0,
        new / seed.1
    );
}
