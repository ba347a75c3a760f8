//! Rule 4: copying a static build over the served directory is not atomic.
//! Publish each build as a release directory, hard-linking what did not
//! change, then switch `current` with one rename; keep the last few releases
//! for an instant rollback. nginx serves `<site>/current`. The sequence
//! (publish, switch, reload, prune) is the SDK's `release::Site`; this step
//! says what to publish: the build as it is, carrying hashed assets.

use serde::Deserialize;
use slipway_sdk::release::{Options, Site};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, state};
use std::path::Path;

struct Astro;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where the build output (granted read-only) is mounted.
    #[serde(default = "default_build")]
    build: String,
    /// Where the served root (granted read-write) is mounted.
    #[serde(default = "default_site")]
    site: String,
    /// Releases to keep; the live one and the one before it always stay.
    #[serde(default = "default_keep")]
    keep: usize,
    /// Build directories of hashed assets that pages of the previous
    /// releases may still request.
    #[serde(default = "default_carry")]
    carry: Vec<String>,
    #[serde(default = "default_carry_releases")]
    carry_releases: u64,
    /// The compose service running nginx, to reload after a switch (needed
    /// with `open_file_cache`).
    nginx: Option<String>,
    /// URLs through nginx whose bodies must equal files of the live release.
    #[serde(default)]
    verify: Vec<Check>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    url: String,
    /// The release file, relative to the build root, the body must equal.
    file: String,
}

fn default_build() -> String {
    "/build".into()
}
fn default_site() -> String {
    "/site".into()
}
fn default_keep() -> usize {
    5
}
fn default_carry() -> Vec<String> {
    vec!["_astro".into()]
}
fn default_carry_releases() -> u64 {
    2
}

impl Config {
    fn site(&self) -> Site {
        Site::open(&self.site)
            .nginx(self.nginx.as_deref())
            .keep(self.keep)
    }
}

impl Plugin for Astro {
    fn describe() -> PluginInfo {
        PluginInfo {
            exec: slipway_sdk::nginx::reload_exec_needs(),
            ..slipway_sdk::plugin_info!(needs: [
                "fs (ro): the build output, at `build` (default /build)",
                "fs (rw): the served root, at `site` (default /site); nginx serves <site>/current",
                "docker: the nginx service, if `nginx` is set (exec: the commands below, to reload and wait for the old workers)",
                "probe: the host:port of each `verify` URL",
            ])
        }
    }
}

impl Step for Astro {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let files = slipway_sdk::release::scan(Path::new(&config.build))?;
        Ok(Report::new(format!(
            "would publish {} files from {} as a new release next to {}, switch current, keep {}",
            files.len(),
            config.build,
            config.site().live_label()?,
            config.keep
        )))
    }

    /// The strategy: the build as it is, with the hashed assets of the last
    /// releases carried over.
    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let options = Options {
            carry: config.carry.clone(),
            carry_releases: config.carry_releases,
            ..Options::default()
        };
        let deployed = config.site().deploy(Path::new(&config.build), &options)?;
        let published = deployed.published;
        if published.unchanged {
            return Ok(Report::new(format!(
                "the build equals the live release {}; nothing published",
                published.id
            ))
            .with_output("release", published.id));
        }
        Ok(Report::new(format!(
            "published and switched to {}: {} files ({} copied, {} linked, {} carried, {} bytes written); pruned {}",
            published.id,
            published.files,
            published.copied,
            published.linked,
            published.carried,
            published.bytes_copied,
            deployed.pruned.len()
        ))
        .with_output("release", published.id))
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        if config.verify.is_empty() {
            // Nothing to fetch: the live release's manifest (megabytes for
            // a big site) need not be read.
            return Ok(Report::new(format!(
                "no `verify` URLs to check; live release {}",
                config.site().live_label()?
            )));
        }
        let live = config.site().live()?;
        for check in &config.verify {
            let fetched = live.fetch(&check.url, &check.file)?;
            if !fetched.matches {
                return Err(format!(
                    "{} answered {} with content that is not {} of release {}; nginx does not serve the new build",
                    check.url, fetched.response.status, check.file, live.id
                ));
            }
        }
        Ok(Report::new(format!(
            "{} URLs serve release {}",
            config.verify.len(),
            live.id
        )))
    }

    fn rollback(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let (live, previous) = config.site().roll_back()?;
        if let Err(e) = state::set("last_rollback", &format!("{live} -> {previous}")) {
            slipway_sdk::warn!("cannot record the rollback in plugin state: {e}");
        }
        Ok(
            Report::new(format!("rolled back from {live} to {previous}"))
                .with_output("release", previous),
        )
    }
}

slipway_sdk::export_step!(Astro);
