//! `nginx-reload`: the seed's rule done right. The host has replaced the
//! services stop-first; unless nginx's own config proves it cannot reach
//! them, wait until they are ready (never a fixed sleep), validate, reload
//! gracefully, and verify through nginx.

use crate::Config;
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step};

struct NginxReload;

impl Plugin for NginxReload {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "nginx-reload".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "After a recreate: wait for the upstreams, nginx -t, nginx -s reload, verify through nginx".into(),
            needs: vec![
                "docker: the nginx service (exec: the commands below), and every upstream it routes to (inspect, wait-ready)".into(),
                "probe: the host:port of verify_url, when set".into(),
            ],
            exec: slipway_sdk::nginx::exec_needs(&[]),
            replaces_services: false,
        }
    }
}

impl Step for NginxReload {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let moved = ctx.recreated();
        Ok(Report::new(format!(
            "would reload {} if nginx's config may reach any of [{}], after they are ready, and verify {}",
            config.service,
            moved.join(", "),
            config.verify_url.as_deref().unwrap_or("nothing")
        )))
    }

    fn apply(ctx: Context) -> Result<Report, String> {
        crate::reload_moved(&ctx)
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

slipway_sdk::export_step!(NginxReload);
