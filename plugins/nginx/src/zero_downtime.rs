//! `nginx-zero-downtime`: start-first, with nginx pinned to the new
//! containers through upstream include files. For each service nginx routes
//! to:
//! 1. start the new container next to the old one and wait until it is ready;
//! 2. pin nginx to it: `<upstreams_dir>/<service>.conf` gets the new
//!    container's address (the original is kept in state first), then
//!    `nginx -t` and a graceful reload;
//! 3. verify through nginx, then let the old nginx workers drain;
//! 4. retire the old container (SIGTERM, bounded by its stop timeout);
//! 5. put the include files back as written and reload once more, so nginx
//!    resolves the service name again (now only the new container has it).
//!
//! A config that routes to a service other than through its include file is
//! refused before anything changes, with the change to make. Any failure
//! before step 4 puts the include files back and hands traffic back to the
//! old containers, which never stopped serving. Pins a killed run left are
//! restored before anything else.

use crate::start_first::{Begun, Fresh, abandon, begin, dns_settled, retire_old, service_list};
use crate::{Config, names_of, reload_for, verify_through};
use serde::{Deserialize, Serialize};
use slipway_sdk::nginx::{self, config::Routes};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, docker, refuse, state};

struct NginxZeroDowntime;

/// The state key of the include files pinned right now.
const PINS: &str = "pins";

/// An upstream include file switched to a new address, and what it held.
#[derive(Serialize, Deserialize)]
struct Pin {
    path: String,
    original: String,
}

impl Plugin for NginxZeroDowntime {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "nginx-zero-downtime".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Start-first: new container beside the old, pin nginx to it, reload, drain, retire the old".into(),
            needs: vec![
                "docker: the nginx service (exec: the commands below), and every service of the surface".into(),
                "fs (rw): the directory of upstream include files nginx includes, at upstreams_dir".into(),
                "probe: the host:port of verify_url, when set".into(),
            ],
            exec: slipway_sdk::nginx::exec_needs(&[&["nslookup", "{service}"]]),
            replaces_services: true,
        }
    }
}

impl Step for NginxZeroDowntime {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        Ok(Report::new(format!(
            "would replace {} (start-first where {} routes, pinned through {}, stop-first elsewhere), drain and retire the old ones, and verify {}",
            ctx.to_replace().join(", "),
            config.service,
            config.upstreams_dir,
            config.verify_url.as_deref().unwrap_or("nothing")
        )))
    }

    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        restore_leftover_pins(&config)?;
        let routes = nginx::routes(&config.service)?;
        let check = |service: &str| pinnable(&config, &routes, service).map_err(refuse);
        let Begun {
            fresh,
            stop_first,
            moved,
        } = begin(&ctx, config.ready_timeout_ms, &routes, check)?;
        if fresh.is_empty() {
            return reload_for(&config, &moved, Some(&routes)).map(Report::new);
        }
        // Nothing routes to the replacements yet, so any failure until the
        // switch removes them again.
        let old_workers = match nginx::worker_pids(&config.service) {
            Ok(pids) => pids,
            Err(e) => return Err(abandon(&fresh, e)),
        };
        let pins = match switch(&config, &fresh) {
            Ok(pins) => pins,
            Err(e) => return Err(abandon(&fresh, e)),
        };
        if let Some(url) = &config.verify_url
            && let Err(e) = verify_through(
                url,
                config.verify_expect.as_deref(),
                config.verify_timeout_ms,
            )
        {
            return Err(hand_back(&config, &pins, &fresh, e));
        }
        if let Err(e) = nginx::wait_drained(&config.service, &old_workers, config.drain_timeout_ms)
        {
            slipway_sdk::warn!(
                "{e}; retiring the old containers anyway, the new ones are verified"
            );
        }
        retire_old(&fresh)?;
        // Docker's DNS must list only the new containers before nginx
        // resolves the names again, or it would spread requests over dead
        // addresses.
        if let Err(e) = dns_settled(&config.service, &fresh) {
            slipway_sdk::warn!("{e}; unpinning anyway");
        }
        unpin(&config, &pins).map_err(|e| format!("the deploy is live, but {e}"))?;
        Ok(Report::new(format!(
            "replaced {} start-first; {} pinned and reloaded, old containers drained and retired; stop-first: [{}]",
            service_list(&fresh),
            config.service,
            stop_first.join(", ")
        )))
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        crate::verify_route(&ctx)
    }

    /// `slipway rollback` hands over the services to put back on their
    /// previous images (`replace`): the same start-first switch as a deploy.
    /// Otherwise (the host restored them stop-first, or a later part of the
    /// deploy failed) nginx resolves whatever moved again.
    /// Any pin a killed run left is undone first.
    fn rollback(ctx: Context) -> Result<Report, String> {
        if !ctx.to_replace().is_empty() {
            return Self::apply(ctx);
        }
        let config: Config = ctx.config()?;
        restore_leftover_pins(&config)?;
        crate::reload_moved(&ctx)
    }
}

