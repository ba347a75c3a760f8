//! Rule 5: a service worker keeps serving its cached bundle until `sw.js`
//! changes bytes, and the open page shows the new bundle only if it reloads.
//! Stamp sw.js from the bundle's content hash, check the client's reload
//! listener and the cache headers, and publish sw.js together with the
//! bundle it caches through one atomic release switch (the SDK's
//! `release::Site`: publish, switch, reload, prune).

mod headers;
mod lint;
mod stamp;

use lint::Level;
use serde::Deserialize;
use slipway_sdk::release::{self, Fetched, Options, Site};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, probe};
use stamp::VersionLine;
use std::collections::BTreeMap;
use std::path::Path;

struct MiniappSw;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The app's root URL through nginx, e.g. `http://nginx:8082/`.
    url: String,
    /// Where the build output (granted read-only) is mounted.
    #[serde(default = "default_build")]
    build: String,
    /// Where the served root (granted read-write) is mounted.
    #[serde(default = "default_site")]
    site: String,
    /// The service worker, relative to the build root.
    #[serde(default = "default_sw")]
    sw: String,
    /// The page that registers it, relative to the build root.
    #[serde(default = "default_index")]
    index: String,
    /// A regex whose group `stamp` is the version string in sw.js.
    #[serde(default = "default_pattern")]
    version_pattern: String,
    /// Fail on lint warnings too.
    #[serde(default)]
    strict: bool,
    /// The compose service running nginx, to reload after a switch.
    nginx: Option<String>,
    /// Releases to keep; the live one and the one before it always stay.
    #[serde(default = "default_keep")]
    keep: usize,
}

fn default_build() -> String {
    "/build".into()
}
fn default_site() -> String {
    "/site".into()
}
fn default_sw() -> String {
    "sw.js".into()
}
fn default_index() -> String {
    "index.html".into()
}
fn default_pattern() -> String {
    stamp::DEFAULT_PATTERN.into()
}
fn default_keep() -> usize {
    5
}

/// A build, read and checked, ready to publish.
struct Bundle {
    stamp: String,
    stamped_sw: Vec<u8>,
    warnings: Vec<String>,
}

impl Config {
    fn site(&self) -> Site {
        Site::open(&self.site)
            .nginx(self.nginx.as_deref())
            .keep(self.keep)
    }

