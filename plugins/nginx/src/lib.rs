//! Rule 2: nginx resolves upstream names once, at start or reload, so after a
//! recreate it keeps sending traffic to the old container's address. Two
//! strategies share the nginx operations below; each build exports one:
//! - `nginx-reload` (default): after the host recreates services, wait until
//!   the upstreams are ready, `nginx -t`, `nginx -s reload`, verify.
//! - `nginx-zero-downtime` (feature `zero-downtime`): start the new containers
//!   next to the old ones, pin nginx to them, reload, drain, retire the old.

use serde::Deserialize;
use slipway_sdk::{Context, Report, docker, probe};

#[cfg(not(feature = "zero-downtime"))]
mod reload;
#[cfg(feature = "zero-downtime")]
mod zero_downtime;

/// Step config shared by both strategies, so the manifest stays the same when
/// the .wasm is swapped; each strategy reads only its own fields.
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The compose service running nginx.
    #[serde(default = "default_service")]
    service: String,
    /// Services nginx routes to. `nginx-reload` discovers them from
    /// `nginx -T` when absent.
    upstreams: Option<Vec<String>>,
    /// Where the granted directory of upstream include files is mounted for
    /// the plugin (`nginx-zero-downtime`): `<dir>/<service>.conf` holds the
    /// `server host:port;` lines of that service's upstream.
    #[serde(default = "default_upstreams_dir")]
    upstreams_dir: String,
    #[serde(default = "default_ready_ms")]
    ready_timeout_ms: u32,
    /// A URL through nginx that must answer 200 after the switch.
    verify_url: Option<String>,
    /// A substring the verify response must contain.
    verify_expect: Option<String>,
    #[serde(default = "default_verify_ms")]
    verify_timeout_ms: u32,
    /// How long old nginx workers may take to finish their requests.
    #[serde(default = "default_drain_ms")]
    drain_timeout_ms: u32,
}

fn default_service() -> String {
    "nginx".into()
}
fn default_upstreams_dir() -> String {
    "/upstreams".into()
}
fn default_ready_ms() -> u32 {
    60_000
}
fn default_verify_ms() -> u32 {
    20_000
}
fn default_drain_ms() -> u32 {
    30_000
}

/// Run a command in the nginx container.
fn nginx(service: &str, command: &[&str]) -> Result<docker::ExecOutput, String> {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    docker::exec(service, &command)
        .map_err(|e| format!("cannot run `{}` in {service}: {e}", command.join(" ")))
}

/// `nginx -t`; the error quotes nginx.
fn test_config(service: &str) -> Result<(), String> {
    let test = nginx(service, &["nginx", "-t"])?;
    if test.exit_code != 0 {
        return Err(format!(
            "`nginx -t` failed in {service}: {}",
            test.stderr.trim()
        ));
    }
    Ok(())
}

/// PIDs of the nginx worker processes running now.
fn worker_pids(service: &str) -> Result<Vec<String>, String> {
    let ps = nginx(service, &["ps", "-o", "pid,args"])?;
    Ok(ps
        .stdout
        .lines()
        .filter(|l| l.contains("nginx: worker process"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Wait until the given workers have exited. `nginx -s reload` returns
/// before the master acts on it; old workers exit only once the new ones run
/// and they have finished their requests, so their exit is the drain. Until
/// then an old worker may still accept connections and route them by the
/// old config.
fn wait_drained(service: &str, old_workers: &[String], timeout_ms: u32) -> Result<(), String> {
    let rounds = (timeout_ms / 100).max(1);
    for _ in 0..rounds {
        let alive = worker_pids(service)?;
        if !old_workers.iter().any(|pid| alive.contains(pid)) {
            return Ok(());
        }
        slipway_sdk::pause_ms(100);
    }
    Err(format!(
        "old nginx workers in {service} were still busy after {timeout_ms} ms"
    ))
}

/// Poll `url` until it answers 200 (with `expect` in the body, if set).
fn verify_through(url: &str, expect: Option<&str>, timeout_ms: u32) -> Result<String, String> {
    let mut last = String::new();
    let rounds = (timeout_ms / 100).max(1);
    for attempt in 1..=rounds {
        match probe::http_get(url, 2_000) {
            Ok(r) => {
                let body = String::from_utf8_lossy(&r.body);
                let first = body.lines().next().unwrap_or_default().to_owned();
                if r.status == 200 && expect.is_none_or(|e| body.contains(e)) {
                    return Ok(format!(
                        "{url} answered 200 through nginx (attempt {attempt}): {first}"
                    ));
                }
                last = format!("{} {first}", r.status);
            }
            Err(e) => last = e,
        }
        slipway_sdk::pause_ms(100);
    }
    Err(format!(
        "{url} did not answer 200 through nginx: last answer `{last}`"
    ))
}

/// The `verify` phase of both strategies: the route answers through nginx.
fn verify_route(ctx: &Context) -> Result<Report, String> {
    let config: Config = ctx.config()?;
    match config.verify_url {
        Some(url) => verify_through(
            &url,
            config.verify_expect.as_deref(),
            config.verify_timeout_ms,
        )
        .map(Report::new),
        None => Ok(Report::new("no verify_url configured")),
    }
}
