//! Rule 2: nginx resolves upstream names once, at start or reload, so after a
//! recreate it keeps sending traffic to the old container's address. After
//! the host recreates services nginx routes to, this step:
//! 1. waits until each recreated upstream is ready (never a fixed sleep);
//! 2. validates the config with `nginx -t`;
//! 3. reloads gracefully with `nginx -s reload` (old workers finish their
//!    requests, new workers resolve the new addresses);
//! 4. verifies through nginx itself that the route answers.
//!
//! Upstreams come from `config.upstreams`, or are discovered from `nginx -T`.

use serde::Deserialize;
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, docker, probe};

struct NginxReload;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The compose service running nginx.
    #[serde(default = "default_service")]
    service: String,
    /// Services nginx routes to. Discovered from `nginx -T` when absent.
    upstreams: Option<Vec<String>>,
    #[serde(default = "default_ready_ms")]
    ready_timeout_ms: u32,
    /// A URL through nginx that must answer 200 after the reload.
    verify_url: Option<String>,
    /// A substring the verify response must contain.
    verify_expect: Option<String>,
    #[serde(default = "default_verify_ms")]
    verify_timeout_ms: u32,
}

fn default_service() -> String {
    "nginx".into()
}
fn default_ready_ms() -> u32 {
    60_000
}
fn default_verify_ms() -> u32 {
    20_000
}

impl Plugin for NginxReload {
    fn describe() -> PluginInfo {
        slipway_sdk::plugin_info!(needs: [
            "docker: the nginx service (exec) and every upstream it routes to (wait-ready)",
            "probe: the host:port of verify_url, when set",
        ])
    }
}

impl Step for NginxReload {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let targets = match &config.upstreams {
            Some(list) => recreated_upstreams(list, &ctx.recreated()).join(", "),
            None => format!("recreated upstreams among: {}", ctx.recreated().join(", ")),
        };
        Ok(Report::new(format!(
            "would wait for {targets}, run `nginx -t`, `nginx -s reload` in {} and verify {}",
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
        let test = nginx(&config.service, &["nginx", "-t"])?;
        if test.exit_code != 0 {
            return Err(format!(
                "`nginx -t` failed in {}, so nginx was not reloaded: {}",
                config.service,
                test.stderr.trim()
            ));
        }
        let reload = nginx(&config.service, &["nginx", "-s", "reload"])?;
        if reload.exit_code != 0 {
            return Err(format!(
                "`nginx -s reload` failed: {}",
                reload.stderr.trim()
            ));
        }
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
        let config: Config = ctx.config()?;
        let Some(url) = config.verify_url else {
            return Ok(Report::new("no verify_url configured"));
        };
        // A reload starts new workers asynchronously: poll until the route
        // answers through them or the budget runs out.
        let mut last = String::new();
        let attempts = config.verify_timeout_ms / 100;
        for attempt in 1..=attempts.max(1) {
            match probe::http_get(&url, 2_000) {
                Ok(r) => {
                    let body = String::from_utf8_lossy(&r.body);
                    let expected = config
                        .verify_expect
                        .as_deref()
                        .is_none_or(|e| body.contains(e));
                    if r.status == 200 && expected {
                        return Ok(Report::new(format!(
                            "{url} answered 200 through nginx (attempt {attempt}): {}",
                            body.lines().next().unwrap_or_default()
                        )));
                    }
                    last = format!("{} {}", r.status, body.lines().next().unwrap_or_default());
                }
                Err(e) => last = e,
            }
            pause_ms(100);
        }
        Err(format!(
            "{url} did not answer 200 through nginx: last answer `{last}`"
        ))
    }
}

fn nginx(service: &str, command: &[&str]) -> Result<docker::ExecOutput, String> {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    docker::exec(service, &command)
        .map_err(|e| format!("cannot run `{}` in {service}: {e}", command.join(" ")))
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
            ["server", addr, ..] if !addr.contains('{') => hosts.push(host_of(addr)),
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

fn pause_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

slipway_sdk::export_step!(NginxReload);
