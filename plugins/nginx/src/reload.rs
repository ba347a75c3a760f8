//! `nginx-reload`: the seed's rule done right. The host has force-recreated
//! the services; for each one nginx routes to, wait until it is ready (never
//! a fixed sleep), validate, reload gracefully, and verify through nginx.

use crate::{Config, nginx, test_config, wait_drained, worker_pids};
use slipway_sdk::nginx::reload;
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, docker};

struct NginxReload;

impl Plugin for NginxReload {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "nginx-reload".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "After a recreate: wait for the upstreams, nginx -t, nginx -s reload, verify through nginx".into(),
            needs: vec![
                "docker: the nginx service, exec narrowed to [[\"nginx\", \"-t\"], [\"nginx\", \"-T\"], [\"nginx\", \"-s\", \"reload\"], [\"ps\", \"-o\", \"pid,args\"]], and every upstream it routes to (wait-ready)".into(),
                "probe: the host:port of verify_url, when set".into(),
            ],
            replaces_services: false,
        }
    }
}

impl Step for NginxReload {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let targets = match &config.upstreams {
            Some(list) => recreated_upstreams(list, &ctx.recreated()).join(", "),
            None => format!("the upstreams among {}", ctx.recreated().join(", ")),
        };
        Ok(Report::new(format!(
            "would wait for {targets}, run `nginx -t` and `nginx -s reload` in {}, and verify {}",
            config.service,
            config.verify_url.as_deref().unwrap_or("nothing")
        )))
    }

    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let upstreams = match &config.upstreams {
            Some(list) => list.clone(),
            None => discover_upstreams(&config.service)?,
        };
        let targets = recreated_upstreams(&upstreams, &ctx.recreated());
        if targets.is_empty() {
            return Ok(Report::new(format!(
                "no upstream of {} was recreated; nginx keeps its addresses",
                config.service
            )));
        }
        for upstream in &targets {
            docker::wait_ready(upstream, config.ready_timeout_ms).map_err(|e| {
                format!("upstream {upstream} never became ready, so nginx was not reloaded: {e}")
            })?;
        }
        test_config(&config.service).map_err(|e| format!("{e}; nginx was not reloaded"))?;
        let old_workers = worker_pids(&config.service)?;
        reload(&config.service)?;
        wait_drained(&config.service, &old_workers, config.drain_timeout_ms)?;
        slipway_sdk::info!(
            "reloaded {} after {} became ready",
            config.service,
            targets.join(", ")
        );
        Ok(Report::new(format!(
            "reloaded {} for {}",
            config.service,
            targets.join(", ")
        )))
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        crate::verify_route(&ctx)
    }

    /// `slipway rollback` recreated the services on their previous images:
    /// nginx must resolve them again, exactly as after a deploy.
    fn rollback(ctx: Context) -> Result<Report, String> {
        Self::apply(ctx)
    }
}

/// Upstream hosts from `nginx -T`: `server host:port` lines of upstream
/// blocks and the hosts of `proxy_pass http://host:port` (not upstream names).
fn discover_upstreams(service: &str) -> Result<Vec<String>, String> {
    let dump = nginx(service, &["nginx", "-T"])?;
    if dump.exit_code != 0 {
        return Err(format!(
            "`nginx -T` failed in {service}: {}",
            dump.stderr.trim()
        ));
    }
    let mut upstream_names = Vec::new();
    let mut hosts = Vec::new();
    for line in dump.stdout.lines().map(str::trim) {
        let words: Vec<&str> = line
            .trim_end_matches(['{', ';'])
            .split_whitespace()
            .collect();
        match words.as_slice() {
            ["upstream", name, ..] => upstream_names.push(name.to_string()),
            ["server", addr, ..] => hosts.push(host_of(addr)),
            ["proxy_pass", url, ..] => hosts.push(host_of(url.trim_start_matches("http://"))),
            _ => {}
        }
    }
    hosts.retain(|h| !upstream_names.contains(h) && !h.is_empty());
    hosts.dedup();
    Ok(hosts)
}

fn host_of(addr: &str) -> String {
    let addr = addr.split('/').next().unwrap_or_default();
    addr.split(':').next().unwrap_or_default().to_owned()
}

fn recreated_upstreams(upstreams: &[String], recreated: &[String]) -> Vec<String> {
    upstreams
        .iter()
        .filter(|u| recreated.contains(u))
        .cloned()
        .collect()
}

slipway_sdk::export_step!(NginxReload);
