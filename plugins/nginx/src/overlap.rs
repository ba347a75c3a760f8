//! `nginx-overlap`: start-first with the nginx.conf as it is. For each
//! service nginx routes to:
//! 1. start the new container next to the old one, under the same network
//!    aliases, and wait until it is ready;
//! 2. reload: nginx resolves the name to both containers;
//! 3. retire the old container gracefully. nginx's connects to it are
//!    refused and move to the next address; a request that was never sent
//!    (a POST included) is retried there;
//! 4. reload again, so nginx holds only the new address before Docker can
//!    hand the old one to another container.
//!
//! Services nginx does not route to are replaced stop-first, so a polling
//! bot or a beat never runs twice.

use crate::start_first::{Begun, Fresh, abandon, begin, dns_settled, retire_old, service_list};
use crate::{Config, reload_for};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step};

struct NginxOverlap;

impl Plugin for NginxOverlap {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "nginx-overlap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Start-first on any nginx.conf: new container beside the old under one name, reload, retire the old, reload".into(),
            needs: vec![
                "docker: the nginx service (exec: the commands below), and every service of the surface".into(),
                "probe: the host:port of verify_url, when set".into(),
            ],
            exec: slipway_sdk::nginx::exec_needs(&[&["nslookup", "{service}"]]),
            replaces_services: true,
        }
    }
}

impl Step for NginxOverlap {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        Ok(Report::new(format!(
            "would replace {} (start-first where {} routes, stop-first elsewhere), reloading around each switch, and verify {}",
            ctx.to_replace().join(", "),
            config.service,
            config.verify_url.as_deref().unwrap_or("nothing")
        )))
    }

    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let routes = slipway_sdk::nginx::routes(&config.service)?;
        let Begun {
            fresh,
            stop_first,
            moved,
        } = begin(&ctx, config.ready_timeout_ms, &routes, |_| Ok(()))?;
        if fresh.is_empty() {
            return reload_for(&config, &moved, Some(&routes)).map(Report::new);
        }
        overlap(&config, &fresh)?;
        Ok(Report::new(format!(
            "replaced {} start-first behind {}; stop-first: [{}]",
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
    fn rollback(ctx: Context) -> Result<Report, String> {
        if !ctx.to_replace().is_empty() {
            return Self::apply(ctx);
        }
        crate::reload_moved(&ctx)
    }
}

/// Steps 2–4 for the started replacements. If the first reload fails,
/// nginx still runs its old config and the replacements are removed.
fn overlap(config: &Config, fresh: &[Fresh]) -> Result<(), String> {
    if let Err(e) = config.reload_gracefully() {
        return Err(abandon(fresh, format!("{e}; nginx kept its old config")));
    }
    retire_old(fresh)?;
    if let Err(e) = dns_settled(&config.service, fresh) {
        slipway_sdk::warn!("{e}; reloading anyway");
    }
    config.reload_gracefully().map_err(|e| {
        format!(
            "the old {} are retired, but the second reload failed: {e}; nginx retries refused connects on the new containers until it reloads",
            service_list(fresh)
        )
    })
}

slipway_sdk::export_step!(NginxOverlap);
