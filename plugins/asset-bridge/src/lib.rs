//! Asset bridging for a server-rendered app (Next.js, Nuxt, Remix, ...).
//! An open tab asks for its own build's hashed chunks
//! (`/_next/static/chunks/…-<hash>.js`) on its next client-side
//! navigation. Once the app's container runs the new build, those files are
//! gone and the navigation fails with a ChunkLoadError. Kamal calls the
//! cure asset bridging: keep the previous builds' assets where the web
//! server still finds them.
//!
//! The strategy: read the assets directory out of the images (the one the
//! deploy replaced, through the host's `previous` output, and the one now
//! running), publish it as a static release whose `carry` keeps the last
//! builds' files (the SDK's `release::Site`), and let nginx serve that
//! release in front of the app, falling back to the app for anything it
//! does not hold yet.

use serde::Deserialize;
use slipway_sdk::release::{Live, Options, Site};
use slipway_sdk::{Context, Plugin, PluginInfo, Report, Step, docker, image, state};
use std::path::{Path, PathBuf};

struct AssetBridge;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The compose service whose image holds the assets.
    service: String,
    /// The assets directory in the image, e.g. `/app/.next/static`.
    path: String,
    /// The URL path nginx serves them under, e.g. `/_next/static/`. The
    /// release mirrors it, so nginx's `root` is `<site>/current`.
    url_path: String,
    /// nginx as this step reaches it, e.g. `http://nginx:80`, to check
    /// that it serves the bridged assets.
    url: String,
    /// Where the bridge's root (granted read-write) is mounted.
    #[serde(default = "default_site")]
    site: String,
    /// Builds whose assets stay served: the running one and the N-1 before.
    #[serde(default = "default_builds")]
    builds: u64,
    /// The compose service running nginx, to reload after a switch (needed
    /// with `open_file_cache`).
    nginx: Option<String>,
}

fn default_site() -> String {
    "/site".into()
}
fn default_builds() -> u64 {
    3
}

/// The plugin state key: the image the live release was published from.
const PUBLISHED_IMAGE: &str = "image";

impl Config {
    fn check(&self) -> Result<(), String> {
        if self.builds < 2 {
            return Err(slipway_sdk::refuse(format!(
                "`builds = {}` bridges nothing: the previous build's assets would go with it. Set `builds` to 2 or more",
                self.builds
            )));
        }
        if !self.path.starts_with('/') || !self.url_path.starts_with('/') {
            return Err(slipway_sdk::refuse(
                "`path` (in the image) and `url_path` (under nginx) must both start with `/`",
            ));
        }
        Ok(())
    }

    fn site(&self) -> Site {
        Site::open(&self.site)
            .nginx(self.nginx.as_deref())
            .keep(self.builds as usize)
    }

    /// The release directory the assets go in: the URL path, relative.
    fn prefix(&self) -> String {
        self.url_path.trim_matches('/').to_owned()
    }

    fn options(&self) -> Options {
        Options {
            carry: vec![self.prefix()],
            carry_releases: self.builds - 1,
            ..Options::default()
        }
    }

    /// The image the service runs now: one, whatever its container count.
    fn running_image(&self) -> Result<String, String> {
        let mut images: Vec<String> = docker::inspect(&self.service)?
            .into_iter()
            .filter(|c| c.state == "running")
            .map(|c| c.image_id)
            .collect();
        images.dedup();
        match images.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "service `{}` has no running container to take the assets from",
                self.service
            )),
            _ => Err(format!(
                "service `{}` runs {} different images; deploy it to one first",
                self.service,
                images.len()
            )),
        }
    }

    /// Read `image`'s assets into a fresh staging build and publish it,
    /// carrying the last builds' files.
    fn publish(&self, image: &str) -> Result<String, String> {
        let staging = Path::new(&self.site).join(".incoming");
        remove(&staging)?;
        let into: PathBuf = staging.join(self.prefix());
        let unpacked = image::unpack(&self.service, image, &self.path, &into)?;
        if unpacked.files == 0 {
            return Err(format!(
                "`{}` in {}'s image {} holds no files; set `path` to the assets directory",
                self.path,
                self.service,
                short(image)
            ));
        }
        let deployed = self.site().deploy(&staging, &self.options())?;
        remove(&staging)?;
        state::set(PUBLISHED_IMAGE, image)?;
        let p = deployed.published;
        Ok(match p.unchanged {
            true => format!("{}: unchanged ({} files)", short(image), p.files),
            false => format!(
                "{}: {} files, {} carried from earlier builds, release {}",
                short(image),
                p.files,
                p.carried,
                p.id
            ),
        })
    }

    /// Fetch one file of the running build and one carried from an earlier
    /// build through nginx; both must be the release's bytes.
    fn check_served(&self, live: &Live) -> Result<usize, String> {
        let own = live.manifest.files.iter().find(|(_, e)| e.own);
        let carried = live.manifest.files.iter().find(|(_, e)| !e.own);
        let mut checked = 0;
        for (file, _) in own.into_iter().chain(carried) {
            let url = format!("{}/{file}", self.url.trim_end_matches('/'));
            let fetched = live.fetch(&url, file)?;
            if !fetched.matches {
                return Err(format!(
                    "{url} answered {} with bytes that are not {file} of bridge release {}: nginx \
                     does not serve the bridge. Add to the server in nginx.conf (with the \
                     bridge's directory mounted into nginx):\n\n{}\n",
                    fetched.response.status,
                    live.id,
                    self.nginx_snippet()
                ));
            }
            checked += 1;
        }
        Ok(checked)
    }

    fn nginx_snippet(&self) -> String {
        format!(
            "location {path} {{\n    root /path/to/{site}/current;  # the bridge, as nginx sees it\n    try_files $uri @app;  # not bridged yet: ask the app\n}}\nlocation @app {{\n    proxy_pass http://{service}_upstream;\n}}",
            path = self.url_path,
            site = self.site.trim_matches('/'),
            service = self.service,
        )
    }
}