    fn url_of(&self, file: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), file)
    }

    /// Read the build, lint it and stamp its service worker.
    fn bundle(&self) -> Result<Bundle, String> {
        let build = Path::new(&self.build);
        let line = VersionLine::new(&self.version_pattern)?;
        let sw = std::fs::read(build.join(&self.sw)).map_err(|e| {
            format!(
                "cannot read the service worker {}/{}: {e}; set `sw` to its path in the build",
                self.build, self.sw
            )
        })?;
        let span = line.find(&self.sw, &sw)?;
        let mut hashes = BTreeMap::new();
        let mut client = Vec::new();
        for rel in release::scan(build)? {
            let key = rel.to_string_lossy().into_owned();
            if key == self.sw {
                hashes.insert(key, release::hash_bytes(&stamp::with_stamp(&sw, &span, "")));
                continue;
            }
            let bytes = std::fs::read(build.join(&rel))
                .map_err(|e| format!("cannot read {key} from the build: {e}"))?;
            hashes.insert(key.clone(), release::hash_bytes(&bytes));
            if [".html", ".js", ".mjs"]
                .iter()
                .any(|ext| key.ends_with(ext))
            {
                client.push((key, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        if !hashes.contains_key(&self.index) {
            return Err(format!("the build has no {}; set `index`", self.index));
        }
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for finding in lint::lint(&client, &self.sw, &String::from_utf8_lossy(&sw)) {
            match finding.level {
                Level::Error => errors.push(finding.message),
                Level::Warning if self.strict => errors.push(finding.message),
                Level::Warning => warnings.push(finding.message),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let stamp = stamp::stamp(&hashes);
        Ok(Bundle {
            stamped_sw: stamp::with_stamp(&sw, &span, &stamp),
            stamp,
            warnings,
        })
    }

    /// Check the cache headers nginx serves for sw.js and the page. After
    /// a reload this step made, the SDK has waited until nginx's old workers
    /// were gone, so no answer comes from the old configuration.
    fn check_headers(&self) -> Result<(), String> {
        let sw_url = self.url_of(&self.sw);
        let sw = probe::http_get(&sw_url, 5_000)?;
        if sw.status != 200 {
            return Err(format!("{sw_url} answered {}", sw.status));
        }
        headers::check_sw(&sw_url, cache_control(&sw), &format!("/{}", self.sw))?;
        let index_url = self.url_of(&self.index);
        let index = probe::http_get(&index_url, 5_000)?;
        headers::check_index(
            &index_url,
            cache_control(&index),
            &format!("/{}", self.index),
        )
    }
}

fn cache_control(response: &probe::HttpResponse) -> Option<&str> {
    response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
        .map(|(_, value)| value.as_str())
}

impl Plugin for MiniappSw {
    fn describe() -> PluginInfo {
        PluginInfo {
            exec: slipway_sdk::nginx::reload_exec_needs(),
            ..slipway_sdk::plugin_info!(needs: [
                "fs (ro): the build output, at `build` (default /build)",
                "fs (rw): the served root, at `site` (default /site); nginx serves <site>/current",
                "probe: the host:port of `url` (nginx)",
                "docker: the nginx service, if `nginx` is set (exec: the commands below, to reload and wait for the old workers)",
            ])
        }
    }
}

impl Step for MiniappSw {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let bundle = config.bundle()?;
        Ok(Report::new(format!(
            "would stamp {} with {} and publish it with its bundle next to {}{}",
            config.sw,
            bundle.stamp,
            config.site().live_label()?,
            warning_count(&bundle.warnings)
        )))
    }

    /// The strategy: the build with its service worker stamped, after the
    /// lint and the live site's cache headers passed.
    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let bundle = config.bundle()?;
        for warning in &bundle.warnings {
            slipway_sdk::warn!("{warning}");
        }
        let site = config.site();
        // Fail before anything changes when the live site already shows
        // headers that would hide the new service worker.
        if site.releases().current()?.is_some() {
            config.check_headers()?;
        }
        let options = Options {
            replace: BTreeMap::from([(config.sw.clone(), bundle.stamped_sw)]),
            ..Options::default()
        };
        let deployed = site.deploy(Path::new(&config.build), &options)?;
        let published = deployed.published;
        let report = if published.unchanged {
            Report::new(format!(
                "the bundle equals the live release {} (stamp {}); nothing published, no client reloads",
                published.id, bundle.stamp
            ))
        } else {
            Report::new(format!(
                "stamped {} with {} and switched to {}: {} files ({} copied, {} linked); pruned {}{}",
                config.sw,
                bundle.stamp,
                published.id,
                published.files,
                published.copied,
                published.linked,
                deployed.pruned.len(),
                warning_count(&bundle.warnings)
            ))
        };
        Ok(report
            .with_output("release", published.id)
            .with_output("sw_stamp", bundle.stamp))
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let live = config.site().live()?;
        let url = config.url_of(&config.sw);
        let Fetched { response, matches } = live.fetch(&url, &config.sw)?;
        let live = live.id;
        if !matches {
            return Err(format!(
                "{url} answered {} with bytes that are not the stamped {} of release {live}; \
                 browsers will not see this deploy",
                response.status, config.sw
            ));
        }
        let stamp = ctx.output("sw_stamp").unwrap_or("");
        if !stamp.is_empty() && !String::from_utf8_lossy(&response.body).contains(stamp) {
            return Err(format!("{url} does not carry the stamp {stamp}"));
        }
        config.check_headers()?;
        Ok(Report::new(format!(
            "{url} serves release {live} with stamp {stamp}, uncached"
        )))
    }

    fn rollback(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let (live, previous) = config.site().roll_back()?;
        Ok(
            Report::new(format!("rolled back from {live} to {previous}"))
                .with_output("release", previous),
        )
    }
}

fn warning_count(warnings: &[String]) -> String {
    match warnings.len() {
        0 => String::new(),
        n => format!(" ({n} lint warnings; see the log)"),
    }
}

slipway_sdk::export_step!(MiniappSw);