/// Whether traffic to `service` can be moved by pinning its include file:
/// nginx reaches it only through `upstream` blocks whose `server` lines for
/// it all come from `<service>.conf`, and the step can read that file.
/// Otherwise the error is the exact change to make.
fn pinnable(config: &Config, routes: &Routes, service: &str) -> Result<(), String> {
    let names = names_of(service);
    let file = format!("{service}.conf");
    let include = format!(
        "{}/{file}",
        config.nginx_upstreams_dir.trim_end_matches('/')
    );
    let advice =
        "Or keep nginx.conf as it is and use nginx-overlap.wasm, which needs no include file.";
    if let Some(t) = routes.targets.iter().find(|t| t.host.is_none()) {
        return Err(format!(
            "{}:{}: `{} {}` picks its upstream from a variable at run time, so pinning {service} through {file} cannot move it. Route {service} through `upstream {service}_backend {{ include {include}; }}` instead. {advice}",
            t.file, t.line, t.directive, t.raw
        ));
    }
    let is_service = |host: &str| names.iter().any(|n| n.eq_ignore_ascii_case(host));
    if let Some(t) = routes
        .targets
        .iter()
        .find(|t| t.upstream.is_none() && t.host.as_deref().is_some_and(is_service))
    {
        let host = t.host.as_deref().unwrap_or(service);
        let addr = t.port.map_or(host.to_owned(), |p| format!("{host}:{p}"));
        let rewritten = t.raw.replacen(&addr, &format!("{service}_backend"), 1);
        return Err(format!(
            "{}:{}: `{} {}` sends requests to {service} by name, and nginx-zero-downtime moves traffic only through an upstream include file. Change it to `{} {rewritten};`, add `upstream {service}_backend {{ include {include}; }}` to the http block, and write `server {addr};` into {}/{file}. {advice}",
            t.file,
            t.line,
            t.directive,
            t.raw,
            t.directive,
            config.upstreams_dir.trim_end_matches('/')
        ));
    }
    for upstream in &routes.upstreams {
        if let Some(s) = upstream
            .servers
            .iter()
            .find(|s| is_service(&s.host) && !s.file.ends_with(&format!("/{file}")))
        {
            return Err(format!(
                "{}:{}: upstream `{}` lists `server {}` itself, so pinning {file} cannot move it. Move its server lines for {service} into {}/{file} and write `include {include};` in their place. {advice}",
                s.file,
                s.line,
                upstream.name,
                s.host,
                config.upstreams_dir.trim_end_matches('/')
            ));
        }
    }
    let path = include_path(config, service);
    std::fs::read_to_string(&path).map(|_| ()).map_err(|e| {
        format!(
            "cannot read {path} ({e}): grant the directory of upstream include files to this step as {} (grants.fs, mode rw)",
            config.upstreams_dir
        )
    })
}

fn include_path(config: &Config, service: &str) -> String {
    format!(
        "{}/{service}.conf",
        config.upstreams_dir.trim_end_matches('/')
    )
}

