//! The compose model, read as compose reads it: one or more files merged in
//! `-f` order, the project's `.env` (the shell environment wins), `${VAR}`
//! interpolation, YAML anchors and `<<` merge keys, `x-` fields, `env_file:`
//! and `profiles`. Keys slipway cannot carry onto a container are refused by
//! name, with file and line, before anything changes.

mod coerce;
mod config_hash;
mod extends;
mod include;
mod interpolate;
mod locate;
mod merge;
mod schema;

pub use config_hash::ComposeV2;
pub use interpolate::Vars;

use anyhow::{Context as _, Result, anyhow, bail};
use docker_compose_types::{BuildArgs, BuildStep, Service, SingleValue};
use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ComposeProject {
    /// The compose project name (label `com.docker.compose.project`).
    pub name: String,
    /// The project directory: the first file's directory, where `.env` is read.
    pub dir: PathBuf,
    /// The compose files, absolute, in `-f` order.
    pub files: Vec<PathBuf>,
    pub services: IndexMap<String, ServiceDef>,
    /// Keyed as in the file; holds the implicit `default` when a service uses it.
    pub networks: IndexMap<String, NetworkDef>,
    pub volumes: IndexMap<String, VolumeDef>,
    /// Top-level `secrets` and `configs`: where each name's bytes come from.
    pub secrets: IndexMap<String, FileSource>,
    pub configs: IndexMap<String, FileSource>,
}

/// Where a top-level secret's or config's bytes come from.
#[derive(Clone)]
pub enum FileSource {
    /// `file:`, absolute: bound read-only into the container.
    File(PathBuf),
    /// `content:`, or the value of the variable `environment:` names:
    /// copied into the container before it starts, as compose v2 does.
    Value(String),
    /// `environment:` naming a variable that is not set: an error for a
    /// service that uses it, as at compose v2's `up`. Says where it is.
    Unset { var: String, at: Location },
}

/// Never the value: it is a secret.
impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileSource::File(path) => write!(f, "File({})", path.display()),
            FileSource::Value(v) => write!(f, "Value({} bytes)", v.len()),
            FileSource::Unset { var, .. } => write!(f, "Unset({var})"),
        }
    }
}

/// One compose service, merged and interpolated.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    pub name: String,
    /// `image:` from the compose file, if set.
    pub image: Option<String>,
    pub build: Option<BuildDef>,
    /// The typed service. Relative paths (build context, bind sources) are
    /// absolute; `env_file` is folded into [`ServiceDef::environment`].
    pub service: Service,
    /// The container's environment: `env_file` values, then `environment:`;
    /// a bare `KEY` takes the shell's or `.env`'s value and is dropped when
    /// neither sets it, as compose does.
    pub environment: IndexMap<String, String>,
    pub extra: Extra,
    /// False when the service's profiles are all inactive.
    pub active: bool,
    pub location: Location,
}

/// Service keys the typed model lacks.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub cpus: Option<f64>,
    pub cpu_shares: Option<i64>,
    pub dns_search: Vec<String>,
    /// `deploy.update_config.order`, which the typed model drops.
    pub update_order: Option<UpdateOrder>,
    pub pids_limit: Option<i64>,
    /// `deploy.resources`, as compose v2 applies it outside a swarm.
    pub resources: Resources,
    /// `deploy.restart_policy` as a `restart:` value, which it overrides
    /// outside a swarm as compose v2 applies it.
    pub restart_policy: Option<String>,
    /// The service's `secrets` and `configs`.
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    /// `platform` (`os/arch[/variant]`): the image's build platform and the
    /// container's create platform, as compose v2 passes it.
    pub platform: Option<String>,
    pub pull_policy: PullPolicy,
}

/// `pull_policy`: when a deploy pulls the `image:` of a service that does
/// not build, before anything changes (compose v2's `mustPull`). A service
/// that builds is built on every deploy, whatever its policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// `missing` (or `if_not_present`, or unset): when there is no image.
    #[default]
    Missing,
    Always,
    Never,
    /// `build`: never pulled; the service must build.
    Build,
    /// `daily`, `weekly` or `every_<duration>`: when the image was tagged
    /// longer ago than this.
    Refresh(std::time::Duration),
}

impl PullPolicy {
    fn parse(text: &str) -> Result<PullPolicy, String> {
        const DAY: u64 = 24 * 3600;
        let every = |secs| Ok(PullPolicy::Refresh(std::time::Duration::from_secs(secs)));
        match text {
            "missing" | "if_not_present" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            "build" => Ok(PullPolicy::Build),
            "daily" => every(DAY),
            "weekly" => every(7 * DAY),
            _ => match text.strip_prefix("every_").map(humantime::parse_duration) {
                Some(Ok(d)) if !d.is_zero() => Ok(PullPolicy::Refresh(d)),
                _ => Err(format!(
                    "pull_policy: `{text}` is not a policy; use always, missing, never, build, \
                     daily, weekly or every_<duration> (every_12h)"
                )),
            },
        }
    }
}

