//! `nginx-zero-downtime`: start-first. For each service the host built:
//! 1. start the new container next to the old one and wait until it is ready;
//! 2. pin nginx to it: `<upstreams_dir>/<service>.conf` gets the new
//!    container's address, then `nginx -t` and a graceful reload;
//! 3. verify through nginx, then let the old nginx workers drain;
//! 4. retire the old container (SIGTERM, bounded by its stop timeout);
//! 5. put the include files back as written and reload once more, so nginx
//!    resolves the service name again (now only the new container has it).
//!
//! Any failure before step 4 puts everything back: the include files, nginx,
//! and the old containers, which never stopped serving.

use crate::{Config, test_config, verify_through, wait_drained, worker_pids};
use slipway_sdk::nginx::reload;
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, docker};

struct NginxZeroDowntime;

/// An upstream include file switched to a new address, and what it held.
struct Pin {
    path: String,
    original: String,
}

/// A replacement container started for a service.
struct Fresh {
    service: String,
    container: docker::Container,
}

impl Plugin for NginxZeroDowntime {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "nginx-zero-downtime".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Start-first: new container beside the old, pin nginx to it, reload, drain, retire the old".into(),
            needs: vec![
                "docker: the nginx service, exec narrowed to [[\"nginx\", \"-t\"], [\"nginx\", \"-T\"], [\"nginx\", \"-s\", \"reload\"], [\"ps\", \"-o\", \"pid,args\"], [\"nslookup\"]], and every service of the surface".into(),
                "fs (rw): the directory of upstream include files nginx includes, at upstreams_dir".into(),
                "probe: the host:port of verify_url, when set".into(),
            ],
            replaces_services: true,
        }
    }
}

impl Step for NginxZeroDowntime {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        Ok(Report::new(format!(
            "would start new containers for {} next to the old ones, pin {} to them, reload, verify {}, drain and retire the old ones",
            ctx.to_replace().join(", "),
            config.service,
            config.verify_url.as_deref().unwrap_or("nothing")
        )))
    }

    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let services = ctx.to_replace();
        let mut fresh = Vec::new();
        for service in &services {
            match docker::start_replacement(service) {
                Ok(container) => fresh.push(Fresh {
                    service: service.clone(),
                    container,
                }),
                Err(e) => {
                    return Err(abandon(
                        &fresh,
                        format!("cannot start a new {service}: {e}"),
                    ));
                }
            }
        }
        for f in &fresh {
            if let Err(e) = docker::wait_ready(&f.service, config.ready_timeout_ms) {
                let why = format!("the new {} never became ready: {e}", f.service);
                return Err(abandon(&fresh, why));
            }
        }
        let (pins, old_workers) = match switch(&config, &fresh) {
            Ok(switched) => switched,
            Err(e) => return Err(abandon(&fresh, e)),
        };
        if let Some(url) = &config.verify_url
            && let Err(e) = verify_through(
                url,
                config.verify_expect.as_deref(),
                config.verify_timeout_ms,
            )
        {
            let restored = unpin(&config, &pins, true);
            return Err(abandon(&fresh, format!("{e}{restored}")));
        }
        wait_drained(&config.service, &old_workers, config.drain_timeout_ms)?;
        for f in &fresh {
            docker::retire(&f.service, &f.container.id)
                .map_err(|e| format!("retiring the old {} failed: {e}", f.service))?;
        }
        // Docker's DNS must list only the new containers before nginx resolves
        // the names again, or it would spread requests over dead addresses.
        for f in &fresh {
            let ip = f
                .container
                .networks
                .iter()
                .map(|n| n.ip_address.clone())
                .collect::<Vec<_>>();
            if !dns_settled(&config.service, &f.service, &ip) {
                slipway_sdk::warn!(
                    "DNS for {} still lists old addresses; nginx stays pinned to the new container",
                    f.service
                );
                let names: Vec<&str> = fresh.iter().map(|f| f.service.as_str()).collect();
                return Ok(Report::new(format!(
                    "replaced {} start-first; nginx stays pinned because DNS for {} has not settled",
                    names.join(", "),
                    f.service
                )));
            }
        }
        let restored = unpin(&config, &pins, true);
        if !restored.is_empty() {
            return Err(format!("the deploy is live, but{restored}"));
        }
        let names: Vec<&str> = fresh.iter().map(|f| f.service.as_str()).collect();
        Ok(Report::new(format!(
            "replaced {} start-first; {} pinned and reloaded, old containers drained and retired",
            names.join(", "),
            config.service
        )))
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        crate::verify_route(&ctx)
    }

    /// `slipway rollback` recreated the services on their previous images
    /// (stop-first): nginx must resolve their new addresses. A failed deploy
    /// has already restored everything in `apply`.
    fn rollback(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let recreated = ctx.recreated();
        if recreated.is_empty() {
            return Ok(Report::new(
                "nothing was recreated; nginx keeps its addresses",
            ));
        }
        test_config(&config.service).and_then(|()| reload(&config.service))?;
        Ok(Report::new(format!(
            "reloaded {} for {}",
            config.service,
            recreated.join(", ")
        )))
    }
}

