//! Rule 2: nginx resolves upstream names once, at start or reload, so after a
//! recreate it keeps sending traffic to the old container's address. Three
//! strategies share the nginx operations below; each build exports one:
//! - `nginx-reload` (default): after the host recreates services, wait until
//!   the upstreams are ready, `nginx -t`, `nginx -s reload`, verify.
//! - `nginx-overlap` (feature `overlap`): start the new containers next to
//!   the old ones under the same name, reload so nginx resolves both, retire
//!   the old ones (refused connects move to the new), reload again. Works
//!   with the nginx.conf it finds.
//! - `nginx-zero-downtime` (feature `zero-downtime`): start the new containers
//!   next to the old ones, pin nginx to them through an upstream include
//!   file, reload, drain, retire the old. Refuses a config without the file.
//!
//! Where nginx routes comes from `nginx -T`, parsed as nginx parses it.
//! Whenever a service nginx might reach has moved, nginx reloads. The nginx
//! commands themselves (test, dump, reload, wait for the old workers) are
//! the SDK's `slipway_sdk::nginx`; this crate keeps the strategies.

use serde::Deserialize;
use slipway_sdk::nginx::{self, config::Routes};
use slipway_sdk::{Context, Report, docker, poll};

#[cfg(feature = "overlap")]
mod overlap;
#[cfg(not(any(feature = "zero-downtime", feature = "overlap")))]
mod reload;
#[cfg(any(feature = "zero-downtime", feature = "overlap"))]
mod start_first;
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
    /// Services to treat as routed even where `nginx -T` does not show it
    /// (e.g. reached through a variable set at run time by a module).
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
    /// Where nginx itself sees the upstream include files, for the advice
    /// `nginx-zero-downtime` gives when a route cannot be pinned.
    #[serde(default = "default_nginx_upstreams_dir")]
    nginx_upstreams_dir: String,
}

fn default_nginx_upstreams_dir() -> String {
    "/etc/nginx/upstreams".into()
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

impl Config {
    /// When no container of nginx runs (on a swarm, a new stack's nginx
    /// task restarts until its upstreams resolve), wait until it is ready:
    /// its config is read, and reloaded, once it runs. A running nginx is
    /// not probed: its exposed ports need not all be ones it listens on.
    fn wait_running(&self) -> Result<(), String> {
        let containers = docker::inspect(&self.service).unwrap_or_default();
        if containers.iter().any(|c| c.state == "running") {
            return Ok(());
        }
        docker::wait_ready(&self.service, self.ready_timeout_ms).map_err(|e| {
            format!(
                "{} is not running, so it was not reloaded: {e}",
                self.service
            )
        })
    }

    /// `nginx -t`, reload, and wait (up to `drain_timeout_ms`) until the old
    /// workers are gone; see `slipway_sdk::nginx::reload_gracefully`.
    fn reload_gracefully(&self) -> Result<(), String> {
        nginx::reload_gracefully(&self.service, self.drain_timeout_ms)
    }
}

/// The names a service answers to on its networks: its compose name and
/// its containers' aliases.
fn names_of(service: &str) -> Vec<String> {
    let mut names = vec![service.to_owned()];
    for c in docker::inspect(service).unwrap_or_default() {
        for alias in c.networks.iter().flat_map(|n| n.aliases.iter()) {
            if !names.contains(alias) {
                names.push(alias.clone());
            }
        }
    }
    names
}

/// Whether nginx may send requests to `service`. Without a parsed config,
/// it may: when in doubt, reload.
fn routed(routes: Option<&Routes>, service: &str) -> bool {
    routes.is_none_or(|r| r.may_reach(&names_of(service)))
}

/// Rule 2 for services that already moved (recreated by the host, by a
/// watcher, or stop-first by this step): unless nginx's config proves it
/// cannot reach any of them, wait until they are ready, validate and
/// reload. A graceful reload costs almost nothing; a stale address is a
/// 502. Returns what it did, for the report.
fn reload_for(
    config: &Config,
    moved: &[String],
    routes: Option<&Routes>,
) -> Result<String, String> {
    let listed = |s: &String| config.upstreams.as_ref().is_some_and(|u| u.contains(s));
    let reached: Vec<&String> = moved
        .iter()
        .filter(|s| listed(s) || routed(routes, s))
        .collect();
    if reached.is_empty() {
        return Ok(match moved.is_empty() {
            true => "no service moved; nginx keeps its addresses".into(),
            false => format!(
                "nginx's config reaches none of {}; no reload needed",
                moved.join(", ")
            ),
        });
    }
    for service in &reached {
        docker::wait_ready(service, config.ready_timeout_ms).map_err(|e| {
            format!(
                "{service} never became ready, so {} was not reloaded: {e}",
                config.service
            )
        })?;
    }
    config
        .reload_gracefully()
        .map_err(|e| format!("{e}; nginx was not reloaded"))?;
    let names: Vec<&str> = reached.iter().map(|s| s.as_str()).collect();
    Ok(format!(
        "reloaded {} for {}",
        config.service,
        names.join(", ")
    ))
}

/// Rule 2 for what the host or a watcher already moved: `nginx-reload`'s
/// apply, and every strategy's rollback. Without a parsable config, reload.
fn reload_moved(ctx: &Context) -> Result<Report, String> {
    let config: Config = ctx.config()?;
    let (stable, moved) = split_stable(ctx.recreated(), &ctx.stable());
    if moved.is_empty() {
        return Ok(Report::new(match stable.is_empty() {
            true => "no service moved; nginx keeps its addresses".into(),
            false => format!(
                "{}: replaced behind a Swarm service VIP, an address that stays; nginx keeps its addresses and only verifies",
                stable.join(", ")
            ),
        }));
    }
    config.wait_running()?;
    let routes = nginx::routes(&config.service)
        .inspect_err(|e| slipway_sdk::warn!("{e}; reloading anyway"))
        .ok();
    let summary = reload_for(&config, &moved, routes.as_ref())?;
    slipway_sdk::info!("{summary}");
    Ok(Report::new(summary))
}

/// `(stable, moved)`: the services of `recreated` whose address stays
/// (a Swarm VIP), and those whose address may have changed.
fn split_stable(recreated: Vec<String>, stable: &[String]) -> (Vec<String>, Vec<String>) {
    recreated.into_iter().partition(|s| stable.contains(s))
}

/// Poll `url` until it answers 200 (with `expect` in the body, if set).
fn verify_through(url: &str, expect: Option<&str>, timeout_ms: u32) -> Result<String, String> {
    match poll::url(url).timeout_ms(timeout_ms).answers(200, expect) {
        Ok(answer) => Ok(format!(
            "{url} answered 200 through nginx (attempt {}): {}",
            answer.attempt,
            poll::first_line(&answer.value.body)
        )),
        Err(gave_up) => Err(format!(
            "{url} did not answer 200 through nginx: last answer `{}`",
            gave_up.last
        )),
    }
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