/// A secret or config a service mounts: the top-level entry's name, the
/// path the service gives it, and the owner and mode of a copied value.
#[derive(Debug, Clone)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// Permission bits, from a decimal number or an octal string (`0440`).
    pub mode: Option<u32>,
}

/// `deploy.resources` outside a swarm: its limits stand for `mem_limit`,
/// `cpus` and `pids_limit` and its memory reservation for
/// `mem_reservation`, which must agree with them when both are set; a CPU
/// reservation has no container setting and is left out, as compose v2
/// leaves it.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Whether `limits` and `reservations` are there, even empty.
    pub limits: bool,
    pub reservations: bool,
    pub cpus: Option<f64>,
    pub memory: Option<String>,
    pub pids: Option<i64>,
    pub memory_reservation: Option<String>,
}

/// How a replacement overlaps the container it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOrder {
    /// The new container starts and becomes ready before the old one stops.
    StartFirst,
    /// The old container stops before the new one starts.
    StopFirst,
}

impl UpdateOrder {
    pub fn parse(text: &str) -> Result<UpdateOrder, String> {
        match text {
            "start-first" => Ok(UpdateOrder::StartFirst),
            "stop-first" => Ok(UpdateOrder::StopFirst),
            other => Err(format!(
                "update order `{other}` is neither `start-first` nor `stop-first`"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UpdateOrder::StartFirst => "start-first",
            UpdateOrder::StopFirst => "stop-first",
        }
    }
}

/// Where a service is first defined.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone)]
pub struct BuildDef {
    /// Absolute path of the build context.
    pub context: PathBuf,
    /// Dockerfile path relative to the context.
    pub dockerfile: String,
    pub args: HashMap<String, String>,
    pub target: Option<String>,
    /// The service's `platform`, which compose v2 builds for.
    pub platform: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct NetworkDef {
    /// The engine's name: `<project>_<key>`, `name:`, or the external name.
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: IndexMap<String, String>,
    pub driver_opts: IndexMap<String, String>,
    pub ipam: Vec<IpamPool>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct VolumeDef {
    /// The engine's name: `<project>_<key>`, `name:`, or the external name.
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: IndexMap<String, String>,
    pub labels: IndexMap<String, String>,
}

/// What [`ComposeProject::load`] needs besides the files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Profiles to activate, added to `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// The files are a Swarm stack's: `deploy:` is read by
    /// `docker stack deploy`, so all of it is accepted.
    pub swarm: bool,
}

/// One file, parsed, checked, interpolated and normalized.
struct FileModel {
    path: PathBuf,
    text: String,
    root: Mapping,
}

impl ComposeProject {
    pub fn load(files: &[PathBuf], project: &str, options: &LoadOptions) -> Result<ComposeProject> {
        let first = files
            .first()
            .ok_or_else(|| anyhow!("no compose file given"))?;
        let dir = first
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("cannot read compose file {}", first.display()))?;
        let vars = project_vars(&dir)?;
        let mut parsed = Vec::new();
        let mut paths = Vec::new();
        for file in files {
            let model = FileModel::read(&dir.join(file), &vars, options.swarm, 0)?;
            parsed.extend(include::read_all(&model, options.swarm, 0)?);
            paths.push(model.path.clone());
            parsed.push(model);
        }
        let profiles = active_profiles(&vars, &options.profiles);
        let mut project = assemble(project, dir, parsed, &vars, &profiles)?;
        // The files given, as compose records them; not those they include.
        project.files = paths;
        Ok(project)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceDef> {
        self.services.get(name)
    }

    pub fn service_names(&self) -> String {
        let names: Vec<&str> = self.services.keys().map(String::as_str).collect();
        names.join(", ")
    }

    /// The files, for messages: `a.yml + b.yml`.
    pub fn files_display(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        names.join(" + ")
    }
}

impl ServiceDef {
    /// The services this one `depends_on`, in either of compose's forms.
    pub fn depends_on(&self) -> Vec<String> {
        use docker_compose_types::DependsOnOptions;
        match &self.service.depends_on {
            DependsOnOptions::Simple(names) => names.clone(),
            DependsOnOptions::Conditional(map) => map.keys().cloned().collect(),
        }
    }

    /// Whether the service `depends_on` `dependency` with `restart: true`:
    /// compose v2 restarts it when it recreates the dependency.
    pub fn restarts_with(&self, dependency: &str) -> bool {
        use docker_compose_types::DependsOnOptions;
        match &self.service.depends_on {
            DependsOnOptions::Simple(_) => false,
            DependsOnOptions::Conditional(map) => {
                map.get(dependency).is_some_and(|c| c.restart == Some(true))
            }
        }
    }

    /// The tag compose v2 gives the service's image: `image:` when set,
    /// otherwise `<project>-<service>`.
    pub fn image_tag(&self, project: &str) -> String {
        match &self.image {
            Some(image) => image.clone(),
            None => format!("{project}-{}", self.name),
        }
    }
}

/// The `.env` values of a project directory that the shell does not set:
/// what a tool that reads only the shell's variables (`docker stack
/// deploy`) must be given to interpolate as compose does.
pub fn dotenv_only(dir: &Path) -> Result<Vec<(String, String)>> {
    let env_path = dir.join(".env");
    if !env_path.is_file() {
        return Ok(Vec::new());
    }
    let values = read_env_file(&env_path, &shell_vars())?;
    Ok(values
        .into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect())
}

/// The project's `.env`, overridden by the shell environment.
fn project_vars(dir: &Path) -> Result<Vars> {
    let shell = shell_vars();
    let mut vars = IndexMap::new();
    let env_path = dir.join(".env");
    if env_path.is_file() {
        for (k, v) in read_env_file(&env_path, &shell)? {
            vars.insert(k, v);
        }
    }
    vars.extend(shell.0);
    Ok(Vars(vars))
}

/// The shell's variables; one that is not UTF-8 cannot be interpolated
/// into YAML text and is left out (`std::env::vars` would panic on it).
fn shell_vars() -> Vars {
    Vars(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    )
}

/// A `.env` or `env_file:` file, as compose v2 reads it: `KEY=value` lines,
/// `#` comments, an optional `export `, values unquoted (spaces kept, a `#`
/// starts a comment), single-quoted (literal) or double-quoted (`\n`, `\t`,
/// `\"` and `\\` escapes). Unquoted and double-quoted values expand
/// `${VAR}` as the compose file does, from `outer` first, then from the
/// file's earlier lines; a bare `KEY` line takes its value from `outer`
/// and is left out when `outer` lacks it. `dotenvy` refuses unquoted
/// spaces, which compose accepts, so the format is read here.
fn read_env_file(path: &Path, outer: &Vars) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    let mut scope = Vars(outer.0.clone());
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), env_value(v.trim_start(), &scope)),
            None => match outer.get(line) {
                Some(v) => (line, Some(v.to_owned())),
                None => continue,
            },
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("{}: not a `KEY=value` line: `{line}`", at());
        }
        let value = value.ok_or_else(|| anyhow!("{}: not a `KEY=value` line: `{line}`", at()))?;
        scope
            .0
            .entry(key.to_owned())
            .or_insert_with(|| value.clone());
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// A value, unquoted and expanded; `None` when a quote is not closed. A
/// value that does not interpolate (`pa$word`, say) stays as written, as
/// compose v2 keeps it.
fn env_value(raw: &str, scope: &Vars) -> Option<String> {
    let expand = |text: &str| {
        interpolate::interpolate(text, scope, &mut Vec::new()).unwrap_or_else(|_| text.to_owned())
    };
    if let Some(rest) = raw.strip_prefix('\'') {
        return rest.find('\'').map(|end| rest[..end].to_owned());
    }
    if let Some(rest) = raw.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(expand(&out)),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => return None,
                },
                c => out.push(c),
            }
        }
        return None;
    }
    let value = raw.split('#').next().unwrap_or_default();
    Some(expand(value.trim_end()))
}

