//! The GPU-tunnel watchdog. Each tick learns the GPU box's address from its
//! source (an HTTP endpoint answering the address, or a DNS name). When the
//! address changes, it force-recreates the tunnel's client services so they
//! pick up the new target, waits until they are ready, and checks the tunnel.
//!
//! Three guards keep it from looping (see README.md):
//! 1. confirmation: a new address must be seen on `confirm_ticks` ticks in a row;
//! 2. cooldown: at least `cooldown_ms` between recreations;
//! 3. circuit breaker: after `breaker_max` recreations within
//!    `breaker_window_ms` whose tunnel check failed, it stops acting and fails
//!    every tick until `slipway watch --reset <watcher>`.
//!
//! A source that fails (timeout, error status, not an IP address) is counted
//! and logged, never taken for a change.

use serde::Deserialize;
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Watcher, docker, probe, state};
use std::net::IpAddr;

struct VastWatchdog;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `http://…` answering the address as its body, or `dns:<name>`.
    source: String,
    /// Services to force-recreate when the address changes.
    services: Vec<String>,
    /// The tunnel check after a recreate: `host:port` (TCP) or `http://…` (200).
    tunnel_probe: String,
    #[serde(default = "default_confirm")]
    confirm_ticks: u32,
    #[serde(default = "default_cooldown")]
    cooldown_ms: u64,
    #[serde(default = "default_breaker_max")]
    breaker_max: u32,
    #[serde(default = "default_breaker_window")]
    breaker_window_ms: u64,
    #[serde(default = "default_timeout")]
    source_timeout_ms: u32,
    #[serde(default = "default_ready")]
    ready_timeout_ms: u32,
}

fn default_confirm() -> u32 {
    3
}
fn default_cooldown() -> u64 {
    10 * 60_000
}
fn default_breaker_max() -> u32 {
    3
}
fn default_breaker_window() -> u64 {
    60 * 60_000
}
fn default_timeout() -> u32 {
    5_000
}
fn default_ready() -> u32 {
    120_000
}

impl Plugin for VastWatchdog {
    fn describe() -> PluginInfo {
        slipway_sdk::plugin_info!(needs: [
            "probe: the source's host:port (or its DNS name) and the tunnel_probe target",
            "docker: every service in `services`",
        ])
    }
}

