//! Backend deploy strategies side by side, on the example stack, under the
//! same steady load (100 requests/s through nginx, GET and POST):
//! (a) the seed's sequence: compose build, force-recreate, `sleep 3`, restart nginx;
//! (b) `slipway deploy backend` with nginx-reload;
//! (c) `slipway deploy backend` with nginx-zero-downtime.
//! Prints failed requests and deploy wall time per run, and the ratios.
//!
//! Run with `scripts/setup && scripts/build plugins && cargo bench -p slipway --bench strategies`.

#[allow(dead_code)]
#[path = "../tests/all/harness.rs"]
mod harness;

use harness::{Load, Stack, sh, text};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

#[derive(Clone, Copy)]
enum Strategy {
    Seed,
    Reload,
    ZeroDowntime,
}

impl Strategy {
    fn label(self) -> &'static str {
        match self {
            Strategy::Seed => "(a) seed: recreate, sleep 3, restart nginx",
            Strategy::Reload => "(b) slipway + nginx-reload",
            Strategy::ZeroDowntime => "(c) slipway + nginx-zero-downtime",
        }
    }
}

/// One deploy of a new api and worker under load: (failed requests, wall time).
fn run(strategy: Strategy, round: usize) -> (u64, u64, Duration, Vec<String>) {
    let stack = Stack::up();
    if let Strategy::ZeroDowntime = strategy {
        let path = stack.path().join("slipway.toml");
        let manifest = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            path,
            manifest.replace("nginx-reload.wasm", "nginx-zero-downtime.wasm"),
        )
        .unwrap();
    }
    let version = format!("v{}", round + 2);
    stack.set_version("api", &version);
    stack.set_version("worker", &version);
    let load = Load::start(stack.port, 100);
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    match strategy {
        Strategy::Seed => {
            stack.compose("build api bot worker");
            stack.compose("up -d --force-recreate --no-deps api bot worker");
            sh("sleep 3", stack.path(), &[]);
            stack.compose("restart nginx");
        }
        Strategy::Reload | Strategy::ZeroDowntime => {
            let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", &version)]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
    }
    let wall = start.elapsed();
    // Keep the load on briefly: a stale route shows up after the deploy returns.
    std::thread::sleep(Duration::from_secs(2));
    let (tally, _) = load.stop();
    (tally.non_2xx, tally.errors, wall, tally.failures)
}

fn main() {
    let mut walls = Vec::new();
    for strategy in [Strategy::Seed, Strategy::Reload, Strategy::ZeroDowntime] {
        let mut failed_total = 0;
        let mut times = Vec::new();
        println!("{}", strategy.label());
        for round in 0..RUNS {
            let (non_2xx, errors, wall, failures) = run(strategy, round);
            println!(
                "  run {}: {non_2xx} non-2xx, {errors} connection errors, deploy {:.2} s  {}",
                round + 1,
                wall.as_secs_f64(),
                failures.first().map(String::as_str).unwrap_or("")
            );
            failed_total += non_2xx + errors;
            times.push(wall.as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!("  total failed requests {failed_total}, median deploy {median:.2} s");
        walls.push(median);
    }
    println!(
        "wall time ratio (b)/(a) {:.2}, (c)/(a) {:.2}   goal <= 0.5",
        walls[1] / walls[0],
        walls[2] / walls[0]
    );
}