/// Point each routed service's include file at its new container, then
/// validate and reload. The originals go to state before any file changes,
/// so a killed run can be undone. On failure the files are restored.
fn switch(config: &Config, fresh: &[Fresh]) -> Result<Vec<Pin>, String> {
    let nginx_networks: Vec<String> = docker::inspect(&config.service)?
        .iter()
        .flat_map(|c| c.networks.iter().map(|n| n.network.clone()))
        .collect();
    let mut pins = Vec::new();
    let mut pinned = Vec::new();
    for f in fresh {
        let path = include_path(config, &f.service);
        let Ok(original) = std::fs::read_to_string(&path) else {
            continue; // started first on request, but nginx does not route to it
        };
        let ip = f
            .container
            .networks
            .iter()
            .find(|n| nginx_networks.contains(&n.network) && !n.ip_address.is_empty())
            .map(|n| n.ip_address.clone())
            .ok_or_else(|| {
                format!(
                    "the new {} shares no network with {}",
                    f.service, config.service
                )
            })?;
        let text = pin_servers(&original, &ip)
            .ok_or_else(|| format!("{path} has no `server host:port;` line to pin"))?;
        pinned.push((path.clone(), text));
        pins.push(Pin { path, original });
    }
    if pins.is_empty() {
        return Ok(pins);
    }
    let saved = serde_json::to_string(&pins).map_err(|e| format!("cannot record the pins: {e}"))?;
    state::set(PINS, &saved)
        .map_err(|e| format!("cannot record the pins, so nothing was pinned: {e}"))?;
    for (path, text) in &pinned {
        if let Err(e) = write_atomically(path, text) {
            return Err(format!("{e}{}", restore_files(&pins)));
        }
    }
    if let Err(e) = config.reload_gracefully() {
        let restored = restore_files(&pins);
        return Err(format!("{e}; nginx kept its old config{restored}"));
    }
    Ok(pins)
}

/// Verification failed with nginx pinned to the new containers: give
/// traffic back to the old ones without a gap. The restored include files
/// name the service, which resolves to old and new; the new ones are then
/// removed (refused connects move on) and a last reload resolves only the
/// old.
fn hand_back(config: &Config, pins: &[Pin], fresh: &[Fresh], why: String) -> String {
    let mut message = why;
    message.push_str(&restore_files(pins));
    if let Err(e) = config.reload_gracefully() {
        message.push_str(&format!("; reloading the restored config failed: {e}"));
    }
    let message = abandon(fresh, message);
    match config.reload_gracefully() {
        Ok(()) => message,
        Err(e) => format!("{message}; the last reload failed: {e}"),
    }
}

/// Put the include files back as written and reload, once the old
/// containers are gone.
fn unpin(config: &Config, pins: &[Pin]) -> Result<(), String> {
    let restored = restore_files(pins);
    if !restored.is_empty() {
        return Err(restored.trim_start_matches("; ").to_owned());
    }
    config
        .reload_gracefully()
        .map_err(|e| format!("reloading the restored config failed: {e}"))
}

/// Write the originals back and forget the pins. Returns "" on success, or
/// a sentence to append to an error.
fn restore_files(pins: &[Pin]) -> String {
    for pin in pins {
        if let Err(e) = write_atomically(&pin.path, &pin.original) {
            return format!("; restoring {} failed too: {e}", pin.path);
        }
    }
    state::delete(PINS);
    String::new()
}

/// Pins a killed run left behind, restored and reloaded before anything
/// else: the include files return to what the operator wrote.
fn restore_leftover_pins(config: &Config) -> Result<(), String> {
    let Some(saved) = state::get(PINS) else {
        return Ok(());
    };
    let pins: Vec<Pin> = serde_json::from_str(&saved).unwrap_or_default();
    slipway_sdk::warn!(
        "restoring {} include file(s) a killed run left pinned",
        pins.len()
    );
    let failed = restore_files(&pins);
    if !failed.is_empty() {
        return Err(failed.trim_start_matches("; ").to_owned());
    }
    config.reload_gracefully()
}

/// Replace the host of every `server host:port ...;` line with `ip`.
fn pin_servers(text: &str, ip: &str) -> Option<String> {
    let mut pinned = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let Some(rest) = trimmed.strip_prefix("server ") else {
                return line.to_owned();
            };
            let rest = rest.trim_start();
            let (addr, tail) = rest.split_at(rest.find([' ', ';']).unwrap_or(rest.len()));
            let Some((_, port)) = addr.rsplit_once(':') else {
                return line.to_owned();
            };
            pinned = true;
            let indent = &line[..line.len() - trimmed.len()];
            format!("{indent}server {ip}:{port}{tail}")
        })
        .collect();
    pinned.then(|| lines.join("\n") + "\n")
}

fn write_atomically(path: &str, content: &str) -> Result<(), String> {
    let tmp = format!("{path}.slipway-tmp");
    std::fs::write(&tmp, content).map_err(|e| format!("cannot write {tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {path}: {e}"))
}

slipway_sdk::export_step!(NginxZeroDowntime);
