//! Plugin runtime costs. Run with `cargo bench -p slipway --bench runtime`.
//!
//! Prints, from one run on one machine:
//! - per-step overhead with a warm cache: fresh Store, instantiate, trivial
//!   call (goal: <= 0.2 ms);
//! - agent cold start: a new Engine plus five plugins loaded from the
//!   precompiled cache (goal: <= 30 ms);
//! - the same five loads without the cache, for the ratio.

use serde_json::json;
use slipway::bindings::Context;
use slipway::capability::Grants;
use slipway::runtime::{Limits, Phase, Runtime};
use slipway::sandbox::{Caller, HostServices};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn plugin(name: &str) -> PathBuf {
    slipway_fixtures::plugin(name)
}

/// Five distinct plugin files: the real ones plus copies of `hostile` made
/// distinct (and so separately cached) by a trailing custom section.
fn five_plugins(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![plugin("nginx-reload"), plugin("hostile")];
    let base = std::fs::read(plugin("hostile")).unwrap();
    for i in 0..3u8 {
        let name = format!("bench-{i}");
        let mut bytes = base.clone();
        // Custom section: id 0, size, name length, name, payload.
        let payload = [name.len() as u8]
            .iter()
            .chain(name.as_bytes())
            .copied()
            .collect::<Vec<u8>>();
        bytes.push(0);
        bytes.push(payload.len() as u8);
        bytes.extend_from_slice(&payload);
        let file = dir.join(format!("{name}.wasm"));
        std::fs::write(&file, bytes).unwrap();
        files.push(file);
    }
    files
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = ms(samples[samples.len() / 2]);
    let p90 = ms(samples[samples.len() * 9 / 10]);
    let mean = samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64;
    (median, p90, mean)
}

async fn load_all(runtime: &Runtime, files: &[PathBuf]) {
    for (i, file) in files.iter().enumerate() {
        runtime
            .load(&format!("p{i}"), file, None, Limits::default())
            .await
            .unwrap();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let files = five_plugins(scratch.path());

    // Per-step overhead, warm.
    let runtime = Runtime::new(Some(cache.path().to_owned())).unwrap();
    let hostile = runtime
        .load("hostile", &plugin("hostile"), None, Limits::default())
        .await
        .unwrap();
    let ctx = Context {
        surface: "bench".into(),
        step: 0,
        config: json!({ "attempt": "noop" }).to_string(),
        outputs: vec![],
    };
    let caller = Caller {
        surface: "bench".into(),
        step: 0,
        plugin_key: "hostile".into(),
        plugin: "hostile".into(),
        version: "0.1.0".into(),
    };
    let call = || {
        runtime.call(
            &hostile,
            Phase::Apply,
            ctx.clone(),
            caller.clone(),
            Grants::default(),
            HostServices::default(),
        )
    };
    for _ in 0..200 {
        call().await.0.unwrap();
    }
    let samples: Vec<Duration> = {
        let mut v = Vec::new();
        for _ in 0..5000 {
            let t = Instant::now();
            call().await.0.unwrap();
            v.push(t.elapsed());
        }
        v
    };
    let (median, p90, mean) = stats(samples);
    println!("per-step overhead (fresh Store + instantiate + trivial call), 5000 calls:");
    println!("  median {median:.3} ms   p90 {p90:.3} ms   mean {mean:.3} ms   goal <= 0.2 ms");

    // Cold start from the cache: fill it once, then time fresh agents.
    load_all(&runtime, &files).await;
    let mut cold = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let fresh = Runtime::new(Some(cache.path().to_owned())).unwrap();
        load_all(&fresh, &files).await;
        cold.push(t.elapsed());
    }
    let (cold_median, cold_p90, _) = stats(cold);
    println!("agent cold start (new Engine + 5 plugins from the cache), 30 runs:");
    println!("  median {cold_median:.2} ms   p90 {cold_p90:.2} ms   goal <= 30 ms");

    let mut uncached = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let fresh = Runtime::new(None).unwrap();
        load_all(&fresh, &files).await;
        uncached.push(t.elapsed());
    }
    let (uncached_median, _, _) = stats(uncached);
    println!("same 5 plugins compiled without the cache, 3 runs:");
    println!(
        "  median {uncached_median:.1} ms   cache speedup {:.0}x",
        uncached_median / cold_median
    );
}
