//! `slipway.toml`: the project, its plugins and its deploy surfaces.
//!
//! Parsing is strict (unknown keys are errors, with the line and column), and
//! validation names the offending key, e.g. `surface.backend.step[0].plugin`.
//! The JSON Schema in `schema/slipway.schema.json` is generated from these
//! types (`slipway schema`) and a test keeps it in sync.

use crate::capability::Grants;
use crate::capability::command::ExecCommand;
use crate::capability::docker::{DockerGrant, ServiceGrant};
use crate::capability::fs::FsGrant;
use crate::capability::probe::ProbeGrant;
use crate::compose::{ComposeProject, LoadOptions};
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole manifest, as written by the user.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub project: Project,
    /// Plugins by the name steps use to refer to them.
    #[serde(default)]
    pub plugins: IndexMap<String, PluginSpec>,
    /// Deploy surfaces, in the order `deploy --all` uses to break ties.
    #[serde(default)]
    pub surface: IndexMap<String, Surface>,
    /// Watchers that `slipway watch` ticks on an interval.
    #[serde(default)]
    pub watch: IndexMap<String, WatchSpec>,
}

/// A watcher: a `watch`-world plugin called every `interval_ms`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    /// A key of `[plugins]`; the plugin must be built for the `watch` world.
    pub plugin: String,
    /// Time between ticks, in milliseconds; at most a day.
    #[serde(default = "default_interval_ms")]
    #[schemars(range(min = 1, max = MAX_SECS * 1000))]
    pub interval_ms: u64,
    /// Handed to the plugin as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default)]
    pub grants: GrantSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// The compose project name (the `com.docker.compose.project` label).
    pub name: String,
    /// Path of the compose file, relative to slipway.toml.
    #[serde(default = "default_compose_file")]
    pub compose_file: PathBuf,
    /// Several compose files, merged in order as `docker compose -f a -f b`
    /// merges them. Replaces `compose_file` when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compose_files: Vec<PathBuf>,
    /// Compose profiles to activate, added to `COMPOSE_PROFILES`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Where slipway keeps its lock and plugin state, relative to slipway.toml.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Images a deploy replaced, kept per service (tagged
    /// `<image>:slipway-<time>`) so `slipway rollback` can bring them back.
    #[serde(default = "default_keep_images")]
    pub keep_images: usize,
    /// What the engine is: `compose` (containers on one engine, the
    /// default) or `swarm` (a Swarm manager; services are the stack named
    /// after the project, as `docker stack deploy` names them).
    #[serde(default)]
    pub engine: EngineKind,
    /// Where a swarm deploy pushes the images it builds (`host:port`), so
    /// that every node pulls the same digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    #[default]
    Compose,
    Swarm,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Path of the `.wasm` component, relative to slipway.toml.
    pub path: PathBuf,
    /// Optional pin: the plugin is refused if the file's SHA-256 differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Wall-clock limit for one call into the plugin; at most a day.
    #[serde(default = "default_timeout_secs")]
    #[schemars(range(min = 1, max = MAX_SECS))]
    pub timeout_secs: u64,
    /// Linear-memory cap for the plugin, in MiB; at most 4096 (all a
    /// wasm32 memory can address).
    #[serde(default = "default_memory_mb")]
    #[schemars(range(min = 1, max = MAX_MEMORY_MB))]
    pub memory_mb: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Surface {
    /// Compose services to build and converge on their compose definitions
    /// (create, replace or skip), in this order.
    #[serde(default)]
    pub services: Vec<String>,
    /// Surfaces that `deploy --all` must deploy first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How long each recreated service may take to become ready; at most
    /// a day.
    #[serde(default = "default_ready_timeout_secs")]
    #[schemars(range(min = 1, max = MAX_SECS))]
    pub ready_timeout_secs: u64,
    /// A service with neither a healthcheck nor a port is ready once it has
    /// run this long without exiting or restarting; at most a day.
    #[serde(default = "default_settle_secs")]
    #[schemars(range(max = MAX_SECS))]
    pub settle_secs: u64,
    /// Per-service overrides of `settle_secs`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub settle: IndexMap<String, u64>,
    /// Per-service update order, `start-first` or `stop-first`, overriding
    /// the compose file's `deploy.update_config.order`. Without either, a
    /// strategy that replaces services goes start-first for the services
    /// nginx routes to and stop-first for the others.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, UpdateOrderName>")]
    pub update_order: IndexMap<String, String>,
    /// A one-off command run on the newly built image before any container
    /// is replaced, e.g. database migrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// The command that writes what the steps publish, run before any
    /// surface changes anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<SurfaceBuild>,
    /// On a swarm: the static release a step publishes in one of this
    /// machine's directories ships as an image of one of the services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_image: Option<SiteImage>,
    /// Plugin steps, run in order after the services are recreated.
    #[serde(default)]
    pub step: Vec<StepSpec>,
    /// A final check through the front door that users see the new code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<HttpCheck>,
}

/// `surface.<name>.release`: like `docker compose run --rm --no-deps
/// <service> <command…>`, on the image this deploy built, with the service's
/// environment, volumes and networks, before traffic moves. A non-zero exit
/// stops the deploy and the old containers keep serving.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// One of the surface's services; the command runs on its new image.
    pub service: String,
    /// The argv, e.g. `["alembic", "upgrade", "head"]`.
    pub command: Vec<String>,
    /// Killed, and the deploy stopped, after this long; at most a day.
    #[serde(default = "default_release_timeout_secs")]
    #[schemars(range(min = 1, max = MAX_SECS))]
    pub timeout_secs: u64,
}

