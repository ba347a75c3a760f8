//! What the start-first strategies share: the update order of each
//! service, stop-first replacement, starting replacements beside the old
//! containers, and retiring or abandoning them.

use crate::routed;
use slipway_sdk::nginx::config::Routes;
use slipway_sdk::{Context, docker};

/// The services of `replace`, split by update order: the host's fixed
/// order where it gave one, otherwise start-first for what nginx routes to
/// and stop-first for the rest (a bot or a beat must never run twice).
fn split_by_order(ctx: &Context, routes: Option<&Routes>) -> (Vec<String>, Vec<String>) {
    let (mut start_first, mut stop_first) = (Vec::new(), Vec::new());
    for service in ctx.to_replace() {
        let start = match ctx.update_order(&service).as_deref() {
            Some("start-first") => true,
            Some(_) => false,
            None => routed(routes, &service),
        };
        match start {
            true => start_first.push(service),
            false => stop_first.push(service),
        }
    }
    (start_first, stop_first)
}

/// Where a start-first strategy stands once the replacements run: the new
/// containers started beside the old ones (all ready), the services
/// replaced stop-first, and every service that already moved.
pub(crate) struct Begun {
    pub fresh: Vec<Fresh>,
    pub stop_first: Vec<String>,
    pub moved: Vec<String>,
}

/// The shared opening of the start-first strategies: split `replace` by
/// update order, let `check` refuse any routed start-first service before
/// anything changes, replace the stop-first ones, then start the others.
pub(crate) fn begin(
    ctx: &Context,
    ready_timeout_ms: u32,
    routes: &Routes,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Begun, String> {
    let (start_first, stop_first) = split_by_order(ctx, Some(routes));
    for service in start_first.iter().filter(|s| routed(Some(routes), s)) {
        check(service)?;
    }
    replace_stop_first(&stop_first, ready_timeout_ms)?;
    let mut moved = ctx.recreated();
    moved.extend(stop_first.iter().cloned());
    let fresh = start_replacements(&start_first, ready_timeout_ms)?;
    Ok(Begun {
        fresh,
        stop_first,
        moved,
    })
}

/// Stop-first replacements, as the host does them: all of them first,
/// then the waits, so that their readiness windows overlap.
fn replace_stop_first(services: &[String], ready_timeout_ms: u32) -> Result<(), String> {
    for service in services {
        docker::recreate(service).map_err(|e| format!("cannot replace {service}: {e}"))?;
    }
    for service in services {
        docker::wait_ready(service, ready_timeout_ms)
            .map_err(|e| format!("the new {service} never became ready: {e}"))?;
    }
    Ok(())
}

/// A replacement container started next to a service's running one.
pub(crate) struct Fresh {
    pub service: String,
    pub container: docker::Container,
}

/// Start a replacement for each service and wait until all are ready. On
/// any failure the replacements are removed again; the old containers never
/// stopped serving.
fn start_replacements(services: &[String], ready_timeout_ms: u32) -> Result<Vec<Fresh>, String> {
    let mut fresh = Vec::new();
    for service in services {
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
        if let Err(e) = docker::wait_ready(&f.service, ready_timeout_ms) {
            let why = format!("the new {} never became ready: {e}", f.service);
            return Err(abandon(&fresh, why));
        }
    }
    Ok(fresh)
}

/// Remove the replacements; the old containers never stopped serving.
pub(crate) fn abandon(fresh: &[Fresh], why: String) -> String {
    let mut message = why;
    for f in fresh {
        if let Err(e) = docker::discard(&f.service, &f.container.id) {
            message.push_str(&format!("; removing the new {} failed: {e}", f.service));
        }
    }
    format!("{message}; rolled back: traffic stayed on the old containers")
}

/// Stop and remove the old containers of each service, keeping the fresh.
pub(crate) fn retire_old(fresh: &[Fresh]) -> Result<(), String> {
    for f in fresh {
        docker::retire(&f.service, &f.container.id)
            .map_err(|e| format!("retiring the old {} failed: {e}", f.service))?;
    }
    Ok(())
}

/// Wait (up to 5 s) until each service's name resolves, from inside nginx,
/// to its fresh container's addresses only, so that the next reload cannot
/// pick up an address Docker is about to hand to another container.
pub(crate) fn dns_settled(nginx: &str, fresh: &[Fresh]) -> Result<(), String> {
    for f in fresh {
        let ips: Vec<String> = f
            .container
            .networks
            .iter()
            .map(|n| n.ip_address.clone())
            .collect();
        if !resolves_only_to(nginx, &f.service, &ips) {
            return Err(format!(
                "DNS for {} still lists old addresses after 5 s",
                f.service
            ));
        }
    }
    Ok(())
}

fn resolves_only_to(nginx: &str, service: &str, ips: &[String]) -> bool {
    let settled = slipway_sdk::poll::until(5_000, 100, |_| {
        let command = vec!["nslookup".to_owned(), service.to_owned()];
        let Ok(out) = docker::exec(nginx, &command) else {
            return Ok(None);
        };
        // `Address: 1.2.3.4` lines; the resolver's own line carries a port.
        let answers: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Address:"))
            .map(str::trim)
            .filter(|a| !a.contains(':') || a.matches(':').count() > 1 && !a.contains('#'))
            .collect();
        let only = !answers.is_empty() && answers.iter().all(|a| ips.iter().any(|ip| ip == a));
        Ok(only.then_some(()))
    });
    matches!(settled, Ok(Some(())))
}

pub(crate) fn service_list(fresh: &[Fresh]) -> String {
    fresh
        .iter()
        .map(|f| f.service.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