fn active_profiles(vars: &Vars, extra: &[String]) -> Vec<String> {
    let mut profiles: Vec<String> = vars
        .get("COMPOSE_PROFILES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    profiles.extend(extra.iter().cloned());
    profiles
}

impl FileModel {
    /// Read, check, interpolate and normalize one file; `depth` counts the
    /// files that extend services of this one.
    fn read(path: &Path, vars: &Vars, swarm: bool, depth: usize) -> Result<FileModel> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read compose file {}", path.display()))?;
        let mut value: Value = serde_yaml::from_str(&text).map_err(|e| syntax_error(path, &e))?;
        merge::apply_merges(&mut value).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let Value::Mapping(mut root) = value else {
            bail!(
                "{}: a compose file is a mapping with `services:`",
                path.display()
            );
        };
        let file = FileModel {
            path: path.to_owned(),
            text,
            root: Mapping::new(),
        };
        drop_extensions(&mut root);
        schema::check(&root, swarm).map_err(|(keys, message)| file.error(&keys, &message))?;
        let base = path.parent().unwrap_or(Path::new("/")).to_owned();
        let mut unset = Vec::new();
        let mut keys = Vec::new();
        interpolate_all(&mut root, vars, &mut keys, &mut unset)
            .map_err(|(keys, message)| file.error(&keys, &message))?;
        coerce::apply(&mut root).map_err(|(keys, message)| file.error(&keys, &message))?;
        if !swarm {
            one_replica(&root).map_err(|(keys, message)| file.error(&keys, &message))?;
        }
        for name in unset {
            tracing::warn!(
                "{}: variable {name} is not set; it defaults to an empty string",
                path.display()
            );
        }
        if let Some(Value::Mapping(services)) = root.get_mut("services") {
            for (_, service) in services.iter_mut() {
                if let Value::Mapping(service) = service {
                    merge::normalize_service(service);
                    resolve_build_args(service, vars);
                    absolutize(service, &base);
                }
            }
        }
        for section in ["secrets", "configs"] {
            if let Some(Value::Mapping(items)) = root.get_mut(section) {
                for (_, def) in items.iter_mut() {
                    if let Some(Value::String(f)) = def.get_mut("file") {
                        *f = clean_join(&base, f);
                    }
                }
            }
        }
        let mut model = FileModel { root, ..file };
        extends::resolve(&mut model, vars, swarm, depth)?;
        Ok(model)
    }

    /// An error at a key path, with the file and line.
    fn error(&self, keys: &[String], message: &str) -> anyhow::Error {
        let path: Vec<&str> = keys.iter().map(String::as_str).collect();
        let line = locate::line_of(&self.text, &path).unwrap_or(1);
        anyhow!(
            "{}:{line}: `{}`: {message}",
            self.path.display(),
            keys.join(".")
        )
    }

    fn line_of(&self, keys: &[&str]) -> usize {
        locate::line_of(&self.text, keys).unwrap_or(1)
    }

    fn location(&self, keys: &[&str]) -> Location {
        Location {
            file: self.path.clone(),
            line: self.line_of(keys),
        }
    }
}

