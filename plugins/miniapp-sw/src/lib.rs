//! Rule 5: a service worker keeps serving its cached bundle until `sw.js`
//! changes bytes, and the open page shows the new bundle only if it reloads.
//! Make sure sw.js changes with the bundle (stamp a hand-written worker's
//! version line from the bundle's content hash, or check that a Workbox
//! precache manifest describes the files being published), check the
//! client's reload listener and the cache headers, and publish sw.js together
//! with the bundle it caches through one atomic release switch (the SDK's
//! `release::Site`: publish, switch, reload, prune).

mod build;
mod headers;
mod lint;
mod page;
mod source;
mod stamp;
mod toolchain;
mod workbox;

use build::Build;
use lint::Level;
use serde::Deserialize;
use slipway_sdk::release::{Fetched, Options, Site};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, probe};
use source::Source;
use stamp::VersionLine;
use std::collections::BTreeMap;
use std::path::Path;
use toolchain::Toolchain;

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
    /// Build directories of hashed assets that a page of an earlier release
    /// may still request: one served by the old worker while the new one
    /// takes over, and whose scripts the new worker no longer precaches.
    #[serde(default = "default_carry")]
    carry: Vec<String>,
    #[serde(default = "default_carry_releases")]
    carry_releases: u64,
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
/// vite's `build.assetsDir`.
fn default_carry() -> Vec<String> {
    vec!["assets".into()]
}
fn default_carry_releases() -> u64 {
    2
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
    toolchain: Toolchain,
    /// The bundle's content hash; a hand-written sw.js is stamped with it.
    hash: String,
    /// The stamped sw.js; `None` when sw.js is published as built (Workbox).
    stamped_sw: Option<Vec<u8>>,
    warnings: Vec<String>,
}

impl Bundle {
    /// What the plan (`done: false`) and apply reports say about sw.js.
    fn sw_action(&self, sw: &str, done: bool) -> String {
        let (stamp, publish) = if done {
            ("stamped", "published")
        } else {
            ("stamp", "publish")
        };
        match self.stamped_sw {
            Some(_) => format!(
                "{stamp} {sw} ({}) with {}",
                self.toolchain.name(),
                self.hash
            ),
            None => format!(
                "{publish} {sw} as built ({}: its precache manifest matches bundle {})",
                self.toolchain.name(),
                self.hash
            ),
        }
    }
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

    /// Read the build, tell how its service worker follows the bundle, lint
    /// it, and stamp it if it is hand-written.
    fn bundle(&self) -> Result<Bundle, String> {
        let line = VersionLine::new(&self.version_pattern)?;
        let build = Build::read(Path::new(&self.build))?;
        let Some(sw) = build.files.get(&self.sw) else {
            return Err(format!(
                "the build {} has no service worker {}; set `sw` to its path in the build",
                self.build, self.sw
            ));
        };
        if !build.files.contains_key(&self.index) {
            return Err(format!("the build has no {}; set `index`", self.index));
        }
        let source = source::detect(&build, &self.sw, &self.index, &line)?;
        let toolchain = source.toolchain();
        let findings = lint::lint(
            &build.client(&self.sw),
            &self.sw,
            &String::from_utf8_lossy(sw),
            toolchain,
        );
        let warnings = self.judge(findings)?;
        let (hash, stamped_sw) = match source {
            Source::VersionLine { span } => {
                // The stamp must not depend on itself: hash sw.js with it blanked.
                let hash = build.content_hash_with(&self.sw, &stamp::with_stamp(sw, &span, ""));
                let stamped = stamp::with_stamp(sw, &span, &hash);
                (hash, Some(stamped))
            }
            Source::Workbox { .. } => (build.content_hash(), None),
        };
        Ok(Bundle {
            toolchain,
            hash,
            stamped_sw,
            warnings,
        })
    }