/// `surface.<name>.build`: e.g. `{ command = ["npm", "run", "build"], dir =
/// "website", output = "website/dist" }`. Skipped, and the log says so, when
/// nothing it reads changed since its last successful run: every file under
/// `dir` but the output, `.git`, `node_modules`, what `.gitignore` files
/// ignore and `exclude`. A failure stops the deploy before anything changes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SurfaceBuild {
    /// The argv.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Where it runs, relative to the manifest: its sources.
    pub dir: PathBuf,
    /// The directory it writes, relative to the manifest.
    pub output: PathBuf,
    /// Run it in a throwaway container of this image instead (pulled when
    /// missing), `dir` mounted at `/src`, its working directory, as the
    /// user who owns `dir`: for machines without the toolchain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// More paths under `dir` that are not inputs, in `.gitignore` syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Killed, and the deploy stopped, after this long; at most a day.
    #[serde(default = "default_release_timeout_secs")]
    #[schemars(range(min = 1, max = MAX_SECS))]
    pub timeout_secs: u64,
}

/// `surface.<name>.site_image`, on a swarm: nginx tasks run on other nodes
/// than the agent's directories, so the live release of `site` (its
/// `current`) is copied onto the service's image at `path`, pushed, and
/// rolled out in two updates: first the new files next to the served
/// release, then the new release (docs/swarm.md).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteImage {
    /// One of the surface's services: its compose image (built or pulled)
    /// is the server the release is added to.
    pub service: String,
    /// The release root a step publishes into: the `host` of one of the
    /// surface's steps' `mode = "rw"` directory grants, written the same.
    pub site: PathBuf,
    /// The absolute directory the service's server serves the site from.
    pub path: String,
    /// Files of the release, by their path in it, that change in an update
    /// of their own once every task serves the rest: a service worker
    /// (`sw.js`), whose install fetches the files it caches from any task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last: Vec<String>,
}

impl SiteImage {
    /// Whether the step publishes into the site: it is granted `site`
    /// read-write.
    pub fn published_by(&self, step: &StepSpec) -> bool {
        step.grants
            .fs
            .iter()
            .any(|g| g.mode == FsMode::Rw && g.host == self.site)
    }
}

fn default_release_timeout_secs() -> u64 {
    600
}

/// The values of `update_order`.
#[derive(JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
enum UpdateOrderName {
    StartFirst,
    StopFirst,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// A key of `[plugins]`.
    pub plugin: String,
    /// Handed to the plugin as JSON; its meaning is the plugin's.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default)]
    pub grants: GrantSpec,
}

/// What the step may reach. Nothing is granted by default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Compose services: a name grants every operation on it; a table
    /// `{ service = "nginx", exec = [["nginx", "-s", "reload"]] }` also
    /// narrows `exec` to the commands it lists, each matched whole.
    #[serde(default)]
    pub docker: Vec<DockerGrantSpec>,
    /// `host:port` or `host:*`; a host may be a compose service name.
    #[serde(default)]
    pub probe: Vec<String>,
    /// Directories to preopen.
    #[serde(default)]
    pub fs: Vec<FsGrantSpec>,
}

/// One entry of `grants.docker`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DockerGrantSpec {
    /// Every operation, and any command in `exec`.
    Service(String),
    /// Every operation; `exec` only of the commands it lists.
    Narrowed(NarrowedDockerGrant),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NarrowedDockerGrant {
    pub service: String,
    /// Whole commands, e.g. `["nginx", "-t"]` or `["nslookup", "{service}"]`;
    /// an argument `{service}` is any service of this step's grants.docker,
    /// `{number}` a decimal number. An empty list allows no exec.
    pub exec: Vec<Vec<String>>,
}

impl DockerGrantSpec {
    pub fn service(&self) -> &str {
        match self {
            DockerGrantSpec::Service(s) => s,
            DockerGrantSpec::Narrowed(n) => &n.service,
        }
    }
}