/// Point each upstream include file that exists at the new container, then
/// validate and reload. Returns the pins and the PIDs of the workers that ran
/// the old config. On failure the files are restored before returning.
fn switch(config: &Config, fresh: &[Fresh]) -> Result<(Vec<Pin>, Vec<String>), String> {
    let old_workers = worker_pids(&config.service)?;
    let nginx_networks: Vec<String> = docker::inspect(&config.service)?
        .iter()
        .flat_map(|c| c.networks.iter().map(|n| n.network.clone()))
        .collect();
    let mut pins = Vec::new();
    for f in fresh {
        let path = format!(
            "{}/{}.conf",
            config.upstreams_dir.trim_end_matches('/'),
            f.service
        );
        let Ok(original) = std::fs::read_to_string(&path) else {
            continue; // nginx does not route to this service
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
        let pinned = pin_servers(&original, &ip)
            .ok_or_else(|| format!("{path} has no `server host:port;` line to pin"))?;
        if let Err(e) = write_atomically(&path, &pinned) {
            return Err(format!("{e}{}", unpin(config, &pins, false)));
        }
        pins.push(Pin { path, original });
    }
    if pins.is_empty() {
        return Ok((pins, Vec::new()));
    }
    if let Err(e) = test_config(&config.service).and_then(|()| reload(&config.service)) {
        return Err(format!(
            "{e}; nginx kept its old config{}",
            unpin(config, &pins, false)
        ));
    }
    Ok((pins, old_workers))
}

/// Put the include files back as written, and reload if nginx had loaded
/// the pins. Returns "" on success, or a sentence to append to an error.
fn unpin(config: &Config, pins: &[Pin], reloaded: bool) -> String {
    for pin in pins {
        if let Err(e) = write_atomically(&pin.path, &pin.original) {
            return format!("; restoring {} failed too: {e}", pin.path);
        }
    }
    if pins.is_empty() || !reloaded {
        return String::new();
    }
    match test_config(&config.service).and_then(|()| reload(&config.service)) {
        Ok(()) => String::new(),
        Err(e) => format!("; reloading the restored config failed: {e}"),
    }
}

/// Wait (up to 5 s) until the service name resolves, from inside nginx, to
/// addresses of the new container only.
fn dns_settled(nginx: &str, service: &str, new_ips: &[String]) -> bool {
    for _ in 0..50 {
        let command = vec!["nslookup".to_owned(), service.to_owned()];
        if let Ok(out) = docker::exec(nginx, &command) {
            // `Address: 1.2.3.4` lines; the resolver's own line carries a port.
            let answers: Vec<&str> = out
                .stdout
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(str::trim)
                .filter(|a| !a.contains(':') || a.matches(':').count() > 1 && !a.contains('#'))
                .collect();
            if !answers.is_empty() && answers.iter().all(|a| new_ips.iter().any(|ip| ip == a)) {
                return true;
            }
        }
        slipway_sdk::pause_ms(100);
    }
    false
}

/// Remove the replacements; the old containers never stopped serving.
fn abandon(fresh: &[Fresh], why: String) -> String {
    let mut message = why;
    for f in fresh {
        if let Err(e) = docker::discard(&f.service, &f.container.id) {
            message.push_str(&format!("; removing the new {} failed: {e}", f.service));
        }
    }
    format!("{message}; rolled back: traffic stayed on the old containers")
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