/// Where the last of the merged files that sets `keys` sets it: the value
/// the merge kept.
fn last_setting(files: &[FileModel], keys: &[&str]) -> Option<Location> {
    let (first, rest) = keys.split_first()?;
    let sets = |f: &&FileModel| {
        let value = f.root.get(*first);
        rest.iter()
            .fold(value, |v, k| v.and_then(|v| v.get(*k)))
            .is_some()
    };
    files.iter().rev().find(sets).map(|f| f.location(keys))
}

/// Outside a swarm compose v2 runs `deploy.replicas` containers of a
/// service; slipway runs one.
fn one_replica(root: &Mapping) -> Result<(), KeyError> {
    let Some(Value::Mapping(services)) = root.get("services") else {
        return Ok(());
    };
    for (name, service) in services {
        match service.get("deploy").and_then(|d| d.get("replicas")) {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_i64() == Some(1) => {}
            Some(other) => {
                let name = merge::scalar_text(name);
                let keys = ["services", &name, "deploy", "replicas"];
                return Err((
                    keys.iter().map(|k| (*k).to_owned()).collect(),
                    format!(
                        "`{}` replicas: slipway runs one container per service; set 1 or remove it",
                        merge::scalar_text(other)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn syntax_error(path: &Path, e: &serde_yaml::Error) -> anyhow::Error {
    match e.location() {
        Some(at) => anyhow!(
            "{}:{}: not valid YAML (column {}): {e}",
            path.display(),
            at.line(),
            at.column()
        ),
        None => anyhow!("{}: not valid YAML: {e}", path.display()),
    }
}

/// `x-` keys are the user's own: dropped at every level, as compose does.
fn drop_extensions(map: &mut Mapping) {
    map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    for (_, v) in map.iter_mut() {
        if let Value::Mapping(m) = v {
            drop_extensions(m);
        }
    }
}

type KeyError = (Vec<String>, String);

/// Interpolate every string value, keeping the key path for errors.
fn interpolate_all(
    value: &mut Mapping,
    vars: &Vars,
    keys: &mut Vec<String>,
    unset: &mut Vec<String>,
) -> Result<(), KeyError> {
    for (k, v) in value.iter_mut() {
        keys.push(merge::scalar_text(k));
        interpolate_value(v, vars, keys, unset)?;
        keys.pop();
    }
    Ok(())
}

fn interpolate_value(
    v: &mut Value,
    vars: &Vars,
    keys: &mut Vec<String>,
    unset: &mut Vec<String>,
) -> Result<(), KeyError> {
    match v {
        Value::String(s) => {
            *s = interpolate::interpolate(s, vars, unset).map_err(|e| (keys.clone(), e))?;
        }
        Value::Mapping(m) => interpolate_all(m, vars, keys, unset)?,
        Value::Sequence(items) => {
            for item in items {
                interpolate_value(item, vars, keys, unset)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A bare build arg (`- NAME`, or `NAME:` without a value) takes its value
/// from the shell or `.env`, and is left out when neither sets it, so the
/// Dockerfile's default applies, as compose does.
fn resolve_build_args(service: &mut Mapping, vars: &Vars) {
    let Some(Value::Mapping(args)) = service.get_mut("build").and_then(|b| b.get_mut("args"))
    else {
        return;
    };
    args.retain(|name, value| {
        if value.is_null() {
            match vars.get(&merge::scalar_text(name)) {
                Some(v) => *value = Value::String(v.to_owned()),
                None => return false,
            }
        }
        true
    });
}

/// Paths in a file are relative to that file's directory: make them
/// absolute before files from different directories merge.
fn absolutize(service: &mut Mapping, base: &Path) {
    let join = |p: &str| -> String {
        match p.strip_prefix("~/") {
            Some(rest) => std::env::var("HOME")
                .map(|h| Path::new(&h).join(rest).display().to_string())
                .unwrap_or_else(|_| p.to_owned()),
            None => clean_join(base, p),
        }
    };
    if let Some(Value::Mapping(build)) = service.get_mut("build")
        && let Some(Value::String(context)) = build.get_mut("context")
        && !context.contains("://")
    {
        *context = join(context);
    }
    if let Some(Value::Sequence(files)) = service.get_mut("env_file") {
        for f in files.iter_mut() {
            let path = match f {
                Value::Mapping(long) => long.get_mut("path"),
                short => Some(short),
            };
            if let Some(Value::String(s)) = path {
                *s = join(s);
            }
        }
    }
    if let Some(Value::Sequence(volumes)) = service.get_mut("volumes") {
        for volume in volumes.iter_mut() {
            match volume {
                Value::String(s) if is_path(s) => {
                    let (source, rest) = s.split_once(':').unwrap_or((s.as_str(), ""));
                    let joined = join(source);
                    *s = if rest.is_empty() {
                        joined
                    } else {
                        format!("{joined}:{rest}")
                    };
                }
                Value::Mapping(m) if m.get("type").and_then(Value::as_str) == Some("bind") => {
                    if let Some(Value::String(source)) = m.get_mut("source") {
                        *source = join(source);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A short-syntax volume whose source is a host path, not a volume name.
fn is_path(volume: &str) -> bool {
    volume.contains(':')
        && (volume.starts_with('.') || volume.starts_with('/') || volume.starts_with('~'))
}

/// `base` joined with a relative path, `.` and `..` resolved lexically (the
/// path may not exist yet, and compose does not resolve symlinks either).
fn clean_join(base: &Path, rel: &str) -> String {
    lexical(&base.join(rel)).display().to_string()
}

/// `path` with `.` and `..` taken out without touching the filesystem.
pub(crate) fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Merge the files and turn the result into typed services.
fn assemble(
    project: &str,
    dir: PathBuf,
    files: Vec<FileModel>,
    vars: &Vars,
    profiles: &[String],
) -> Result<ComposeProject> {
    let mut services: IndexMap<String, (Mapping, usize)> = IndexMap::new();
    let mut networks = Mapping::new();
    let mut volumes = Mapping::new();
    let mut secrets = Mapping::new();
    let mut configs = Mapping::new();
    for (index, file) in files.iter().enumerate() {
        let root = &file.root;
        if let Some(Value::Mapping(s)) = root.get("services") {
            for (name, def) in s {
                let name = merge::scalar_text(name);
                let def = match def {
                    Value::Mapping(m) => m.clone(),
                    _ => Mapping::new(),
                };
                match services.get_mut(&name) {
                    Some((base, _)) => merge::merge_service(base, def),
                    None => {
                        services.insert(name, (def, index));
                    }
                }
            }
        }
        let sections = [
            ("networks", &mut networks),
            ("volumes", &mut volumes),
            ("secrets", &mut secrets),
            ("configs", &mut configs),
        ];
        for (section, into) in sections {
            if let Some(Value::Mapping(m)) = root.get(section) {
                merge::deep_merge(into, m.clone());
            }
        }
    }
    if services.is_empty() {
        bail!("{}: no services defined", files[0].path.display());
    }
    let mut out = IndexMap::new();
    for (name, (def, index)) in services {
        let file = &files[index];
        let location = Location {
            file: file.path.clone(),
            line: file.line_of(&["services", &name]),
        };
        // An env_file error points at the `env_file:` line of the last file
        // that sets it.
        let env_file_at = last_setting(&files, &["services", &name, "env_file"])
            .unwrap_or_else(|| location.clone());
        let service = service_def(&name, def, vars, profiles, location, env_file_at)?;
        out.insert(name, service);
    }
    let uses_default = out
        .values()
        .any(|s| s.service.network_mode.is_none() && network_keys(&s.service).is_empty());
    Ok(ComposeProject {
        networks: network_defs(project, &networks, uses_default)?,
        volumes: volume_defs(project, &volumes)?,
        secrets: file_defs(&secrets, "secrets", vars, &files),
        configs: file_defs(&configs, "configs", vars, &files),
        name: project.to_owned(),
        dir,
        files: files.into_iter().map(|f| f.path).collect(),
        services: out,
    })
}

/// The network keys a service joins, in its file's order.
pub fn network_keys(service: &Service) -> Vec<String> {
    use docker_compose_types::Networks;
    match &service.networks {
        Networks::Simple(list) => list.clone(),
        Networks::Advanced(map) => map.0.keys().cloned().collect(),
    }
}

fn service_def(
    name: &str,
    mut def: Mapping,
    vars: &Vars,
    profiles: &[String],
    location: Location,
    env_file_at: Location,
) -> Result<ServiceDef> {
    let at = |e: String| anyhow!("{location}: service `{name}`: {e}");
    let extra = Extra {
        cpus: take(&mut def, "cpus")
            .map(|v| number(&v, "cpus"))
            .transpose()
            .map_err(at)?,
        cpu_shares: take(&mut def, "cpu_shares")
            .map(|v| number(&v, "cpu_shares").map(|n| n as i64))
            .transpose()
            .map_err(at)?,
        dns_search: take(&mut def, "dns_search")
            .map(|v| string_list(&v))
            .unwrap_or_default(),
        update_order: update_order(&mut def)
            .map_err(|e| at(format!("deploy.update_config.order: {e}")))?,
        pids_limit: take(&mut def, "pids_limit")
            .map(|v| number(&v, "pids_limit").map(|n| n as i64))
            .transpose()
            .map_err(at)?,
        resources: resources(&def).map_err(at)?,
        restart_policy: restart_policy(&def).map_err(at)?,
        secrets: file_refs(take(&mut def, "secrets"), "secrets").map_err(at)?,
        configs: file_refs(take(&mut def, "configs"), "configs").map_err(at)?,
        platform: take(&mut def, "platform")
            .filter(|v| !v.is_null())
            .map(|v| merge::scalar_text(&v)),
        pull_policy: take(&mut def, "pull_policy")
            .filter(|v| !v.is_null())
            .map(|v| PullPolicy::parse(&merge::scalar_text(&v)))
            .transpose()
            .map_err(at)?
            .unwrap_or_default(),
    };
    // `attach` picks the services whose logs an attached `up` prints; a
    // deploy attaches to none.
    take(&mut def, "attach");
    // The rest of `deploy:` is Swarm's (the schema admits it only for a
    // stack); nothing here reads it, and the typed model lacks half its keys.
    take(&mut def, "deploy");
    let env_files = take(&mut def, "env_file")
        .map(|v| env_files(&v))
        .transpose()
        .map_err(|e| anyhow!("{env_file_at}: service `{name}`: env_file: {e}"))?
        .unwrap_or_default();
    // The path names the key a type error is at (`expose[0]`), which serde_yaml's
    // own message leaves out.
    let service: Service = serde_path_to_error::deserialize(Value::Mapping(def))
        .map_err(|e| at(format!("`{}`: {}", e.path(), e.inner())))?;
    let mut environment = IndexMap::new();
    for (file, required) in &env_files {
        if !required && !Path::new(file).exists() {
            continue;
        }
        let values = read_env_file(Path::new(file), vars)
            .map_err(|e| anyhow!("{env_file_at}: service `{name}`: env_file: {e:#}"))?;
        environment.extend(values);
    }
    for (key, value) in environment_entries(&service) {
        match value.or_else(|| vars.get(&key).map(str::to_owned)) {
            Some(v) => {
                environment.insert(key, v);
            }
            None => {
                environment.shift_remove(&key);
            }
        }
    }
    let build = match &service.build_ {
        None => None,
        Some(step) => Some(BuildDef {
            platform: extra.platform.clone(),
            ..build_def(name, step).map_err(|e| at(format!("{e:#}")))?
        }),
    };
    if build.is_none() && service.image.is_none() {
        return Err(at("has neither `build` nor `image`".into()));
    }
    if build.is_none() && extra.pull_policy == PullPolicy::Build {
        return Err(at(
            "pull_policy: `build` needs a `build:` section to build the image from".into(),
        ));
    }
    let active =
        service.profiles.is_empty() || service.profiles.iter().any(|p| profiles.contains(p));
    Ok(ServiceDef {
        name: name.to_owned(),
        image: service.image.clone(),
        build,
        service,
        environment,
        extra,
        active,
        location,
    })
}

/// The `env_file` entries, each a path and whether it must exist: a path
/// (required), or compose's long form `{path, required}`.
fn env_files(v: &Value) -> Result<Vec<(String, bool)>, String> {
    let items = match v {
        Value::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    };
    items
        .iter()
        .map(|item| match item {
            Value::Mapping(long) => {
                let path = long
                    .get("path")
                    .map(merge::scalar_text)
                    .ok_or("an entry in the long form needs `path`")?;
                let required = match long.get("required") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(format!(
                            "`required` is true or false, not `{}`",
                            merge::scalar_text(other)
                        ));
                    }
                };
                Ok((path, required))
            }
            short => Ok((merge::scalar_text(short), true)),
        })
        .collect()
}

/// `deploy.resources.limits` and `.reservations`; the schema has refused
/// any other key outside a swarm.
fn resources(def: &Mapping) -> Result<Resources, String> {
    let section = |name: &str| {
        def.get("deploy")
            .and_then(|d| d.get("resources"))
            .and_then(|r| r.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (limits, reservations) = (section("limits"), section("reservations"));
    let text = |v: &Value, key: &str| v.get(key).filter(|v| !v.is_null()).map(merge::scalar_text);
    Ok(Resources {
        limits: !limits.is_null(),
        reservations: !reservations.is_null(),
        cpus: limits
            .get("cpus")
            .filter(|v| !v.is_null())
            .map(|v| number(v, "deploy.resources.limits.cpus"))
            .transpose()?,
        memory: text(&limits, "memory"),
        pids: limits
            .get("pids")
            .filter(|v| !v.is_null())
            .map(|v| number(v, "deploy.resources.limits.pids").map(|n| n as i64))
            .transpose()?,
        memory_reservation: text(&reservations, "memory"),
    })
}

/// A service's `secrets` or `configs` list: names, or `{source, target,
/// uid, gid, mode}`.
fn file_refs(list: Option<Value>, key: &str) -> Result<Vec<FileRef>, String> {
    let items = match list {
        None => return Ok(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(_) => return Err(format!("`{key}` is a list")),
    };
    items
        .iter()
        .map(|item| match item {
            Value::Mapping(long) => {
                let field = |k: &str| long.get(k).filter(|v| !v.is_null()).map(merge::scalar_text);
                let source = field("source").ok_or(format!("{key}: an entry needs `source`"))?;
                let mode = long.get("mode").filter(|v| !v.is_null());
                Ok(FileRef {
                    mode: mode.map(|m| file_mode(m, key, &source)).transpose()?,
                    target: field("target"),
                    uid: field("uid"),
                    gid: field("gid"),
                    source,
                })
            }
            short => Ok(FileRef {
                source: merge::scalar_text(short),
                target: None,
                uid: None,
                gid: None,
                mode: None,
            }),
        })
        .collect()
}

/// `deploy.restart_policy` in `restart:` terms: its condition (`any` when
/// unset, as the compose specification defaults it) named as the engine
/// names it, and `max_attempts` for `on-failure`, the one policy the
/// engine gives a retry count.
fn restart_policy(def: &Mapping) -> Result<Option<String>, String> {
    let Some(policy) = def
        .get("deploy")
        .and_then(|d| d.get("restart_policy"))
        .filter(|p| !p.is_null())
    else {
        return Ok(None);
    };
    let condition = policy
        .get("condition")
        .filter(|c| !c.is_null())
        .map_or("any".to_owned(), merge::scalar_text);
    let mode = match condition.as_str() {
        "none" | "no" => "no",
        "any" | "always" => "always",
        "on-failure" => "on-failure",
        "unless-stopped" => "unless-stopped",
        other => {
            return Err(format!(
                "deploy.restart_policy.condition `{other}`: must be none, on-failure or any"
            ));
        }
    };
    let attempts = policy
        .get("max_attempts")
        .filter(|a| !a.is_null())
        .map(|a| number(a, "deploy.restart_policy.max_attempts"))
        .transpose()?;
    Ok(Some(match attempts {
        Some(n) if mode == "on-failure" && n > 0.0 => format!("on-failure:{}", n as i64),
        _ => mode.to_owned(),
    }))
}

/// `deploy.update_config.order`, taken out of the mapping: the typed model
/// refuses the key, though compose defines it.
fn update_order(def: &mut Mapping) -> Result<Option<UpdateOrder>, String> {
    let order = def
        .get_mut("deploy")
        .and_then(|d| d.get_mut("update_config"))
        .and_then(|u| u.as_mapping_mut())
        .and_then(|u| u.remove("order"))
        .filter(|v| !v.is_null());
    order
        .map(|v| UpdateOrder::parse(&merge::scalar_text(&v)))
        .transpose()
}

fn take(def: &mut Mapping, key: &str) -> Option<Value> {
    def.remove(key).filter(|v| !v.is_null())
}

fn number(v: &Value, key: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("`{key}` must be a number, not `{}`", merge::scalar_text(v)))
}

fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(merge::scalar_text).collect(),
        other => vec![merge::scalar_text(other)],
    }
}

/// `environment:` as (key, value); `None` for a bare `KEY`.
fn environment_entries(service: &Service) -> Vec<(String, Option<String>)> {
    use docker_compose_types::Environment;
    match &service.environment {
        Environment::List(items) => items
            .iter()
            .map(|i| match i.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (i.clone(), None),
            })
            .collect(),
        Environment::KvPair(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(single_value)))
            .collect(),
    }
}

pub fn single_value(v: &SingleValue) -> String {
    v.to_string()
}

fn build_def(service: &str, step: &BuildStep) -> Result<BuildDef> {
    let (context, dockerfile, args, target) = match step {
        BuildStep::Simple(context) => (context.clone(), None, None, None),
        BuildStep::Advanced(adv) => {
            if adv.dockerfile_inline.is_some() {
                bail!(
                    "service `{service}`: `dockerfile_inline` is not supported; use a Dockerfile"
                );
            }
            (
                adv.context.clone(),
                adv.dockerfile.clone(),
                adv.args.clone(),
                adv.target.clone(),
            )
        }
    };
    let args = match args {
        None => HashMap::new(),
        Some(BuildArgs::Simple(arg)) => parse_args(std::iter::once(arg)),
        Some(BuildArgs::List(list)) => parse_args(list.into_iter()),
        Some(BuildArgs::KvPair(map)) => map.into_iter().collect(),
    };
    Ok(BuildDef {
        context: PathBuf::from(context),
        dockerfile: dockerfile.unwrap_or_else(|| "Dockerfile".to_owned()),
        args,
        target,
        platform: None,
    })
}

/// `NAME=value` items. A bare `NAME` was already resolved from the shell and
/// `.env`, or left out (`resolve_build_args`), when the list became a mapping.
fn parse_args(items: impl Iterator<Item = String>) -> HashMap<String, String> {
    items
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn network_defs(
    project: &str,
    networks: &Mapping,
    uses_default: bool,
) -> Result<IndexMap<String, NetworkDef>> {
    let mut out = IndexMap::new();
    if uses_default && !networks.contains_key("default") {
        out.insert(
            "default".to_owned(),
            NetworkDef {
                name: format!("{project}_default"),
                ..Default::default()
            },
        );
    }
    for (key, def) in networks {
        let key = merge::scalar_text(key);
        let empty = Mapping::new();
        let m = def.as_mapping().unwrap_or(&empty);
        let (name, external) = engine_name(project, &key, m);
        let ipam = m
            .get("ipam")
            .and_then(|i| i.get("config"))
            .and_then(Value::as_sequence)
            .map(|pools| pools.iter().map(ipam_pool).collect())
            .unwrap_or_default();
        out.insert(
            key,
            NetworkDef {
                name,
                external,
                driver: str_of(m, "driver"),
                internal: bool_of(m, "internal"),
                attachable: bool_of(m, "attachable"),
                enable_ipv6: bool_of(m, "enable_ipv6"),
                labels: string_map(m.get("labels")),
                driver_opts: string_map(m.get("driver_opts")),
                ipam,
            },
        );
    }
    Ok(out)
}

/// A `mode:` as compose-go reads it: a YAML number as it is (`0440`
/// unquoted is octal to YAML 1.1, and to slipway's loader a string), a
/// string in octal.
fn file_mode(mode: &Value, key: &str, source: &str) -> Result<u32, String> {
    let bad = || format!("{key} `{source}`: `mode` is a permission number such as 0440");
    match mode {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad),
        Value::String(s) => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            u32::from_str_radix(digits, 8).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Top-level `secrets` or `configs`: each name's source (the schema has
/// refused any other than `file`, `content` and `environment`).
fn file_defs(
    section: &Mapping,
    key: &str,
    vars: &Vars,
    files: &[FileModel],
) -> IndexMap<String, FileSource> {
    let mut out = IndexMap::new();
    for (name, def) in section {
        let name = merge::scalar_text(name);
        let field = |k: &str| def.get(k).filter(|v| !v.is_null()).map(merge::scalar_text);
        let source = if let Some(file) = field("file") {
            FileSource::File(PathBuf::from(file))
        } else if let Some(content) = field("content") {
            FileSource::Value(content)
        } else if let Some(var) = field("environment") {
            match vars.get(&var) {
                Some(value) => FileSource::Value(value.to_owned()),
                None => {
                    let at = last_setting(files, &[key, &name, "environment"]);
                    FileSource::Unset {
                        var,
                        at: at.unwrap_or_else(|| files[0].location(&[key, &name])),
                    }
                }
            }
        } else {
            continue;
        };
        out.insert(name, source);
    }
    out
}

fn volume_defs(project: &str, volumes: &Mapping) -> Result<IndexMap<String, VolumeDef>> {
    let mut out = IndexMap::new();
    for (key, def) in volumes {
        let key = merge::scalar_text(key);
        let empty = Mapping::new();
        let m = def.as_mapping().unwrap_or(&empty);
        let (name, external) = engine_name(project, &key, m);
        out.insert(
            key,
            VolumeDef {
                name,
                external,
                driver: str_of(m, "driver"),
                driver_opts: string_map(m.get("driver_opts")),
                labels: string_map(m.get("labels")),
            },
        );
    }
    Ok(out)
}

/// `<project>_<key>`, or `name:`, or the external name (`external: true`
/// uses `name:` or the key; the old `external: {name: …}` is honoured).
fn engine_name(project: &str, key: &str, m: &Mapping) -> (String, bool) {
    let name = str_of(m, "name");
    match m.get("external") {
        Some(Value::Bool(true)) => (name.unwrap_or_else(|| key.to_owned()), true),
        Some(Value::Mapping(ext)) => (
            str_of(ext, "name")
                .or(name)
                .unwrap_or_else(|| key.to_owned()),
            true,
        ),
        _ => (name.unwrap_or_else(|| format!("{project}_{key}")), false),
    }
}

fn ipam_pool(v: &Value) -> IpamPool {
    let empty = Mapping::new();
    let m = v.as_mapping().unwrap_or(&empty);
    IpamPool {
        subnet: str_of(m, "subnet"),
        gateway: str_of(m, "gateway"),
        ip_range: str_of(m, "ip_range"),
    }
}

fn str_of(m: &Mapping, key: &str) -> Option<String> {
    m.get(key).filter(|v| !v.is_null()).map(merge::scalar_text)
}

fn bool_of(m: &Mapping, key: &str) -> bool {
    matches!(m.get(key), Some(Value::Bool(true)))
}

fn string_map(v: Option<&Value>) -> IndexMap<String, String> {
    let mut v = v.cloned().unwrap_or(Value::Null);
    if let Value::Sequence(_) = v {
        let mut service = Mapping::new();
        service.insert("labels".into(), v);
        merge::normalize_service(&mut service);
        v = service.remove("labels").unwrap_or_default();
    }
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (merge::scalar_text(k), merge::scalar_text(v)))
            .collect(),
        _ => IndexMap::new(),
    }
}

#[cfg(test)]
mod tests;