impl Watcher for VastWatchdog {
    fn tick(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        if let Some(why) = state::get("tripped") {
            return Err(format!(
                "circuit breaker open, not acting: {why}. Fix the tunnel, then run `slipway watch --reset {}`",
                ctx.surface
            ));
        }
        let seen = match observe(&config) {
            Ok(ip) => ip,
            Err(why) => {
                let failures = counter("source_failures") + 1;
                state::set("source_failures", &failures.to_string())?;
                slipway_sdk::warn!("source failed ({failures} in a row): {why}");
                return Ok(Report::new(format!(
                    "source failed ({failures} in a row): {why}; no action"
                )));
            }
        };
        state::delete("source_failures");
        let Some(known) = state::get("address") else {
            state::set("address", &seen)?;
            return Ok(Report::new(format!("baseline address {seen}")));
        };
        if seen == known {
            state::delete("candidate");
            state::delete("candidate_ticks");
            return Ok(Report::new(format!("address unchanged ({known})")));
        }

        // Guard 1: confirmation.
        let ticks = match state::get("candidate") {
            Some(candidate) if candidate == seen => counter("candidate_ticks") + 1,
            _ => 1,
        };
        state::set("candidate", &seen)?;
        state::set("candidate_ticks", &ticks.to_string())?;
        if ticks < config.confirm_ticks {
            return Ok(Report::new(format!(
                "new address {seen} seen {ticks}/{} ticks; waiting for confirmation",
                config.confirm_ticks
            )));
        }

        // Guard 2: cooldown.
        let now = now_ms();
        let last = state::get("last_recreate_ms").and_then(|v| v.parse::<u64>().ok());
        if let Some(last) = last
            && now.saturating_sub(last) < config.cooldown_ms
        {
            let left = config.cooldown_ms - now.saturating_sub(last);
            return Ok(Report::new(format!(
                "address {known} -> {seen} confirmed, cooling down for another {left} ms"
            )));
        }

        // Check every service first, so a bad grant never leaves half of them recreated.
        for service in &config.services {
            docker::inspect(service).map_err(|e| format!("cannot act on {service}: {e}"))?;
        }
        for service in &config.services {
            docker::recreate(service).map_err(|e| format!("recreating {service} failed: {e}"))?;
        }
        for service in &config.services {
            docker::wait_ready(service, config.ready_timeout_ms)
                .map_err(|e| format!("{service} did not become ready after the recreate: {e}"))?;
        }
        state::set("last_recreate_ms", &now.to_string())?;
        state::set("address", &seen)?;
        state::delete("candidate");
        state::delete("candidate_ticks");
        let action = format!(
            "recreated {} for {known} -> {seen}",
            config.services.join(",")
        );

        // Guard 3: the circuit breaker counts recreations the tunnel did not survive.
        match check_tunnel(&config) {
            Ok(()) => {
                state::delete("failed_recreations");
                Ok(Report::new("tunnel answers").with_output("action", action))
            }
            Err(why) => {
                let mut failed: Vec<u64> = state::get("failed_recreations")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|t| t.parse().ok())
                    .filter(|t| now.saturating_sub(*t) < config.breaker_window_ms)
                    .collect();
                failed.push(now);
                let list: Vec<String> = failed.iter().map(u64::to_string).collect();
                state::set("failed_recreations", &list.join(","))?;
                if failed.len() as u32 >= config.breaker_max {
                    let reason = format!(
                        "{} recreations within {} ms and the tunnel still fails ({why})",
                        failed.len(),
                        config.breaker_window_ms
                    );
                    state::set("tripped", &reason)?;
                    return Err(format!("{action}; circuit breaker tripped: {reason}"));
                }
                slipway_sdk::warn!("tunnel check failed after the recreate: {why}");
                Ok(Report::new(format!(
                    "tunnel check failed ({}/{} before the breaker trips): {why}",
                    failed.len(),
                    config.breaker_max
                ))
                .with_output("action", action))
            }
        }
    }
}

/// The source's current address. Anything but a clean address is an error.
fn observe(config: &Config) -> Result<String, String> {
    let text = match config.source.strip_prefix("dns:") {
        Some(name) => {
            let mut addrs = probe::resolve(name)?;
            addrs.sort();
            addrs
                .into_iter()
                .next()
                .ok_or_else(|| format!("{name} resolves to nothing"))?
        }
        None => {
            let r = probe::http_get(&config.source, config.source_timeout_ms)?;
            if r.status != 200 {
                return Err(format!("{} answered {}", config.source, r.status));
            }
            String::from_utf8_lossy(&r.body).trim().to_owned()
        }
    };
    let ip: IpAddr = text.parse().map_err(|_| {
        format!(
            "the source answered `{}`, which is not an IP address",
            text.chars().take(60).collect::<String>()
        )
    })?;
    Ok(ip.to_string())
}

fn check_tunnel(config: &Config) -> Result<(), String> {
    let target = &config.tunnel_probe;
    if target.starts_with("http://") {
        let r = probe::http_get(target, config.source_timeout_ms)?;
        return match r.status {
            200 => Ok(()),
            s => Err(format!("{target} answered {s}")),
        };
    }
    let (host, port) = target
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            format!("tunnel_probe `{target}` is neither host:port nor an http:// URL")
        })?;
    probe::tcp_connect(host, port, config.source_timeout_ms)
}

fn counter(key: &str) -> u32 {
    state::get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

slipway_sdk::export_watcher!(VastWatchdog);