    /// Errors fail the step, and so do warnings under `strict`.
    fn judge(&self, findings: Vec<lint::Finding>) -> Result<Vec<String>, String> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for finding in findings {
            match finding.level {
                Level::Error => errors.push(finding.message),
                Level::Warning if self.strict => errors.push(finding.message),
                Level::Warning => warnings.push(finding.message),
            }
        }
        if errors.is_empty() {
            Ok(warnings)
        } else {
            Err(errors.join("\n"))
        }
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
        let bundle = config.bundle().map_err(slipway_sdk::refuse)?;
        Ok(Report::new(format!(
            "would {} and publish it with its bundle next to {}{}",
            bundle.sw_action(&config.sw, false),
            config.site().live_label()?,
            warning_count(&bundle.warnings)
        )))
    }

    /// The strategy: the build with its service worker stamped (or, from
    /// Workbox, as built), after the lint and the live site's cache headers
    /// passed.
    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let bundle = config.bundle().map_err(slipway_sdk::refuse)?;
        for warning in &bundle.warnings {
            slipway_sdk::warn!("{warning}");
        }
        let site = config.site();
        // Fail before anything changes when the live site already shows
        // headers that would hide the new service worker.
        if site.releases().current()?.is_some() {
            config.check_headers()?;
        }
        let stamped = bundle.stamped_sw.is_some();
        let options = Options {
            replace: bundle
                .stamped_sw
                .clone()
                .map(|sw| BTreeMap::from([(config.sw.clone(), sw)]))
                .unwrap_or_default(),
            carry: config.carry.clone(),
            carry_releases: config.carry_releases,
        };
        let deployed = site.deploy(Path::new(&config.build), &options)?;
        let published = deployed.published;
        let report = if published.unchanged {
            Report::new(format!(
                "the bundle equals the live release {} ({}, bundle {}); nothing published, no \
                 client reloads",
                published.id,
                bundle.toolchain.name(),
                bundle.hash
            ))
        } else {
            Report::new(format!(
                "{} and switched to {}: {} files ({} copied, {} linked); pruned {}{}",
                bundle.sw_action(&config.sw, true),
                published.id,
                published.files,
                published.copied,
                published.linked,
                deployed.pruned.len(),
                warning_count(&bundle.warnings)
            ))
        };
        let report = report
            .with_output("release", published.id)
            .with_output("bundle", bundle.hash.clone())
            .with_output("sw_source", bundle.toolchain.sw_source());
        Ok(if stamped {
            report.with_output("sw_stamp", bundle.hash)
        } else {
            report
        })
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let live = config.site().live()?;
        let url = config.url_of(&config.sw);
        let Fetched { response, matches } = live.fetch(&url, &config.sw)?;
        let live = live.id;
        if !matches {
            return Err(format!(
                "{url} answered {} with bytes that are not the {} of release {live}; \
                 browsers will not see this deploy",
                response.status, config.sw
            ));
        }
        // Only a hand-written sw.js was stamped; a Workbox one is checked by
        // its bytes alone.
        let stamp = ctx.output("sw_stamp").unwrap_or("");
        if !stamp.is_empty() && !String::from_utf8_lossy(&response.body).contains(stamp) {
            return Err(format!("{url} does not carry the stamp {stamp}"));
        }
        config.check_headers()?;
        let carries = if stamp.is_empty() {
            "as published".to_owned()
        } else {
            format!("with stamp {stamp}")
        };
        Ok(Report::new(format!(
            "{url} serves release {live} {carries}, uncached"
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(build: &Path) -> Config {
        let json = serde_json::json!({ "url": "http://nginx:8082/", "build": build });
        serde_json::from_value(json).unwrap()
    }

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    #[test]
    fn a_workbox_build_is_published_as_built() {
        let bundle = config(&data("generate")).bundle().unwrap();
        assert_eq!(bundle.toolchain, Toolchain::VitePwaGenerate);
        assert!(bundle.stamped_sw.is_none());
        assert_eq!(bundle.hash.len(), 16);
        assert!(bundle.warnings.is_empty(), "{:?}", bundle.warnings);
        let inject = config(&data("inject")).bundle().unwrap();
        assert_eq!(inject.toolchain.sw_source(), "workbox-inject-manifest");
        assert_ne!(inject.hash, bundle.hash);
    }

    #[test]
    fn the_plain_register_script_build_is_refused() {
        let e = config(&data("autoupdate-script"))
            .bundle()
            .err()
            .unwrap_or_default();
        assert!(e.contains("injectRegister: false"), "{e}");
    }

    #[test]
    fn a_hand_written_line_with_a_comment_is_stamped() {
        let dir = std::env::temp_dir().join(format!("miniapp-sw-hand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = stamp::LINE_TO_ADD.lines().next().unwrap_or_default();
        std::fs::write(
            dir.join("sw.js"),
            format!("{line}\nself.addEventListener('install', () => self.skipWaiting());\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("index.html"),
            format!("<script>{}</script>", lint::SNIPPET),
        )
        .unwrap();
        let bundle = config(&dir).bundle();
        std::fs::remove_dir_all(&dir).unwrap();
        let bundle = bundle.unwrap();
        assert_eq!(bundle.toolchain.sw_source(), "version-line");
        let sw = String::from_utf8(bundle.stamped_sw.unwrap_or_default()).unwrap();
        let expected = format!(
            "const SW_VERSION = \"{}\"; // slipway replaces \"dev\"",
            bundle.hash
        );
        assert!(sw.starts_with(&expected), "{sw}");
    }
}