fn remove(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

fn short(image: &str) -> &str {
    let digits = image.strip_prefix("sha256:").unwrap_or(image);
    digits.get(..12).unwrap_or(digits)
}

/// `previous` says `service=image` for each service the deploy replaced.
fn previous_image(ctx: &Context, service: &str) -> Option<String> {
    let previous = ctx.output("previous")?;
    previous.split(',').find_map(|pair| {
        let (svc, image) = pair.split_once('=')?;
        (svc == service && !image.is_empty()).then(|| image.to_owned())
    })
}

impl Plugin for AssetBridge {
    fn describe() -> PluginInfo {
        PluginInfo {
            exec: slipway_sdk::nginx::reload_exec_needs(),
            ..slipway_sdk::plugin_info!(needs: [
                "docker: the app's service (`service`), to read the assets out of its images",
                "fs (rw): the bridge's root, at `site` (default /site); nginx serves <site>/current",
                "probe: the host:port of `url` (nginx)",
                "docker: the nginx service, if `nginx` is set (exec: the commands below, to reload and wait for the old workers)",
            ])
        }
    }
}

impl Step for AssetBridge {
    fn plan(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        config.check()?;
        Ok(Report::new(format!(
            "would publish `{}` of {}'s new image under {} next to {}, keeping {} builds",
            config.path,
            config.service,
            config.url_path,
            config.site().live_label()?,
            config.builds
        )))
    }

    /// The replaced build first, when the bridge does not hold it yet (the
    /// first deploy with this step), then the running one.
    fn apply(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        config.check()?;
        let running = config.running_image()?;
        let published = state::get(PUBLISHED_IMAGE);
        let mut done = Vec::new();
        if let Some(previous) = previous_image(&ctx, &config.service)
            && previous != running
            && published.as_deref() != Some(previous.as_str())
        {
            // Losing the old build's assets costs open tabs a reload, not
            // this deploy: the new build is published either way.
            match config.publish(&previous) {
                Ok(summary) => done.push(summary),
                Err(e) => slipway_sdk::warn!(
                    "cannot bridge the replaced build {}: {e}; tabs opened before this deploy                      reload on their next navigation (the host keeps replaced images for this                      unless `keep_images = 0`)",
                    short(&previous)
                ),
            }
        }
        done.push(config.publish(&running)?);
        let live = config.site().live_label()?;
        Ok(Report::new(format!(
            "bridged {} under {}: {}",
            config.path,
            config.url_path,
            done.join("; ")
        ))
        .with_output("release", live))
    }

    fn verify(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        let live = config.site().live()?;
        let checked = config.check_served(&live)?;
        let builds = live.manifest.files.values().filter(|e| !e.own).count();
        Ok(Report::new(format!(
            "nginx serves bridge release {} ({checked} files fetched; {builds} files carried from earlier builds)",
            live.id
        )))
    }

    /// Keep the bridge as it is: it holds the build the app goes back to
    /// and the one it leaves, and tabs opened on either still need theirs.
    fn rollback(ctx: Context) -> Result<Report, String> {
        let config: Config = ctx.config()?;
        Ok(Report::new(format!(
            "kept bridge release {}: it serves the assets of the build the app goes back to \
             and of the one it leaves",
            config.site().live_label()?
        )))
    }
}

slipway_sdk::export_step!(AssetBridge);

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(outputs: &[(&str, &str)]) -> Context {
        Context {
            surface: "web".into(),
            step: 1,
            config: "{}".into(),
            outputs: outputs
                .iter()
                .map(|(key, value)| slipway_sdk::Output {
                    key: (*key).into(),
                    value: (*value).into(),
                })
                .collect(),
        }
    }

    fn config(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    const OK: &str = r#"{"service": "web", "path": "/app/.next/static", "url_path": "/_next/static/", "url": "http://nginx:80"}"#;

    #[test]
    fn the_replaced_image_is_the_services_own_entry_of_previous() {
        let c = ctx(&[("previous", "api=sha256:aaa,web=sha256:bbb")]);
        assert_eq!(previous_image(&c, "web").as_deref(), Some("sha256:bbb"));
        assert_eq!(previous_image(&c, "api").as_deref(), Some("sha256:aaa"));
        assert_eq!(previous_image(&c, "we"), None);
        for value in ["", "web=", "web", "webx=sha256:ccc"] {
            assert_eq!(
                previous_image(&ctx(&[("previous", value)]), "web"),
                None,
                "{value}"
            );
        }
        assert_eq!(previous_image(&ctx(&[]), "web"), None);
    }

    #[test]
    fn a_bridge_that_keeps_nothing_or_relative_paths_are_refused() {
        let c = config(OK).unwrap();
        assert!(c.check().is_ok());
        assert_eq!(c.prefix(), "_next/static");
        assert_eq!(c.options().carry_releases, 2);
        let one = config(&OK.replace('}', r#", "builds": 1}"#)).unwrap();
        assert!(
            one.check()
                .unwrap_err()
                .starts_with("refused: `builds = 1`")
        );
        let relative = config(&OK.replace("/app/.next", "app/.next")).unwrap();
        assert!(
            relative
                .check()
                .unwrap_err()
                .contains("must both start with `/`")
        );
        assert!(
            config(&OK.replace("\"url\"", "\"uri\"")).is_err(),
            "unknown keys are refused"
        );
    }
}