impl From<&str> for DockerGrantSpec {
    fn from(service: &str) -> DockerGrantSpec {
        DockerGrantSpec::Service(service.to_owned())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FsGrantSpec {
    /// Host directory, relative to slipway.toml. It must exist.
    pub host: PathBuf,
    /// Absolute path where the plugin sees it.
    pub guest: String,
    #[serde(default)]
    pub mode: FsMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsMode {
    #[default]
    Ro,
    Rw,
}

/// An HTTP GET that must answer `status` with a body containing `expect`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub url: String,
    #[serde(default = "default_status")]
    #[schemars(range(min = 100, max = 599))]
    pub status: u16,
    /// Substring the body must contain. `${VAR}` is replaced from the
    /// environment, so CI can pass the version it deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// How long to keep trying; at most a day.
    #[serde(default = "default_check_timeout_secs")]
    #[schemars(range(min = 1, max = MAX_SECS))]
    pub timeout_secs: u64,
}

fn default_interval_ms() -> u64 {
    60_000
}
fn default_compose_file() -> PathBuf {
    "docker-compose.yml".into()
}
fn default_state_dir() -> PathBuf {
    ".slipway".into()
}

/// A swarm needs a registry every node can pull from; its steps reach
/// services and hosts, never this machine's directories.
fn validate_engine(m: &Manifest) -> Result<(), (String, String)> {
    let registry = m.project.registry.as_deref();
    match (m.project.engine, registry) {
        (EngineKind::Swarm, None) => {
            return Err((
                "project.registry".into(),
                "a swarm deploy pushes what it builds: set registry = \"host:port\" to a registry every node can pull from".into(),
            ));
        }
        (EngineKind::Compose, Some(_)) => {
            return Err((
                "project.registry".into(),
                "only a swarm pushes images: remove it, or set engine = \"swarm\"".into(),
            ));
        }
        (EngineKind::Swarm, Some(r)) if r.is_empty() || r.contains('/') || r.contains("://") => {
            return Err((
                "project.registry".into(),
                format!(
                    "`{r}` is not a registry address: write host:port, e.g. registry.example:5000"
                ),
            ));
        }
        _ => {}
    }
    if m.project.engine != EngineKind::Swarm {
        return match m.surface.iter().find(|(_, s)| s.site_image.is_some()) {
            Some((name, _)) => Err((
                format!("surface.{name}.site_image"),
                "only a swarm ships a site as an image; on one host nginx serves the release directory: remove it, or set engine = \"swarm\"".into(),
            )),
            None => Ok(()),
        };
    }
    for (name, surface) in &m.surface {
        if let Some(site) = &surface.site_image {
            validate_site_image(name, surface, site)?;
        } else if let Some(index) = surface.step.iter().position(|s| !s.grants.fs.is_empty()) {
            return Err((
                format!("surface.{name}.step[{index}].grants.fs"),
                format!(
                    "a swarm's tasks run on other machines than these directories: to ship a release a step \
                     publishes here, add surface.{name}.site_image = {{ service = \"<the service that serves it>\", \
                     site = \"<the step's rw grant host>\", path = \"<where the service serves it>\" }} (docs/swarm.md)"
                ),
            ));
        }
    }
    Ok(())
}

/// A site image names a service of the surface, a release root one of its
/// steps writes, and an absolute path.
fn validate_site_image(
    name: &str,
    surface: &Surface,
    site: &SiteImage,
) -> Result<(), (String, String)> {
    let at = format!("surface.{name}.site_image");
    if !surface.services.contains(&site.service) {
        return Err((
            format!("{at}.service"),
            format!(
                "`{}` is not one of the surface's services; add it to surface.{name}.services",
                site.service
            ),
        ));
    }
    if !surface.step.iter().any(|s| site.published_by(s)) {
        return Err((
            format!("{at}.site"),
            format!(
                "no step of the surface is granted `{}` with mode = \"rw\": name the host directory a step publishes its releases into",
                site.site.display()
            ),
        ));
    }
    for (i, file) in site.last.iter().enumerate() {
        let relative = !file.is_empty() && !file.starts_with('/');
        if !relative || file.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err((
                format!("{at}.last[{i}]"),
                format!("`{file}` is not a file's path in the release, like `sw.js`"),
            ));
        }
    }
    if !site.path.starts_with('/') || site.path.split('/').any(|c| c == "..") {
        return Err((
            format!("{at}.path"),
            format!("`{}` is not an absolute path without `..`", site.path),
        ));
    }
    Ok(())
}

fn default_keep_images() -> usize {
    3
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_memory_mb() -> u64 {
    128
}
fn default_ready_timeout_secs() -> u64 {
    120
}
/// A day: longer waits are typos, and would overflow `Instant` arithmetic
/// near `u64::MAX`.
const MAX_SECS: u64 = 86_400;
/// 4 GiB: all a wasm32 linear memory can address.
const MAX_MEMORY_MB: u64 = 4_096;

/// `value` of `key` within `min..=max`, or the error naming both.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), (String, String)> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err((
        key.to_owned(),
        format!("{value} is out of range ({min}..={max})"),
    ))
}

fn default_settle_secs() -> u64 {
    5
}
fn default_status() -> u16 {
    200
}
fn default_check_timeout_secs() -> u64 {
    30
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A manifest that parsed and validated, with its paths resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The manifest's directory, which its paths are relative to.
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub compose: ComposeProject,
}

/// A bad manifest. `key` is the dotted path of the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.key {
            // Compose errors carry their own file and line.
            Some(key) if key.starts_with("project.compose_file") => {
                write!(f, "{file}: `{key}`: {}", self.message)
            }
            Some(key) => {
                let text = std::fs::read_to_string(&self.file).unwrap_or_default();
                match key_line(&text, key) {
                    Some(line) => write!(f, "{file}:{line}: `{key}`: {}", self.message),
                    None => write!(f, "{file}: `{key}`: {}", self.message),
                }
            }
            None => write!(f, "{file}: {}", self.message),
        }
    }
}

/// The line of a dotted manifest key such as `surface.backend.services[1]`:
/// the table's header, then the first line after it that sets the key.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let segments: Vec<&str> = key
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    (1..segments.len()).rev().find_map(|split| {
        let table = segments[..split].join(".");
        let field = segments[split];
        let header = lines.iter().position(|l| {
            let l = l.trim();
            l == format!("[{table}]") || l == format!("[[{table}]]")
        })?;
        let found = lines[header + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('['))
            .position(|l| l.trim_start().starts_with(field))
            .map(|i| header + 2 + i);
        Some(found.unwrap_or(header + 1))
    })
}

