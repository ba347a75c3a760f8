//! Backend deploy strategies side by side, on the example stack, under the
//! same steady load (100 requests/s through nginx, GET and POST):
//! (a) the seed's sequence: compose build, force-recreate, `sleep 3`, restart nginx;
//! (b) `slipway deploy backend` with nginx-reload;
//! (c) `slipway deploy backend` with nginx-zero-downtime;
//! (d) `slipway deploy backend` with nginx-overlap;
//! each on the example's nginx.conf (an upstream with an include file) and on
//! a plain one (one-line `location` blocks, `proxy_pass http://api:8000`),
//! where (c) refuses. Prints failed requests and deploy wall time per run,
//! and the ratios to (a) on the same config.
//!
//! Run with `scripts/setup && cargo bench -p slipway --bench strategies`.

#[allow(dead_code)]
#[path = "../tests/all/harness.rs"]
mod harness;

use harness::{Load, Stack, plain_nginx, sh, text};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

#[derive(Clone, Copy)]
enum Strategy {
    Seed,
    Reload,
    ZeroDowntime,
    Overlap,
}

#[derive(Clone, Copy)]
enum NginxConf {
    Example,
    Plain,
}

impl Strategy {
    fn label(self) -> &'static str {
        match self {
            Strategy::Seed => "(a) seed: recreate, sleep 3, restart nginx",
            Strategy::Reload => "(b) slipway + nginx-reload",
            Strategy::ZeroDowntime => "(c) slipway + nginx-zero-downtime",
            Strategy::Overlap => "(d) slipway + nginx-overlap",
        }
    }

    fn build(self) -> Option<&'static str> {
        match self {
            Strategy::Seed | Strategy::Reload => None,
            Strategy::ZeroDowntime => Some("nginx-zero-downtime.wasm"),
            Strategy::Overlap => Some("nginx-overlap.wasm"),
        }
    }
}

/// What one run measured.
enum Outcome {
    Ran {
        failed: u64,
        wall: Duration,
        first_failure: String,
    },
    Refused(String),
}

/// One deploy of a new api and worker under load.
fn run(strategy: Strategy, conf: NginxConf, round: usize) -> Outcome {
    let stack = match conf {
        NginxConf::Example => Stack::up(),
        NginxConf::Plain => Stack::up_with(plain_nginx),
    };
    if let Some(build) = strategy.build() {
        let path = stack.path().join("slipway.toml");
        let manifest = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, manifest.replace("nginx-reload.wasm", build)).unwrap();
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
        _ => {
            let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", &version)]);
            if out.status.code() == Some(2) {
                load.stop();
                let why = String::from_utf8_lossy(&out.stderr);
                return Outcome::Refused(
                    why.lines().last().unwrap_or("").chars().take(100).collect(),
                );
            }
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        }
    }
    let wall = start.elapsed();
    // Keep the load on briefly: a stale route shows up after the deploy returns.
    std::thread::sleep(Duration::from_secs(2));
    let (tally, _) = load.stop();
    Outcome::Ran {
        failed: tally.non_2xx + tally.errors,
        wall,
        first_failure: tally.failures.first().cloned().unwrap_or_default(),
    }
}

/// The runs of one strategy on one config; the median wall time, unless refused.
fn measure(strategy: Strategy, conf: NginxConf) -> Option<f64> {
    let mut failed_total = 0;
    let mut times = Vec::new();
    for round in 0..RUNS {
        match run(strategy, conf, round) {
            Outcome::Refused(why) => {
                println!("  refused (exit 2): {why}");
                return None;
            }
            Outcome::Ran {
                failed,
                wall,
                first_failure,
            } => {
                println!(
                    "  run {}: {failed} failed requests, deploy {:.2} s  {first_failure}",
                    round + 1,
                    wall.as_secs_f64()
                );
                failed_total += failed;
                times.push(wall.as_secs_f64());
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("  total failed requests {failed_total}, median deploy {median:.2} s");
    Some(median)
}

fn main() {
    let strategies = [
        Strategy::Seed,
        Strategy::Reload,
        Strategy::ZeroDowntime,
        Strategy::Overlap,
    ];
    for (conf, name) in [
        (
            NginxConf::Example,
            "example nginx.conf (upstream + include file)",
        ),
        (
            NginxConf::Plain,
            "plain nginx.conf (one-line proxy_pass to api:8000)",
        ),
    ] {
        println!("== {name}");
        let mut walls = Vec::new();
        for strategy in strategies {
            println!("{}", strategy.label());
            walls.push(measure(strategy, conf));
        }
        let ratio = |i: usize| match (walls[i], walls[0]) {
            (Some(w), Some(seed)) => format!("{:.2}", w / seed),
            _ => "refused".to_owned(),
        };
        println!(
            "wall time ratio to (a): (b) {}, (c) {}, (d) {}   goal <= 0.5",
            ratio(1),
            ratio(2),
            ratio(3)
        );
    }
}