impl std::error::Error for ManifestError {}

impl Loaded {
    pub fn load(file: &Path) -> Result<Loaded, ManifestError> {
        let err = |key: Option<String>, message: String| ManifestError {
            file: file.to_owned(),
            key,
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            err(
                None,
                format!("cannot read the manifest: {e}; pass its path with -f"),
            )
        })?;
        // toml's message carries the line, column and the offending key.
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| err(None, e.to_string().trim_end().to_owned()))?;
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let dir = std::fs::canonicalize(&dir).map_err(|e| err(None, e.to_string()))?;
        let project = &manifest.project;
        let (key, files) = match project.compose_files.is_empty() {
            true => (
                "project.compose_file",
                vec![dir.join(&project.compose_file)],
            ),
            false => (
                "project.compose_files",
                project.compose_files.iter().map(|f| dir.join(f)).collect(),
            ),
        };
        let options = LoadOptions {
            profiles: project.profiles.clone(),
            swarm: project.engine == EngineKind::Swarm,
        };
        let compose = ComposeProject::load(&files, &project.name, &options)
            .map_err(|e| err(Some(key.into()), format!("{e:#}")))?;
        let loaded = Loaded {
            dir,
            manifest,
            compose,
        };
        loaded
            .validate()
            .map_err(|(key, message)| err(Some(key), message))?;
        Ok(loaded)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let m = &self.manifest;
        let name_ok = !m.project.name.is_empty()
            && m.project
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err((
                "project.name".into(),
                format!(
                    "`{}` is not a compose project name (lowercase letters, digits, `-`, `_`)",
                    m.project.name
                ),
            ));
        }
        validate_engine(m)?;
        for (name, plugin) in &m.plugins {
            let key = format!("plugins.{name}");
            if let Some(pin) = &plugin.sha256
                && (pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err((format!("{key}.sha256"), "must be 64 hex digits".into()));
            }
            in_range(
                &format!("{key}.timeout_secs"),
                plugin.timeout_secs,
                1,
                MAX_SECS,
            )?;
            in_range(
                &format!("{key}.memory_mb"),
                plugin.memory_mb,
                1,
                MAX_MEMORY_MB,
            )?;
        }
        for (sname, surface) in &m.surface {
            let key = format!("surface.{sname}");
            in_range(
                &format!("{key}.ready_timeout_secs"),
                surface.ready_timeout_secs,
                1,
                MAX_SECS,
            )?;
            in_range(
                &format!("{key}.settle_secs"),
                surface.settle_secs,
                0,
                MAX_SECS,
            )?;
            for (service, secs) in &surface.settle {
                in_range(&format!("{key}.settle.{service}"), *secs, 0, MAX_SECS)?;
                if !surface.services.contains(service) {
                    return Err((
                        format!("{key}.settle.{service}"),
                        format!("`{service}` is not one of the surface's services"),
                    ));
                }
            }
            for (service, order) in &surface.update_order {
                let at = format!("{key}.update_order.{service}");
                crate::compose::UpdateOrder::parse(order).map_err(|e| (at.clone(), e))?;
                if !surface.services.contains(service) {
                    return Err((
                        at,
                        format!("`{service}` is not one of the surface's services"),
                    ));
                }
            }
            if let Some(release) = &surface.release {
                let at = format!("{key}.release");
                in_range(
                    &format!("{at}.timeout_secs"),
                    release.timeout_secs,
                    1,
                    MAX_SECS,
                )?;
                if release.command.is_empty() {
                    return Err((format!("{at}.command"), "must name a command".into()));
                }
                if !surface.services.contains(&release.service) {
                    return Err((
                        format!("{at}.service"),
                        format!("`{}` is not one of the surface's services", release.service),
                    ));
                }
            }
            if let Some(build) = &surface.build {
                let at = format!("{key}.build");
                in_range(
                    &format!("{at}.timeout_secs"),
                    build.timeout_secs,
                    1,
                    MAX_SECS,
                )?;
                if build.command.first().is_none_or(|c| c.is_empty()) {
                    return Err((format!("{at}.command"), "must name a command".into()));
                }
            }
            if let Some(check) = &surface.verify {
                in_range(
                    &format!("{key}.verify.timeout_secs"),
                    check.timeout_secs,
                    1,
                    MAX_SECS,
                )?;
                in_range(
                    &format!("{key}.verify.status"),
                    check.status.into(),
                    100,
                    599,
                )?;
            }
            for (i, service) in surface.services.iter().enumerate() {
                self.known_service(service)
                    .map_err(|e| (format!("{key}.services[{i}]"), e))?;
                // Everything but the image is known now: a service whose
                // compose definition cannot become a container is refused
                // before a deploy builds or changes anything. (On a swarm,
                // `docker stack deploy` makes the service spec.)
                if m.project.engine == EngineKind::Swarm {
                    continue;
                }
                crate::desired::desired(&self.compose, service, "image").map_err(|e| {
                    let at = &self.compose.services[service].location;
                    (format!("{key}.services[{i}]"), format!("{at}: {e:#}"))
                })?;
            }
            for (i, dep) in surface.depends_on.iter().enumerate() {
                if !m.surface.contains_key(dep) {
                    return Err((
                        format!("{key}.depends_on[{i}]"),
                        format!("no surface named `{dep}`; surfaces: {}", keys(&m.surface)),
                    ));
                }
            }
            for (i, step) in surface.step.iter().enumerate() {
                let key = format!("{key}.step[{i}]");
                self.validate_use(&key, &step.plugin, &step.config, &step.grants)?;
            }
        }
        for (name, watch) in &m.watch {
            let key = format!("watch.{name}");
            in_range(
                &format!("{key}.interval_ms"),
                watch.interval_ms,
                1,
                MAX_SECS * 1000,
            )?;
            self.validate_use(&key, &watch.plugin, &watch.config, &watch.grants)?;
        }
        Ok(())
    }

    /// A step or watcher: its plugin exists, its config is a table, its
    /// grants resolve.
    fn validate_use(
        &self,
        key: &str,
        plugin: &str,
        config: &serde_json::Value,
        grants: &GrantSpec,
    ) -> Result<(), (String, String)> {
        let plugins = &self.manifest.plugins;
        if !plugins.contains_key(plugin) {
            return Err((
                format!("{key}.plugin"),
                format!(
                    "no plugin named `{plugin}`; add [plugins.{plugin}] or use one of: {}",
                    keys(plugins)
                ),
            ));
        }
        if !config.is_object() {
            return Err((format!("{key}.config"), "must be a table".into()));
        }
        self.grants(grants)
            .map_err(|(k, e)| (format!("{key}.grants.{k}"), e))?;
        Ok(())
    }

    fn known_service(&self, service: &str) -> Result<(), String> {
        if let Some(def) = self.compose.service(service) {
            if def.active {
                return Ok(());
            }
            return Err(format!(
                "service `{service}` ({}) is only in profiles {}; activate one with project.profiles or COMPOSE_PROFILES",
                def.location,
                def.service.profiles.join(", ")
            ));
        }
        Err(format!(
            "`{service}` is not a service in {} (services: {})",
            self.compose.files_display(),
            self.compose.service_names()
        ))
    }

    /// Resolve a step's grants (for a deploy; [`Grants::planning`] gives
    /// the plan's). The error is (key relative to `grants`, message).
    pub fn grants(&self, spec: &GrantSpec) -> Result<Grants, (String, String)> {
        let mut docker = DockerGrant::default();
        for (i, grant) in spec.docker.iter().enumerate() {
            self.known_service(grant.service())
                .map_err(|e| (format!("docker[{i}]"), e))?;
            let exec = match grant {
                DockerGrantSpec::Service(_) => None,
                DockerGrantSpec::Narrowed(n) => Some(
                    ExecCommand::parse_all(&n.exec)
                        .map_err(|e| (format!("docker[{i}].exec"), e))?,
                ),
            };
            docker.services.push(ServiceGrant {
                service: grant.service().to_owned(),
                exec,
            });
        }
        let probe = spec
            .probe
            .iter()
            .enumerate()
            .map(|(i, p)| ProbeGrant::parse(p).map_err(|e| (format!("probe[{i}]"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut fs = Vec::new();
        for (i, g) in spec.fs.iter().enumerate() {
            let key = format!("fs[{i}]");
            if !g.guest.starts_with('/') || g.guest.split('/').any(|c| c == "..") {
                return Err((
                    format!("{key}.guest"),
                    format!("`{}` must be an absolute path without `..`", g.guest),
                ));
            }
            let host = self.grant_host(&g.host).map_err(|e| {
                (
                    format!("{key}.host"),
                    format!(
                        "`{}`: {e}; create the directory or fix the path",
                        g.host.display()
                    ),
                )
            })?;
            if !host.is_dir() && !self.built(&g.host) {
                return Err((
                    format!("{key}.host"),
                    format!("`{}` is not a directory", g.host.display()),
                ));
            }
            fs.push(FsGrant {
                host,
                guest: g.guest.clone(),
                writable: g.mode == FsMode::Rw,
            });
        }
        Ok(Grants {
            docker,
            probe,
            fs,
            ..Grants::default()
        })
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(&self.manifest.project.state_dir)
    }

    /// A warning, by watcher, for each service a watcher may move (its
    /// grants.docker) that no surface with steps lists: after the watcher
    /// recreates it, no step resolves it again, and nginx keeps its old
    /// address.
    pub fn unrouted_watches(&self) -> Vec<(&str, String)> {
        let surfaces = &self.manifest.surface;
        let routed = |svc: &str| {
            surfaces
                .values()
                .any(|s| !s.step.is_empty() && s.services.iter().any(|x| x == svc))
        };
        let mut warnings = Vec::new();
        for (watcher, spec) in &self.manifest.watch {
            for service in spec.grants.docker.iter().map(DockerGrantSpec::service) {
                if routed(service) {
                    continue;
                }
                // The surface whose steps reach the service (nginx's, say).
                let reaching = surfaces.iter().find(|(_, s)| {
                    let granted =
                        |step: &StepSpec| step.grants.docker.iter().any(|g| g.service() == service);
                    s.step.iter().any(granted)
                });
                let add = match reaching {
                    Some((name, _)) => format!("add \"{service}\" to surface.{name}.services"),
                    None => format!(
                        "add \"{service}\" to the services of the surface whose steps route to it"
                    ),
                };
                warnings.push((watcher.as_str(), format!(
                    "watch.{watcher} may recreate `{service}`, which no surface with steps lists: \
                     after it moves, nothing resolves its new address (nginx keeps the old one); {add}"
                )));
            }
        }
        warnings
    }

    /// Whether `host` is what a surface's build writes: it may not exist
    /// before the build first runs.
    fn built(&self, host: &Path) -> bool {
        self.manifest
            .surface
            .values()
            .filter_map(|s| s.build.as_ref())
            .any(|b| b.output.components().eq(host.components()))
    }

    /// A directory grant's host, canonical; a build's output that does not
    /// exist yet is its canonical parent's entry, preopened once it does.
    fn grant_host(&self, host: &Path) -> std::io::Result<PathBuf> {
        let path = self.dir.join(host);
        match std::fs::canonicalize(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.built(host) => {
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    return Err(e);
                };
                Ok(std::fs::canonicalize(parent)?.join(name))
            }
            resolved => resolved,
        }
    }
}

fn keys<V>(map: &IndexMap<String, V>) -> String {
    if map.is_empty() {
        return "(none defined)".into();
    }
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The JSON Schema of slipway.toml, as checked in under `schema/`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Manifest);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// Replace `${VAR}` with the variable's value; an unset variable is an error.
pub fn interpolate(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
        let var = &after[..end];
        let value =
            std::env::var(var).map_err(|_| format!("`${{{var}}}` is used but {var} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn project(manifest: &str) -> (tempfile::TempDir, Result<Loaded, ManifestError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("docker-compose.yml"),
            "services:\n  api:\n    build: ./api\n  nginx:\n    image: nginx\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        let file = dir.path().join("slipway.toml");
        std::fs::write(&file, manifest).unwrap();
        let loaded = Loaded::load(&file);
        (dir, loaded)
    }

    const GOOD: &str = r#"
[project]
name = "honeychat"

[plugins.nginx]
path = "nginx.wasm"

[surface.backend]
services = ["api"]
[[surface.backend.step]]
plugin = "nginx"
config = { container = "nginx" }
grants = { docker = ["nginx", "api"], probe = ["nginx:80"], fs = [{ host = "site", guest = "/site", mode = "rw" }] }

[surface.website]
depends_on = ["backend"]
"#;

    #[test]
    fn a_good_manifest_loads_in_order() {
        let (_dir, loaded) = project(GOOD);
        let loaded = loaded.unwrap();
        let names: Vec<&String> = loaded.manifest.surface.keys().collect();
        assert_eq!(names, ["backend", "website"]);
        let step = &loaded.manifest.surface["backend"].step[0];
        assert_eq!(step.config["container"], "nginx");
        let grants = loaded.grants(&step.grants).unwrap();
        assert!(
            grants.fs[0].writable,
            "plan mode is the fs capability's to apply"
        );
        assert_eq!(grants.docker.names().collect::<Vec<_>>(), ["nginx", "api"]);
    }

    /// A watcher that may move a service no surface with steps lists is
    /// warned about, with the surface whose steps reach it.
    #[test]
    fn a_watched_service_no_surface_routes_is_warned_about() {
        let watcher = "\n[plugins.w]\npath = \"w.wasm\"\n[watch.gpu]\nplugin = \"w\"\ngrants = { docker = [\"api\"] }\n";
        let (_dir, routed) = project(&format!("{GOOD}{watcher}"));
        assert_eq!(routed.unwrap().unrouted_watches(), []);
        let unlisted = GOOD.replace("services = [\"api\"]", "services = []");
        let (_dir, loaded) = project(&format!("{unlisted}{watcher}"));
        let loaded = loaded.unwrap();
        let warnings = loaded.unrouted_watches();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (watcher, warning) = &warnings[0];
        assert_eq!(*watcher, "gpu");
        assert!(
            warning.starts_with("watch.gpu may recreate `api`, which no surface with steps lists")
                && warning.ends_with("add \"api\" to surface.backend.services"),
            "{warning}"
        );
    }

    fn error_of(manifest: &str) -> String {
        project(manifest).1.unwrap_err().to_string()
    }

    #[test]
    fn a_swarm_needs_a_registry_and_no_directory_grants() {
        let swarm = |project: &str| GOOD.replace("name = \"honeychat\"", project);
        let msg = error_of(&swarm("name = \"h\"\nengine = \"swarm\""));
        assert!(
            msg.contains("project.registry") && msg.contains("host:port"),
            "{msg}"
        );
        let msg = error_of(&swarm("name = \"h\"\nregistry = \"r:5000\""));
        assert!(msg.contains("only a swarm pushes images"), "{msg}");
        for bad in ["", "r:5000/x", "http://r:5000"] {
            let msg = error_of(&swarm(&format!(
                "name = \"h\"\nengine = \"swarm\"\nregistry = \"{bad}\""
            )));
            assert!(msg.contains("is not a registry address"), "{bad}: {msg}");
        }
        let msg = error_of(&swarm(
            "name = \"h\"\nengine = \"swarm\"\nregistry = \"r:5000\"",
        ));
        assert!(
            msg.contains("surface.backend.step[0].grants.fs")
                && msg.contains("surface.backend.site_image = { service")
                && msg.contains("docs/swarm.md"),
            "{msg}"
        );
        // A step that reaches services and hosts only runs on a swarm.
        let (_dir, loaded) = project(
            "[project]\nname = \"h\"\nengine = \"swarm\"\nregistry = \"r:5000\"\n\
             [plugins]\nnginx = { path = \"nginx.wasm\" }\n\
             [surface.backend]\nservices = [\"api\"]\n\
             [[surface.backend.step]]\nplugin = \"nginx\"\n\
             grants = { docker = [\"nginx\", \"api\"], probe = [\"nginx:80\"] }\n",
        );
        assert_eq!(loaded.unwrap().manifest.project.engine, EngineKind::Swarm);
    }

    #[test]
    fn a_site_image_ships_a_directory_a_step_writes_and_only_on_a_swarm() {
        let swarm = "name = \"h\"\nengine = \"swarm\"\nregistry = \"r:5000\"";
        let with = |project: &str, site: &str| {
            GOOD.replace("name = \"honeychat\"", project).replace(
                "services = [\"api\"]",
                &format!("services = [\"api\"]\nsite_image = {{ {site} }}"),
            )
        };
        let good = "service = \"api\", site = \"site\", path = \"/srv/site\"";
        let (_dir, loaded) = project(&with(swarm, good));
        let site = loaded.unwrap().manifest.surface["backend"]
            .site_image
            .clone();
        assert_eq!(site.unwrap().path, "/srv/site");
        let msg = error_of(&with("name = \"h\"", good));
        assert!(
            msg.contains("surface.backend.site_image") && msg.contains("only a swarm"),
            "{msg}"
        );
        let cases = [
            (
                "service = \"nginx\", site = \"site\", path = \"/srv\"",
                "site_image.service",
            ),
            (
                "service = \"api\", site = \"other\", path = \"/srv\"",
                "site_image.site",
            ),
            (
                "service = \"api\", site = \"site\", path = \"srv\"",
                "site_image.path",
            ),
            (
                "service = \"api\", site = \"site\", path = \"/srv/../etc\"",
                "site_image.path",
            ),
            (
                "service = \"api\", site = \"site\", path = \"/srv\", last = [\"/sw.js\"]",
                "site_image.last[0]",
            ),
            (
                "service = \"api\", site = \"site\", path = \"/srv\", last = [\"a/../sw.js\"]",
                "site_image.last[0]",
            ),
        ];
        for (site, key) in cases {
            let msg = error_of(&with(swarm, site));
            assert!(
                msg.contains(&format!("surface.backend.{key}")),
                "{site}: {msg}"
            );
        }
        // A read-only grant of the directory is not where a step publishes.
        let ro = with(swarm, good).replace("mode = \"rw\"", "mode = \"ro\"");
        assert!(error_of(&ro).contains("site_image.site"));
    }

    #[test]
    fn absurd_durations_and_sizes_are_refused_by_key() {
        const MAX: &str = "18446744073709551615";
        let plugin = |line: &str| {
            GOOD.replace(
                "path = \"nginx.wasm\"",
                &format!("path = \"nginx.wasm\"\n{line}"),
            )
        };
        let backend = |line: &str| {
            GOOD.replace(
                "services = [\"api\"]",
                &format!("services = [\"api\"]\n{line}"),
            )
        };
        let watch = |line: &str| format!("{GOOD}\n[watch.vast]\nplugin = \"nginx\"\n{line}\n");
        let cases = [
            (
                plugin(&format!("timeout_secs = {MAX}")),
                "plugins.nginx.timeout_secs",
                MAX,
                "1..=86400",
            ),
            (
                plugin("timeout_secs = 0"),
                "plugins.nginx.timeout_secs",
                "0",
                "1..=86400",
            ),
            (
                plugin(&format!("memory_mb = {MAX}")),
                "plugins.nginx.memory_mb",
                MAX,
                "1..=4096",
            ),
            (
                plugin("memory_mb = 4097"),
                "plugins.nginx.memory_mb",
                "4097",
                "1..=4096",
            ),
            (
                backend(&format!("ready_timeout_secs = {MAX}")),
                "surface.backend.ready_timeout_secs",
                MAX,
                "1..=86400",
            ),
            (
                backend(&format!("settle_secs = {MAX}")),
                "surface.backend.settle_secs",
                MAX,
                "0..=86400",
            ),
            (
                backend(&format!("settle = {{ api = {MAX} }}")),
                "surface.backend.settle.api",
                MAX,
                "0..=86400",
            ),
            (
                backend(&format!(
                    "release = {{ service = \"api\", command = [\"true\"], timeout_secs = {MAX} }}"
                )),
                "surface.backend.release.timeout_secs",
                MAX,
                "1..=86400",
            ),
            (
                backend(&format!(
                    "verify = {{ url = \"http://x/\", timeout_secs = {MAX} }}"
                )),
                "surface.backend.verify.timeout_secs",
                MAX,
                "1..=86400",
            ),
            (
                backend("verify = { url = \"http://x/\", status = 0 }"),
                "surface.backend.verify.status",
                "0",
                "100..=599",
            ),
            (
                watch(&format!("interval_ms = {MAX}")),
                "watch.vast.interval_ms",
                MAX,
                "1..=86400000",
            ),
            (
                watch("interval_ms = 0"),
                "watch.vast.interval_ms",
                "0",
                "1..=86400000",
            ),
        ];
        for (manifest, key, value, range) in cases {
            let msg = error_of(&manifest);
            assert!(
                msg.contains(&format!("`{key}`: {value} is out of range ({range})")),
                "{key}: {msg}"
            );
        }
        // The largest values that are in range load.
        let (_dir, loaded) = project(&plugin("timeout_secs = 86400\nmemory_mb = 4096"));
        loaded.unwrap();

        let msg = error_of(&GOOD.replace(
            "services = [\"api\"]",
            "services = [\"api\"]\nsettle = { nginx = 3 }",
        ));
        assert!(msg.contains("`surface.backend.settle.nginx`"), "{msg}");
        let msg = error_of(&GOOD.replace(
            "services = [\"api\"]",
            "services = [\"api\"]\nupdate_order = { api = \"blue-green\" }",
        ));
        assert!(
            msg.contains("`surface.backend.update_order.api`") && msg.contains("start-first"),
            "{msg}"
        );
    }

    #[test]
    fn an_unknown_service_names_the_file_and_line() {
        let msg =
            error_of(&GOOD.replace("services = [\"api\"]", "services = [\"api\", \"wrker\"]"));
        assert!(
            msg.contains("slipway.toml:9: `surface.backend.services[1]`") && msg.contains("wrker"),
            "{msg}"
        );
        assert_eq!(
            key_line(GOOD, "surface.backend.step[0].grants.docker[0]"),
            Some(13)
        );
        assert_eq!(key_line(GOOD, "surface.website.nope"), Some(15));
        assert_eq!(key_line(GOOD, "nothing.here"), None);
    }

    #[test]
    fn errors_point_at_the_key() {
        let cases = [
            (
                GOOD.replace("plugin = \"nginx\"", "plugin = \"ngnix\""),
                "surface.backend.step[0].plugin",
            ),
            (
                GOOD.replace("services = [\"api\"]", "services = [\"api\", \"apy\"]"),
                "surface.backend.services[1]",
            ),
            (
                GOOD.replace("depends_on = [\"backend\"]", "depends_on = [\"bakend\"]"),
                "surface.website.depends_on[0]",
            ),
            (
                GOOD.replace("docker = [\"nginx\", \"api\"]", "docker = [\"postgres\"]"),
                "surface.backend.step[0].grants.docker[0]",
            ),
            (
                GOOD.replace("probe = [\"nginx:80\"]", "probe = [\"nginx\"]"),
                "surface.backend.step[0].grants.probe[0]",
            ),
            (
                GOOD.replace("host = \"site\"", "host = \"nope\""),
                "surface.backend.step[0].grants.fs[0].host",
            ),
            (
                GOOD.replace("guest = \"/site\"", "guest = \"site\""),
                "surface.backend.step[0].grants.fs[0].guest",
            ),
            (
                GOOD.replace("name = \"honeychat\"", "name = \"Honey Chat\""),
                "project.name",
            ),
            (
                GOOD.replace(
                    "[surface.website]",
                    "[surface.website]\nbuild = { command = [], dir = \"site\", output = \"site/dist\" }",
                ),
                "surface.website.build.command",
            ),
            (
                GOOD.replace(
                    "[surface.website]",
                    "[surface.website]\nbuild = { command = [\"make\"], dir = \"site\", output = \"site/dist\", timeout_secs = 0 }",
                ),
                "surface.website.build.timeout_secs",
            ),
            (
                GOOD.replace(
                    "path = \"nginx.wasm\"",
                    "path = \"nginx.wasm\"\nsha256 = \"abc\"",
                ),
                "plugins.nginx.sha256",
            ),
        ];
        for (manifest, key) in cases {
            let msg = error_of(&manifest);
            assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        }
    }

    #[test]
    fn unknown_and_malformed_keys_are_refused_with_a_line() {
        let msg = error_of(&GOOD.replace("[surface.website]", "[surface.website]\nservics = []"));
        assert!(
            msg.contains("unknown field `servics`") && msg.contains("line"),
            "{msg}"
        );
        let msg = error_of("[project\nname=1");
        assert!(msg.contains("line 1"), "{msg}");
        let msg = error_of("[project]\nname = 3\n");
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn missing_files_are_clear() {
        let msg = Loaded::load(Path::new("/nonexistent/slipway.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("cannot read the manifest"), "{msg}");
        let msg = error_of(&GOOD.replace(
            "name = \"honeychat\"",
            "name = \"honeychat\"\ncompose_file = \"gone.yml\"",
        ));
        assert!(
            msg.contains("project.compose_file") && msg.contains("gone.yml"),
            "{msg}"
        );
    }

    /// `schema/<file>` must equal `generated`; `SLIPWAY_BLESS=1` rewrites it.
    pub(crate) fn assert_schema_in_sync(file: &str, generated: &str, command: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schema")
            .join(file);
        if std::env::var_os("SLIPWAY_BLESS").is_some() {
            std::fs::write(&path, generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "schema/{file} is stale; run `SLIPWAY_BLESS=1 cargo test -p slipway schema` or `{command} > schema/{file}`"
        );
    }

    #[test]
    fn schema_is_checked_in_and_in_sync() {
        assert_schema_in_sync("slipway.schema.json", &json_schema(), "slipway schema");
    }

    #[test]
    fn interpolation() {
        // SAFETY: tests in this module don't read this variable concurrently.
        unsafe { std::env::set_var("SLIPWAY_TEST_VERSION", "v9") };
        assert_eq!(
            interpolate("api ${SLIPWAY_TEST_VERSION}!").unwrap(),
            "api v9!"
        );
        assert_eq!(interpolate("plain").unwrap(), "plain");
        assert!(
            interpolate("${SLIPWAY_TEST_UNSET_XYZ}")
                .unwrap_err()
                .contains("not set")
        );
        assert!(interpolate("${oops").is_err());
    }
}
