//! The container `docker-compose up` would create for a service, derived
//! from the compose model instead of cloned from an old container's
//! `docker inspect`.
//!
//! The reference is Debian's docker-compose 1.29.2 (Python) with docker-py
//! 5.0.3 talking API 1.41: `service.py` (`_get_container_create_options`,
//! `_get_container_host_config`, `build_container_labels`,
//! `build_default_networking_config`), `config/config.py`,
//! `config/types.py`, `network.py` and docker-py's `HostConfig`,
//! `ContainerConfig` and `utils/ports.py`. Where this module mirrors a
//! detail of those, the comment says which.
//!
//! A [`ContainerSpec`] is keyed by compose keys (so that [`ContainerSpec::changed_keys`]
//! can name them) but holds engine values: `K=V` strings, nanoseconds,
//! bytes, `80/tcp` port keys, engine network and volume names.

use crate::compose::{ComposeProject, FileSource, ServiceDef};
use anyhow::{Result, anyhow};
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountTmpfsOptions, MountType,
    MountVolumeOptions, NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy,
};
use docker_compose_types as dct;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// The `com.docker.compose.version` label: the Compose v2 release whose
/// containers slipway's are made like (names, labels, config-hash).
pub const COMPOSE_VERSION: &str = "2.40.3";

const LABEL_PROJECT: &str = "com.docker.compose.project";
const LABEL_SERVICE: &str = "com.docker.compose.service";
const LABEL_ONE_OFF: &str = "com.docker.compose.oneoff";
const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
const LABEL_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
const LABEL_VERSION: &str = "com.docker.compose.version";
const LABEL_DEPENDS_ON: &str = "com.docker.compose.depends_on";

/// Everything the container should be, in engine terms. Serialize is
/// stable (it is hashed and stored as JSON): maps the engine treats as
/// unordered are `BTreeMap`s, lists keep the file's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub service: String,
    /// `container_name`, else `<project>-<service>-1` (compose v2 naming).
    pub name: String,
    /// Config.Image: the tag, as compose passes `image_name`.
    pub image: String,
    /// Config.Hostname.
    pub hostname: Option<String>,
    /// Config.Domainname.
    pub domainname: Option<String>,
    /// Config.User.
    pub user: Option<String>,
    /// Config.Tty.
    pub tty: bool,
    /// Config.OpenStdin.
    pub stdin_open: bool,
    /// Config.Env, `KEY=value`, in compose's order.
    pub environment: Vec<String>,
    /// Config.Cmd; a string is split as `shlex.split` splits it.
    pub command: Option<Vec<String>>,
    /// Config.Entrypoint, split likewise.
    pub entrypoint: Option<Vec<String>>,
    /// Config.WorkingDir.
    pub working_dir: Option<String>,
    /// Config.Labels: the service's labels, then compose's own.
    pub labels: BTreeMap<String, String>,
    /// Config.StopSignal.
    pub stop_signal: Option<String>,
    /// Config.StopTimeout, whole seconds.
    pub stop_grace_period: Option<i64>,
    /// Config.Healthcheck.
    pub healthcheck: Option<Health>,
    /// HostConfig.PortBindings, keyed `80/tcp`; every key is also in
    /// Config.ExposedPorts.
    pub ports: BTreeMap<String, Vec<PortBind>>,
    /// Config.ExposedPorts added by `expose:`, as written (`3000`).
    pub expose: BTreeSet<String>,
    /// Config.Volumes, HostConfig.Binds and HostConfig.Mounts.
    pub volumes: Vec<Volume>,
    /// HostConfig.Tmpfs: path → options.
    pub tmpfs: BTreeMap<String, String>,
    /// HostConfig.NetworkMode: the primary network's engine name, or
    /// `host`/`none`/`bridge`.
    pub network_mode: String,
    /// The networks, primary first (compose v1 sorts them by engine name).
    pub networks: Vec<Attachment>,
    /// HostConfig.RestartPolicy.
    pub restart: Option<Restart>,
    /// HostConfig.Privileged.
    pub privileged: bool,
    /// HostConfig.ReadonlyRootfs.
    pub read_only: bool,
    /// HostConfig.Init.
    pub init: bool,
    /// HostConfig.CapAdd.
    pub cap_add: Vec<String>,
    /// HostConfig.CapDrop.
    pub cap_drop: Vec<String>,
    /// HostConfig.Dns.
    pub dns: Vec<String>,
    /// HostConfig.DnsOptions.
    pub dns_opt: Vec<String>,
    /// HostConfig.DnsSearch.
    pub dns_search: Vec<String>,
    /// HostConfig.ExtraHosts, as written (`host:ip`).
    pub extra_hosts: Vec<String>,
    /// HostConfig.Devices.
    pub devices: Vec<Device>,
    /// HostConfig.Ulimits, in the file's order.
    pub ulimits: Vec<Ulimit>,
    /// HostConfig.LogConfig.
    pub logging: Logging,
    /// HostConfig.SecurityOpt.
    pub security_opt: Vec<String>,
    /// HostConfig.Sysctls.
    pub sysctls: BTreeMap<String, String>,
    /// HostConfig.ShmSize, bytes.
    pub shm_size: Option<i64>,
    /// HostConfig.Memory, bytes.
    pub mem_limit: Option<i64>,
    /// HostConfig.MemoryReservation, bytes.
    pub mem_reservation: Option<i64>,
    /// HostConfig.NanoCpus.
    pub cpus: Option<i64>,
    /// HostConfig.CpuShares.
    pub cpu_shares: Option<i64>,
    // Fields added after the first release are left out of the JSON when
    // unset, so that the spec hash of a service that does not use them
    // stays what it was and an upgrade of slipway recreates nothing.
    /// HostConfig.PidsLimit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// HostConfig.Runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// HostConfig.GroupAdd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// Secrets and configs from a value, copied in before start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copied: Vec<CopiedFile>,
    /// The create request's platform (`os/arch[/variant]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Anonymous volumes carried over from a container this one replaces
    /// (target, volume name); see [`ContainerSpec::with_anonymous_volumes`].
    /// Not part of the hash.
    #[serde(skip)]
    carried: Vec<(String, String)>,
}

/// A secret or config from a value (`content:` or `environment:`), which
/// compose v2 copies into the container between create and start. The
/// spec keeps the value's digest, so that a changed value replaces the
/// container; the value itself is never stored or printed, and a spec read
/// back from the store has none.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CopiedFile {
    /// The absolute path in the container.
    pub target: String,
    /// Permission bits; 0444 unless the service sets `mode`.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// SHA-256 of the value, hex.
    pub digest: String,
    #[serde(skip)]
    pub value: Option<String>,
}

impl CopiedFile {
    fn new(key: &str, target: String, r: &crate::compose::FileRef, value: &str) -> Res<CopiedFile> {
        let id = |name: &str, v: &Option<String>| match v {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{key} `{}`: `{name}` is a number, not `{v}`", r.source)),
        };
        Ok(CopiedFile {
            target,
            mode: r.mode.unwrap_or(0o444),
            uid: id("uid", &r.uid)?,
            gid: id("gid", &r.gid)?,
            digest: hex::encode(Sha256::digest(value.as_bytes())),
            value: Some(value.to_owned()),
        })
    }

    /// Whether the service set an owner, for the copy's `copyUIDGID`.
    pub fn owned(&self) -> bool {
        self.uid != 0 || self.gid != 0
    }
}

impl std::fmt::Debug for CopiedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CopiedFile({} {:o} {}:{} sha256:{})",
            self.target, self.mode, self.uid, self.gid, self.digest
        )
    }
}

/// Config.Healthcheck; durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub test: Option<Vec<String>>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub retries: Option<i64>,
    pub start_period: Option<i64>,
}

/// One HostConfig.PortBindings entry; empty strings mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBind {
    pub host_ip: String,
    pub host_port: String,
}

/// One `volumes:` entry, as the engine will see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Volume {
    /// Short syntax with a host path: Binds `source:target:mode` and
    /// Config.Volumes[target].
    Bind {
        source: String,
        target: String,
        mode: String,
    },
    /// Short syntax with a named volume (its engine name): Binds
    /// `name:target:mode` and Config.Volumes[target].
    Named {
        name: String,
        target: String,
        mode: String,
    },
    /// Short syntax without a source: Config.Volumes[target] only; the
    /// engine creates an anonymous volume.
    Anonymous { target: String },
    /// Long syntax: one HostConfig.Mounts entry (API ≥ 1.30, as compose
    /// v1 sends it to API 1.41).
    Mount(MountSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path, volume engine name, or none (anonymous volume, tmpfs).
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub propagation: Option<String>,
    pub nocopy: bool,
    pub tmpfs_size: Option<i64>,
    /// Send empty bind options, as compose v2 does for a secret's file
    /// (its `CreateHostPath: false`); left out of the JSON when unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_bind_options: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// A network the container joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The key in the compose file.
    pub key: String,
    /// The engine's network name.
    pub name: String,
    /// The service name, the container's, then the file's aliases.
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// HostConfig.LogConfig; compose v1 always sends one, with an empty
/// driver (the daemon's default) when `logging:` is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logging {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// The container compose v1 would create for `service`, running `image`
/// (the tag compose puts in Config.Image).
pub fn desired(project: &ComposeProject, service: &str, image: &str) -> Result<ContainerSpec> {
    let def = project.services.get(service).ok_or_else(|| {
        anyhow!(
            "no service `{service}` in {} (services: {})",
            project.files_display(),
            project.service_names()
        )
    })?;
    build_spec(project, def, image)
        .map_err(|e| anyhow!("{}: service `{service}`: {e}", def.location))
}

type Res<T> = std::result::Result<T, String>;

fn build_spec(project: &ComposeProject, def: &ServiceDef, image: &str) -> Res<ContainerSpec> {
    let s = &def.service;
    let (network_mode, networks) = networks(project, def)?;
    let ports = ports(&s.ports)?;
    // docker-py's HostConfig refuses port bindings with network_mode host.
    if network_mode == "host" && !ports.is_empty() {
        return Err("ports: cannot publish ports with network_mode: host".into());
    }
    let limits = &def.extra.resources;
    let (volumes, copied) = with_files(volumes(project, s)?, project, def)?;
    Ok(ContainerSpec {
        service: def.name.clone(),
        name: container_name(project, def),
        image: image.to_owned(),
        hostname: s.hostname.clone(),
        domainname: s.domainname.clone(),
        user: s.user.clone(),
        tty: s.tty,
        stdin_open: s.stdin_open,
        environment: def
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        command: s.command.as_ref().map(command).transpose()?,
        entrypoint: s.entrypoint.as_ref().map(entrypoint).transpose()?,
        working_dir: s.working_dir.clone(),
        labels: labels(project, def),
        stop_signal: s.stop_signal.clone(),
        stop_grace_period: s
            .stop_grace_period
            .as_deref()
            .map(stop_timeout)
            .transpose()?,
        healthcheck: s.healthcheck.as_ref().map(healthcheck).transpose()?,
        ports,
        expose: expose(&s.expose)?,
        volumes,
        copied,
        platform: def.extra.platform.clone(),
        tmpfs: tmpfs(s.tmpfs.as_ref()),
        network_mode,
        networks,
        restart: (def.extra.restart_policy.as_deref())
            .or(s.restart.as_deref())
            .map(restart)
            .transpose()?
            .flatten(),
        privileged: s.privileged,
        read_only: s.read_only,
        init: s.init,
        cap_add: capabilities(&s.cap_add),
        cap_drop: capabilities(&s.cap_drop),
        dns: s.dns.clone(),
        dns_opt: s.dns_opt.clone(),
        dns_search: def.extra.dns_search.clone(),
        extra_hosts: s.extra_hosts.clone(),
        devices: s.devices.iter().map(|d| device(d)).collect(),
        ulimits: ulimits(&s.ulimits)?,
        logging: logging(s.logging.as_ref()),
        security_opt: s
            .security_opt
            .iter()
            .map(|o| security_opt(o))
            .collect::<Res<_>>()?,
        sysctls: sysctls(&s.sysctls),
        shm_size: bytes_of("shm_size", s.shm_size.as_deref())?,
        mem_limit: twin(
            ("mem_limit", bytes_of("mem_limit", s.mem_limit.as_deref())?),
            ("limits.memory", limits.limits),
            bytes_of("deploy.resources.limits.memory", limits.memory.as_deref())?,
        )?,
        // Set only when not zero, as compose sets it.
        mem_reservation: twin(
            (
                "mem_reservation",
                bytes_of("mem_reservation", s.mem_reservation.as_deref())?,
            ),
            ("reservations.memory", limits.reservations),
            bytes_of(
                "deploy.resources.reservations.memory",
                limits.memory_reservation.as_deref(),
            )?,
        )?
        .filter(|&b| b != 0),
        cpus: nano_cpus(twin(
            ("cpus", def.extra.cpus),
            ("limits.cpus", limits.limits),
            limits.cpus,
        )?)?,
        cpu_shares: def.extra.cpu_shares.filter(|&c| c != 0),
        pids_limit: twin(
            ("pids_limit", def.extra.pids_limit),
            ("limits.pids", limits.limits),
            limits.pids.filter(|&p| p > 0),
        )?
        .filter(|&p| p != 0),
        runtime: s.runtime.clone(),
        group_add: s
            .group_add
            .iter()
            .map(|g| match g {
                dct::Group::Named(name) => name.clone(),
                dct::Group::Gid(gid) => gid.to_string(),
            })
            .collect(),
        carried: Vec::new(),
    })
}

/// A service key and its `deploy.resources` twin, as compose v2 reconciles
/// them: the key set (not zero) and the twin's section present, they must
/// be equal, an absent twin counting as zero ("can't set distinct values"
/// refuses the project); otherwise whichever is set.
fn twin<T: PartialEq + Default + Copy + std::fmt::Display>(
    (key, own): (&str, Option<T>),
    (twin, section): (&str, bool),
    theirs: Option<T>,
) -> Res<Option<T>> {
    match own.filter(|v| *v != T::default()) {
        Some(v) if section && theirs.unwrap_or_default() != v => Err(format!(
            "`{key}: {v}` and `deploy.resources.{twin}` differ, and compose v2 refuses a \
             project that sets both differently: keep one of them"
        )),
        Some(v) => Ok(Some(v)),
        None => Ok(theirs),
    }
}

/// compose v2's `getContainerName`: project, service and container
/// number joined by `-`, or `container_name`.
fn container_name(project: &ComposeProject, def: &ServiceDef) -> String {
    match &def.service.container_name {
        Some(name) => name.clone(),
        None => format!("{}-{}-1", project.name, def.name),
    }
}

/// The service's labels, then those compose v2 adds (its win over the
/// user's): project, service, oneoff, the project's directory and files,
/// container number, version and dependencies. The config-hash and image
/// labels are added at create, unhashed (they are compose's view of this
/// spec and its image); `environment_file` is only set by `--env-file`.
fn labels(project: &ComposeProject, def: &ServiceDef) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = match &def.service.labels {
        dct::Labels::List(items) => items.iter().map(|i| split_kv(i)).collect(),
        dct::Labels::Map(map) => map.clone().into_iter().collect(),
    };
    let files: Vec<String> = project
        .files
        .iter()
        .map(|f| normpath(&f.to_string_lossy()))
        .collect();
    let compose = [
        (LABEL_PROJECT, project.name.clone()),
        (LABEL_SERVICE, def.name.clone()),
        (LABEL_ONE_OFF, "False".to_owned()),
        (
            LABEL_WORKING_DIR,
            project.dir.to_string_lossy().into_owned(),
        ),
        (LABEL_CONFIG_FILES, files.join(",")),
        (LABEL_CONTAINER_NUMBER, "1".to_owned()),
        (LABEL_VERSION, COMPOSE_VERSION.to_owned()),
        (LABEL_DEPENDS_ON, depends_on_label(def)),
    ];
    out.extend(compose.into_iter().map(|(k, v)| (k.to_owned(), v)));
    out
}

/// `service:condition:restart` for each dependency, comma-joined (compose
/// writes them in Go's map order; slipway sorts them), empty without any.
fn depends_on_label(def: &ServiceDef) -> String {
    use docker_compose_types::DependsOnOptions;
    let mut deps: Vec<String> = match &def.service.depends_on {
        DependsOnOptions::Simple(names) => names
            .iter()
            .map(|n| format!("{n}:service_started:false"))
            .collect(),
        DependsOnOptions::Conditional(map) => map
            .iter()
            .map(|(n, c)| {
                let condition = match c.condition.as_str() {
                    "" => "service_started",
                    other => other,
                };
                format!("{n}:{condition}:{}", c.restart.unwrap_or(false))
            })
            .collect(),
    };
    deps.sort();
    deps.join(",")
}

/// compose's `split_kv`: `k=v`, or `k` alone with an empty value.
fn split_kv(item: &str) -> (String, String) {
    match item.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (item.to_owned(), String::new()),
    }
}

fn command(c: &dct::Command) -> Res<Vec<String>> {
    match c {
        dct::Command::Simple(s) => shlex_split(s).map_err(|e| format!("command `{s}`: {e}")),
        dct::Command::Args(args) => Ok(args.clone()),
    }
}

fn entrypoint(c: &dct::Entrypoint) -> Res<Vec<String>> {
    match c {
        dct::Entrypoint::Simple(s) => shlex_split(s).map_err(|e| format!("entrypoint `{s}`: {e}")),
        dct::Entrypoint::List(args) => Ok(args.clone()),
    }
}

/// Python's `shlex.split` (POSIX mode, no comments), which docker-py uses
/// for a string `command`/`entrypoint`.
fn shlex_split(s: &str) -> Res<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => word.push(c),
                    None => return Err("no closing quotation".into()),
                }
            },
            '"' => double_quoted(&mut chars, &mut word)?,
            '\\' => word.push(chars.next().ok_or("no escaped character")?),
            c => word.push(c),
        }
        in_word = true;
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Inside double quotes a backslash escapes only `"` and `\`.
fn double_quoted(chars: &mut std::str::Chars<'_>, word: &mut String) -> Res<()> {
    loop {
        match chars.next() {
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                Some(c @ ('"' | '\\')) => word.push(c),
                Some(c) => {
                    word.push('\\');
                    word.push(c);
                }
                None => return Err("no closing quotation".into()),
            },
            Some(c) => word.push(c),
            None => return Err("no closing quotation".into()),
        }
    }
}

/// `stop_grace_period` → StopTimeout, whole seconds.
fn stop_timeout(v: &str) -> Res<i64> {
    let secs = timeparse(v).ok_or_else(|| format!("stop_grace_period `{v}`: {NOT_A_DURATION}"))?;
    if !(0.0..1e15).contains(&secs) {
        return Err(format!("stop_grace_period `{v}`: out of range"));
    }
    // The engine takes whole seconds; compose v2 truncates (`2500ms` is 2).
    Ok(secs.trunc() as i64)
}

const NOT_A_DURATION: &str = "not a duration (like 10s, 1m30s, 500ms, 1h)";

/// compose's `timeparse`: a Go-style duration, units h, m, s, ms, us/µs,
/// ns in that order, each at most once, numbers `[0-9.]+`, as seconds.
/// Computed as compose computes it (`sum(MULTIPLIER * value)` in floats)
/// so nanosecond values come out identical.
fn timeparse(v: &str) -> Option<f64> {
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    let mut last_rank = None;
    let mut total = 0.0;
    while !rest.is_empty() {
        let is_num = |c: char| c.is_ascii_digit() || c == '.';
        let num_len = rest.find(|c: char| !is_num(c)).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(is_num).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let (rank, multiplier) = duration_unit(&unit.to_lowercase())?;
        if num.is_empty() || last_rank.is_some_and(|l| rank <= l) {
            return None;
        }
        last_rank = Some(rank);
        total += multiplier * py_number(num)?;
        rest = tail;
    }
    Some(total)
}

/// compose's `MULTIPLIERS`, with each unit's place in the pattern.
fn duration_unit(unit: &str) -> Option<(u8, f64)> {
    Some(match unit {
        "h" => (0, 3600.0),
        "m" => (1, 60.0),
        "s" => (2, 1.0),
        "ms" => (3, 1.0 / 1000.0),
        "us" | "µs" => (4, 1.0 / 1000.0 / 1000.0),
        "ns" => (5, 1.0 / 1000.0 / 1000.0 / 1000.0),
        _ => return None,
    })
}

/// compose's `cast`: an int when all digits, else a float.
fn py_number(s: &str) -> Option<f64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().ok().map(|n| n as f64)
    } else {
        s.parse::<f64>().ok()
    }
}

/// compose's `parse_nanoseconds_int`: `int(seconds / 1e-9)`.
fn nanoseconds(key: &str, v: Option<&str>) -> Res<Option<i64>> {
    let Some(v) = v else { return Ok(None) };
    let secs = timeparse(v).ok_or_else(|| format!("{key} `{v}`: {NOT_A_DURATION}"))?;
    let ns = secs / (1.0 / 1000.0 / 1000.0 / 1000.0);
    if !(0.0..9.2e18).contains(&ns) {
        return Err(format!("{key} `{v}`: out of range"));
    }
    Ok(Some(ns as i64))
}

/// `healthcheck:` as compose v1 sends it: `disable` (any value, but the
/// typed model only shows `true`) means test `["NONE"]`; a string test is
/// `["CMD-SHELL", test]` (so `test: NONE` runs a command named NONE, as
/// in v1); a list must start with NONE, CMD or CMD-SHELL.
fn healthcheck(h: &dct::Healthcheck) -> Res<Health> {
    let timed = h.interval.is_some() || h.timeout.is_some() || h.start_period.is_some();
    let others = timed || h.retries != 0;
    let test = match (&h.test, h.disable) {
        (_, true) => Some(vec!["NONE".to_owned()]),
        (None, false) => None,
        (Some(dct::HealthcheckTest::Single(s)), false) => {
            Some(vec!["CMD-SHELL".to_owned(), s.clone()])
        }
        (Some(dct::HealthcheckTest::Multiple(list)), false) => Some(test_list(list)?),
    };
    if test.as_deref().is_some_and(|t| t[0] == "NONE") && others {
        return Err(
            "healthcheck: `disable: true` (or test NONE) cannot be combined with other options"
                .into(),
        );
    }
    Ok(Health {
        test,
        interval: nanoseconds("healthcheck.interval", h.interval.as_deref())?,
        timeout: nanoseconds("healthcheck.timeout", h.timeout.as_deref())?,
        retries: (h.retries != 0).then_some(h.retries),
        start_period: nanoseconds("healthcheck.start_period", h.start_period.as_deref())?,
    })
}

fn test_list(list: &[String]) -> Res<Vec<String>> {
    match list.first().map(String::as_str) {
        None => Err("healthcheck.test: is an empty list".into()),
        Some("NONE" | "CMD" | "CMD-SHELL") => Ok(list.to_vec()),
        Some(other) => Err(format!(
            "healthcheck.test: a list starts with NONE, CMD or CMD-SHELL, not `{other}`"
        )),
    }
}

const NOT_A_PORT: &str =
    "not a port (like 80, 8080:80, 127.0.0.1:8080:80/udp, 8000-8001:8000-8001)";

/// `ports:` → PortBindings. Short entries go through docker-py's
/// `split_port` as compose v1 does (`ServicePort.parse`, `legacy_repr`,
/// `build_port_bindings`); `80` alone binds a random host port.
fn ports(p: &dct::Ports) -> Res<BTreeMap<String, Vec<PortBind>>> {
    let entries: Vec<(String, PortBind)> = match p {
        dct::Ports::Short(list) => {
            let mut out = Vec::new();
            for (i, spec) in list.iter().enumerate() {
                out.extend(split_port(spec).map_err(|e| format!("ports[{i}] `{spec}`: {e}"))?);
            }
            out
        }
        // The loader writes every long-syntax port in the short syntax
        // (compose::merge::normalize_service).
        dct::Ports::Long(_) => return Err("ports: the long syntax was not normalized".into()),
    };
    let mut out: BTreeMap<String, Vec<PortBind>> = BTreeMap::new();
    for (key, bind) in entries {
        out.entry(key).or_default().push(bind);
    }
    Ok(out)
}

/// `expose:` as compose v2 sends it (`buildContainerPorts`): each entry
/// as written (`9000`, `3001-3002/udp`), once `split_port` reads it.
fn expose(list: &[String]) -> Res<BTreeSet<String>> {
    for (i, spec) in list.iter().enumerate() {
        split_port(spec).map_err(|e| format!("expose[{i}] `{spec}`: {e}"))?;
    }
    Ok(list.iter().cloned().collect())
}

/// Capabilities as compose v2's Docker client sends them
/// (`normalizeCapabilities`): upper-cased, `CAP_`-prefixed but for `ALL`,
/// once each, sorted.
fn capabilities(caps: &[String]) -> Vec<String> {
    let normalized: BTreeSet<String> = caps
        .iter()
        .map(|c| c.to_uppercase())
        .map(|c| match c == "ALL" || c.starts_with("CAP_") {
            true => c,
            false => format!("CAP_{c}"),
        })
        .collect();
    normalized.into_iter().collect()
}

/// docker-py's `PORT_SPEC`: `[[host:]published[-end]:]target[-end][/proto]`,
/// as (`target/proto`, binding) pairs, one per target port.
fn split_port(spec: &str) -> Res<Vec<(String, PortBind)>> {
    let (rest, proto) = match spec.split_once('/') {
        None => (spec, "tcp"),
        Some((rest, proto @ ("tcp" | "udp" | "sctp"))) => (rest, proto),
        Some(_) => return Err(NOT_A_PORT.into()),
    };
    let (outer, inner) = match rest.rsplit_once(':') {
        Some((outer, inner)) => (Some(outer), inner),
        None => (None, rest),
    };
    let targets = port_range(inner)?;
    let (host, published) = match outer.map(|o| o.rsplit_once(':').ok_or(o)) {
        None => (None, None),
        // `${BIND:-}:443:443`: an empty host IP is none, as compose v2 reads it.
        Some(Ok(("", published))) => (None, Some(published)),
        Some(Ok((host, published))) => (Some(host_ip(host)?), Some(published)),
        Some(Err(published)) => (None, Some(published)),
    };
    let host_ports = host_ports(published, host.is_some(), targets.len())?;
    let host_ip = host.unwrap_or_default();
    Ok(targets
        .into_iter()
        .zip(host_ports)
        .map(|(target, host_port)| {
            let bind = PortBind {
                host_ip: host_ip.clone(),
                host_port,
            };
            (format!("{target}/{proto}"), bind)
        })
        .collect())
}

/// The host port for each target: empty (any) without a published part;
/// a range against one target stays a range (the engine picks one port
/// from it); otherwise the lengths must match.
fn host_ports(published: Option<&str>, has_host: bool, targets: usize) -> Res<Vec<String>> {
    let Some(published) = published else {
        return Ok(vec![String::new(); targets]);
    };
    let (start, end) = match published.split_once('-') {
        Some((start, end)) => (start, Some(end)),
        None => (published, None),
    };
    if !start.bytes().all(|b| b.is_ascii_digit()) || end.is_some_and(|e| !is_digits(e)) {
        return Err(NOT_A_PORT.into());
    }
    let ports = match end {
        // docker-py: an empty published port with a host IP is "any port
        // on that IP"; without one the lengths cannot match.
        _ if start.is_empty() && has_host => vec![String::new(); targets],
        _ if start.is_empty() => Vec::new(),
        Some(end) if targets == 1 => vec![format!("{start}-{end}")],
        _ => port_range(published)?
            .into_iter()
            .map(|p| p.to_string())
            .collect(),
    };
    if ports.len() != targets {
        return Err("port ranges don't match in length".into());
    }
    Ok(ports)
}

/// `80` or `8000-8010`, expanded; numbers lose leading zeros as compose's
/// `int()` drops them.
fn port_range(s: &str) -> Res<Vec<u64>> {
    let (start, end) = match s.split_once('-') {
        Some((start, end)) => (start, end),
        None => (s, s),
    };
    if !is_digits(start) || !is_digits(end) {
        return Err(NOT_A_PORT.into());
    }
    let number = |n: &str| n.parse::<u64>().map_err(|_| NOT_A_PORT.to_owned());
    let (start, end) = (number(start)?, number(end)?);
    if end < start || end - start > 65535 {
        return Err(format!("`{s}` is not an ascending port range"));
    }
    Ok((start..=end).collect())
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `\[?[a-fA-F0-9.:]+\]?`, brackets dropped.
fn host_ip(h: &str) -> Res<String> {
    let h = h.strip_prefix('[').unwrap_or(h);
    let h = h.strip_suffix(']').unwrap_or(h);
    let ok = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
    if h.is_empty() || !h.chars().all(ok) {
        return Err(NOT_A_PORT.into());
    }
    Ok(h.to_owned())
}

fn volumes(project: &ComposeProject, s: &dct::Service) -> Res<Vec<Volume>> {
    let mut out: Vec<Volume> = Vec::new();
    for (i, v) in s.volumes.iter().enumerate() {
        let volume = match v {
            dct::Volumes::Simple(spec) => {
                short_volume(project, spec).map_err(|e| format!("volumes[{i}] `{spec}`: {e}"))?
            }
            dct::Volumes::Advanced(a) => long_volume(project, a)
                .map_err(|e| format!("volumes[{i}] (target `{}`): {e}", a.target))?,
        };
        // compose v1's `finalize_service_volumes` refuses these.
        if out.iter().any(|o| o.target() == volume.target()) {
            return Err(format!(
                "volumes[{i}]: duplicate mount point `{}`",
                volume.target()
            ));
        }
        out.push(volume);
    }
    Ok(out)
}

/// The service's secrets and configs where compose v2 puts them: a secret
/// at `/run/secrets/<name>` (or its relative `target` there, or its
/// absolute `target`), a config at `/<name>` (likewise). One from a file is
/// bound read-only, unless a volume holds the path; compose v2 ignores its
/// `uid`, `gid` and `mode`, and says so, as slipway does. One from a value
/// is copied in before start with its mode (0444 unless set) and owner.
fn with_files(
    mut volumes: Vec<Volume>,
    project: &ComposeProject,
    def: &ServiceDef,
) -> Res<(Vec<Volume>, Vec<CopiedFile>)> {
    let kinds = [
        (
            "secrets",
            "/run/secrets/",
            &def.extra.secrets,
            &project.secrets,
        ),
        ("configs", "/", &def.extra.configs, &project.configs),
    ];
    let mut copied = Vec::new();
    for (key, base, refs, sources) in kinds {
        for r in refs {
            let source = sources.get(&r.source).ok_or_else(|| {
                format!(
                    "{key}: `{}` is not declared in the top-level `{key}:`",
                    r.source
                )
            })?;
            let target = match r.target.as_deref() {
                Some(t) if t.starts_with('/') => t.to_owned(),
                Some(t) => format!("{base}{t}"),
                None => format!("{base}{}", r.source),
            };
            match source {
                FileSource::Unset { var, at } => {
                    return Err(format!(
                        "{key}: `{}` reads the variable `{var}` ({at}), which is not set: set \
                         it in the environment or in the project's .env",
                        r.source
                    ));
                }
                FileSource::Value(value) => {
                    if def.service.read_only {
                        return Err(format!(
                            "{key}: `{}` is a value compose copies into the container, which \
                             `read_only: true` forbids; give it `file:` instead",
                            r.source
                        ));
                    }
                    copied.push(CopiedFile::new(key, target, r, value)?);
                }
                FileSource::File(_) if volumes.iter().any(|v| v.target() == target) => {}
                FileSource::File(file) => {
                    if r.uid.is_some() || r.gid.is_some() || r.mode.is_some() {
                        tracing::warn!(
                            "{key} `{}`: uid, gid and mode are not applied to a file mounted \
                             from the host, as compose does not apply them",
                            r.source
                        );
                    }
                    volumes.push(Volume::Mount(MountSpec {
                        kind: MountKind::Bind,
                        source: Some(file.display().to_string()),
                        target,
                        read_only: true,
                        propagation: None,
                        nocopy: false,
                        tmpfs_size: None,
                        empty_bind_options: key == "secrets",
                    }));
                }
            }
        }
    }
    Ok((volumes, copied))
}

/// `[source:]target[:mode]` as compose v1 reads it (`resolve_volume_path`,
/// `VolumeSpec._parse_unix`): paths normalized, a source starting with
/// `.` is relative to the project directory, `~` is the home directory,
/// any other source is a named volume.
fn short_volume(project: &ComposeProject, spec: &str) -> Res<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let target = normpath(parts.get(1).copied().unwrap_or(parts[0]));
    if parts.len() > 3 {
        return Err("not `[source:]target[:mode]`".into());
    }
    if parts.len() == 1 {
        return Ok(Volume::Anonymous { target });
    }
    if parts[0].is_empty() || parts[1].is_empty() {
        return Err("empty source or target".into());
    }
    let mode = parts.get(2).copied().unwrap_or("rw").to_owned();
    let source = host_path(&project.dir, parts[0]);
    if is_named(&source) {
        let name = named_volume(project, &source)?;
        return Ok(Volume::Named { name, target, mode });
    }
    Ok(Volume::Bind {
        source,
        target,
        mode,
    })
}

/// compose's `VolumeSpec.is_named_volume`.
fn is_named(source: &str) -> bool {
    !source.starts_with(['.', '/', '~'])
}

fn named_volume(project: &ComposeProject, key: &str) -> Res<String> {
    project
        .volumes
        .get(key)
        .map(|v| v.name.clone())
        .ok_or_else(|| format!("named volume `{key}` is not declared in the top-level `volumes:`"))
}

/// compose's `expand_path` for a host path: `~` expanded, a `.` path
/// joined to the project directory, then normalized.
fn host_path(dir: &Path, p: &str) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let p = match p.strip_prefix('~') {
        Some(rest) if (rest.is_empty() || rest.starts_with('/')) && !home.is_empty() => {
            format!("{home}{rest}")
        }
        _ => p.to_owned(),
    };
    if p.starts_with('.') {
        normpath(&format!("{}/{p}", dir.to_string_lossy()))
    } else {
        normpath(&p)
    }
}

/// Python's `posixpath.normpath`: lexical, keeps exactly two leading
/// slashes, `.` for an empty result.
fn normpath(path: &str) -> String {
    let slashes = match path {
        p if p.starts_with("//") && !p.starts_with("///") => 2,
        p if p.starts_with('/') => 1,
        _ => 0,
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if slashes == 0 && parts.last().is_none_or(|p| *p == "..") => parts.push(".."),
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let out = format!("{}{}", "/".repeat(slashes), parts.join("/"));
    if out.is_empty() { ".".to_owned() } else { out }
}

/// Long syntax as compose v1's `MountSpec`/`build_mount` sends it; only
/// the options block matching the type is read. A bind that may create its
/// host path is a Binds entry instead, as compose v2 sends it (the mount
/// API refuses a missing source).
fn long_volume(project: &ComposeProject, a: &dct::AdvancedVolumes) -> Res<Volume> {
    if let Some(bind) = binds_entry(project, a)? {
        return Ok(bind);
    }
    if a.volume.as_ref().is_some_and(|v| v.subpath.is_some()) {
        return Err("`volume.subpath` is not a compose v1 key".into());
    }
    let kind = match a._type.as_str() {
        "bind" => MountKind::Bind,
        "volume" => MountKind::Volume,
        "tmpfs" => MountKind::Tmpfs,
        other => return Err(format!("type `{other}`: must be bind, volume or tmpfs")),
    };
    let source = match (kind, a.source.as_deref().filter(|s| !s.is_empty())) {
        (MountKind::Tmpfs, Some(_)) => return Err("a tmpfs mount cannot have a source".into()),
        (MountKind::Bind, None) => return Err("a bind mount needs a source".into()),
        (MountKind::Bind, Some(s)) => Some(host_path(&project.dir, s)),
        (MountKind::Volume, Some(s)) => Some(named_volume(project, &normpath(s))?),
        (_, None) => None,
    };
    let propagation = match (kind, a.bind.as_ref().and_then(|b| b.propagation.clone())) {
        (MountKind::Bind, Some(p)) => Some(propagation(p)?),
        _ => None,
    };
    let size = a.tmpfs.as_ref().map_or(0, |t| t.size);
    Ok(Volume::Mount(MountSpec {
        kind,
        source,
        target: a.target.clone(),
        read_only: a.read_only,
        propagation,
        nocopy: kind == MountKind::Volume && a.volume.as_ref().and_then(|v| v.nocopy) == Some(true),
        tmpfs_size: match kind {
            MountKind::Tmpfs if size > 0 => {
                Some(i64::try_from(size).map_err(|_| "tmpfs.size: too large")?)
            }
            _ => None,
        },
        empty_bind_options: false,
    }))
}

/// A long-syntax bind with `bind.create_host_path: true` and no
/// propagation, as compose v2 sends it: `source:target:ro|rw[,z|Z]`.
fn binds_entry(project: &ComposeProject, a: &dct::AdvancedVolumes) -> Res<Option<Volume>> {
    let Some(bind) = a.bind.as_ref().filter(|_| a._type == "bind") else {
        return Ok(None);
    };
    if bind.create_host_path != Some(true) || bind.propagation.is_some() {
        return match &bind.selinux {
            Some(_) => Err(
                "`bind.selinux` is applied with `bind.create_host_path: true` \
                            and no `bind.propagation`"
                    .into(),
            ),
            None => Ok(None),
        };
    }
    let source = a
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("a bind mount needs a source")?;
    let mut mode = if a.read_only { "ro" } else { "rw" }.to_owned();
    match bind.selinux.as_deref() {
        None => {}
        Some(label @ ("z" | "Z")) => mode.push_str(&format!(",{label}")),
        Some(other) => return Err(format!("bind.selinux `{other}`: must be z or Z")),
    }
    Ok(Some(Volume::Bind {
        source: host_path(&project.dir, source),
        target: normpath(&a.target),
        mode,
    }))
}

fn propagation(p: String) -> Res<String> {
    match p.parse::<bollard::models::MountBindOptionsPropagationEnum>() {
        Ok(_) if !p.is_empty() => Ok(p),
        _ => Err(format!(
            "bind.propagation `{p}`: must be one of private, rprivate, shared, rshared, slave, rslave"
        )),
    }
}

/// docker-py's `convert_tmpfs_mounts`: `path[:options]`.
fn tmpfs(t: Option<&dct::Tmpfs>) -> BTreeMap<String, String> {
    let items: Vec<&String> = match t {
        None => Vec::new(),
        Some(dct::Tmpfs::Simple(s)) => vec![s],
        Some(dct::Tmpfs::List(list)) => list.iter().collect(),
    };
    items
        .into_iter()
        .map(|item| match item.split_once(':') {
            Some((path, options)) => (path.to_owned(), options.to_owned()),
            None => (item.clone(), String::new()),
        })
        .collect()
}

/// The service's networks (`default` when none is named), sorted by
/// engine name as `get_networks` sorts them without priorities; the first
/// is the primary one, HostConfig.NetworkMode. `network_mode` replaces
/// them all.
fn networks(project: &ComposeProject, def: &ServiceDef) -> Res<(String, Vec<Attachment>)> {
    if let Some(mode) = &def.service.network_mode {
        return match mode.as_str() {
            "host" | "none" | "bridge" => Ok((mode.clone(), Vec::new())),
            other => Err(format!(
                "network_mode `{other}`: must be host, none or bridge"
            )),
        };
    }
    let mut out: Vec<Attachment> = Vec::new();
    for (key, settings) in network_entries(&def.service.networks) {
        let network = project
            .networks
            .get(&key)
            .ok_or_else(|| format!("networks.{key}: not declared in the top-level `networks:`"))?;
        if let Some(other) = out.iter().find(|a| a.name == network.name) {
            return Err(format!(
                "networks `{}` and `{key}` are the same engine network `{}`",
                other.key, network.name
            ));
        }
        let settings = settings.unwrap_or_default();
        // compose v2 adds the container's name too (as the engine's DNS
        // answers it anyway).
        let mut aliases = vec![def.name.clone(), container_name(project, def)];
        for alias in settings.aliases {
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
        out.push(Attachment {
            key,
            name: network.name.clone(),
            aliases,
            ipv4_address: settings.ipv4_address,
            ipv6_address: settings.ipv6_address,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let primary = out
        .first()
        .map(|a| a.name.clone())
        .unwrap_or_else(|| "none".into());
    Ok((primary, out))
}

fn network_entries(n: &dct::Networks) -> Vec<(String, Option<dct::AdvancedNetworkSettings>)> {
    let entries: Vec<_> = match n {
        dct::Networks::Simple(list) => list.iter().map(|k| (k.clone(), None)).collect(),
        dct::Networks::Advanced(map) => map
            .0
            .iter()
            .map(|(k, v)| (k.clone(), Option::from(v.clone())))
            .collect(),
    };
    if entries.is_empty() {
        return vec![("default".to_owned(), None)];
    }
    entries
}

/// compose's `parse_restart_spec`: `mode[:max_retry]`; empty is none.
fn restart(v: &str) -> Res<Option<Restart>> {
    if v.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = v.split(':').collect();
    let count = match parts.as_slice() {
        [_] => 0,
        [_, n] => n
            .trim()
            .parse()
            .map_err(|_| format!("restart `{v}`: `{n}` is not a retry count"))?,
        _ => return Err(format!("restart `{v}`: not `mode[:max_retry]`")),
    };
    if !matches!(parts[0], "no" | "always" | "unless-stopped" | "on-failure") {
        return Err(format!(
            "restart `{v}`: must be no, always, unless-stopped or on-failure[:N]"
        ));
    }
    Ok(Some(Restart {
        name: parts[0].to_owned(),
        maximum_retry_count: count,
    }))
}

/// docker-py's `parse_devices`: `host[:container[:permissions]]`.
fn device(spec: &str) -> Device {
    let parts: Vec<&str> = spec.split(':').collect();
    Device {
        path_on_host: parts[0].to_owned(),
        path_in_container: parts.get(1).unwrap_or(&parts[0]).to_string(),
        cgroup_permissions: parts.get(2).unwrap_or(&"rwm").to_string(),
    }
}

/// compose's `build_ulimits`: a number sets soft and hard.
fn ulimits(u: &dct::Ulimits) -> Res<Vec<Ulimit>> {
    let int = |name: &str, v: &dct::StringOrUnsigned| match v {
        dct::StringOrUnsigned::Unsigned(n) => Ok(*n),
        dct::StringOrUnsigned::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("ulimits.{name} `{s}`: not a number")),
    };
    u.0.iter()
        .map(|(name, limit)| {
            let (soft, hard) = match limit {
                dct::Ulimit::Single(v) => (int(name, v)?, int(name, v)?),
                dct::Ulimit::SoftHard { soft, hard } => (int(name, soft)?, int(name, hard)?),
            };
            Ok(Ulimit {
                name: name.clone(),
                soft,
                hard,
            })
        })
        .collect()
}

fn logging(l: Option<&dct::LoggingParameters>) -> Logging {
    Logging {
        driver: l.and_then(|l| l.driver.clone()).unwrap_or_default(),
        options: l
            .and_then(|l| l.options.as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), py_str(v))).collect())
            .unwrap_or_default(),
    }
}

/// compose's `SecurityOpt.parse`: `key=value`, `key:value` or
/// `no-new-privileges`, passed on as written. A seccomp profile file is
/// refused: compose v1 inlines the file's JSON re-serialized by Python.
fn security_opt(v: &str) -> Res<String> {
    let parts: Vec<&str> = if v.contains('=') || v == "no-new-privileges" {
        v.splitn(3, '=').collect()
    } else if v.contains(':') {
        v.splitn(3, ':').collect()
    } else {
        return Err(format!("security_opt `{v}`: not `key=value`"));
    };
    if parts[0] == "seccomp" && parts.get(1) != Some(&"unconfined") {
        return Err(format!(
            "security_opt `{v}`: a seccomp profile file is not supported; only seccomp=unconfined"
        ));
    }
    Ok(v.to_owned())
}

/// compose's `build_string_dict(parse_sysctls(...))`: values as Python's
/// `str()`, none as empty.
fn sysctls(s: &dct::SysCtls) -> BTreeMap<String, String> {
    match s {
        dct::SysCtls::List(items) => items.iter().map(|i| split_kv(i)).collect(),
        dct::SysCtls::Map(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(py_str).unwrap_or_default()))
            .collect(),
    }
}

/// Python's `str()` of a YAML scalar: `True`, `1.0`.
fn py_str(v: &dct::SingleValue) -> String {
    match v {
        dct::SingleValue::String(s) => s.clone(),
        dct::SingleValue::Bool(true) => "True".into(),
        dct::SingleValue::Bool(false) => "False".into(),
        dct::SingleValue::Unsigned(n) => n.to_string(),
        dct::SingleValue::Signed(n) => n.to_string(),
        dct::SingleValue::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 => {
            format!("{f:.1}")
        }
        dct::SingleValue::Float(f) => f.to_string(),
    }
}

fn bytes_of(key: &str, v: Option<&str>) -> Res<Option<i64>> {
    v.map(|v| {
        parse_bytes(v)
            .ok_or_else(|| format!("{key} `{v}`: not a size (like 512k, 64m, 1.5g, or bytes)"))
    })
    .transpose()
}

/// docker-py's `parse_bytes`: a number with an optional unit b, k, m, g
/// (powers of 1024, case-insensitive, an extra trailing `b` allowed), the
/// result truncated to whole bytes.
fn parse_bytes(s: &str) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let s = match n >= 2 && chars[n - 2].is_alphabetic() && matches!(chars[n - 1], 'b' | 'B') {
        true => &s[..s.len() - 1],
        false => s,
    };
    let last = s.chars().last()?;
    let (digits, unit) = match last.to_ascii_lowercase() {
        c if c.is_ascii_digit() => (s, 1.0),
        'b' => (&s[..s.len() - 1], 1.0),
        'k' => (&s[..s.len() - 1], 1024.0),
        'm' => (&s[..s.len() - 1], 1024.0 * 1024.0),
        'g' => (&s[..s.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => return None,
    };
    let value = digits.trim().parse::<f64>().ok()? * unit;
    (value.is_finite() && value.abs() < 9.2e18).then_some(value as i64)
}

/// `cpus` → NanoCpus: compose's `int(cpus * 1e9)`, unset when zero.
fn nano_cpus(cpus: Option<f64>) -> Res<Option<i64>> {
    match cpus {
        None => Ok(None),
        Some(c) if !(0.0..1e9).contains(&c) => Err(format!("cpus `{c}`: out of range")),
        Some(c) => Ok(Some((c * 1e9) as i64).filter(|&n| n != 0)),
    }
}

impl Volume {
    fn target(&self) -> &str {
        match self {
            Volume::Bind { target, .. }
            | Volume::Named { target, .. }
            | Volume::Anonymous { target } => target,
            Volume::Mount(m) => &m.target,
        }
    }
}

impl ContainerSpec {
    /// sha256 hex of the canonical JSON. Everything in the spec counts,
    /// the container name included; carried anonymous volumes do not, and
    /// the image ID is not in the spec (compare it separately).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }

    /// Why two containers of this spec can never run side by side, if they
    /// cannot: a fixed `container_name`, a published host port or a static
    /// address. Such a service is replaced stop-first whatever the strategy.
    pub fn single_instance(&self) -> Option<String> {
        let project = self
            .labels
            .get(LABEL_PROJECT)
            .map(String::as_str)
            .unwrap_or_default();
        let default_name = format!("{project}-{}-1", self.service);
        if self.name != default_name {
            return Some(format!("container_name `{}`", self.name));
        }
        let published = self.ports.iter().find_map(|(port, binds)| {
            binds
                .iter()
                .find(|b| !b.host_port.is_empty())
                .map(|b| format!("{}->{port}", b.host_port))
        });
        if let Some(p) = published {
            return Some(format!("published host port {p}"));
        }
        self.networks
            .iter()
            .find_map(|n| n.ipv4_address.as_ref().or(n.ipv6_address.as_ref()))
            .map(|ip| format!("static address {ip}"))
    }

    /// The engine networks the container joins, primary first.
    pub fn network_names(&self) -> Vec<String> {
        self.networks.iter().map(|a| a.name.clone()).collect()
    }

    /// The engine names of the named volumes it mounts.
    pub fn volume_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.volumes {
            let name = match v {
                Volume::Named { name, .. } => name,
                Volume::Mount(MountSpec {
                    kind: MountKind::Volume,
                    source: Some(name),
                    ..
                }) => name,
                _ => continue,
            };
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// Fill the values of this stored spec's copied secrets and configs
    /// from `today`'s, which slipway does not store: each must still have
    /// the value it had, by digest.
    pub fn take_values_from(&mut self, today: &ContainerSpec) -> std::result::Result<(), String> {
        for file in &mut self.copied {
            let same = today.copied.iter().find(|t| t.digest == file.digest);
            file.value = same.and_then(|t| t.value.clone());
            if file.value.is_none() {
                return Err(format!(
                    "{} had another value then, and slipway keeps no secret or config value: \
                     put that value back in the compose project and deploy",
                    file.target
                ));
            }
        }
        Ok(())
    }

    /// This spec, keeping the anonymous volumes of a container it replaces
    /// as compose v1's `merge_volume_bindings` does. `existing` holds the
    /// old container's volume mounts as (target, volume name);
    /// `image_volumes` the image's `VOLUME` targets. A volume is carried
    /// when its target is an anonymous volume of this spec (short syntax:
    /// a `name:target:rw` bind; long syntax: the mount's source) or an
    /// image volume this spec does not mount otherwise. Targets the spec
    /// binds, mounts a named volume or tmpfs at are never carried (compose
    /// would let an old anonymous volume mask a new bind; this does not).
    /// The hash is unchanged.
    pub fn with_anonymous_volumes(
        &self,
        existing: &[(String, String)],
        image_volumes: &[String],
    ) -> ContainerSpec {
        let carry = |target: &str| match self.volumes.iter().find(|v| v.target() == target) {
            Some(Volume::Anonymous { .. }) => true,
            Some(Volume::Mount(m)) => m.kind == MountKind::Volume && m.source.is_none(),
            Some(_) => false,
            None => {
                image_volumes.iter().any(|t| normpath(t) == target)
                    && !self.tmpfs.contains_key(target)
            }
        };
        let mut out = self.clone();
        out.carried = existing
            .iter()
            .filter(|(target, _)| carry(target))
            .cloned()
            .collect();
        out
    }

    /// The create body, and the networks to connect after create and
    /// before start: compose v1 creates the container on its primary
    /// network and connects the others in order. Aliases are the service
    /// name and the file's; compose also passes the container's short ID,
    /// which the engine adds by itself (with the hostname) at start.
    /// `extra_labels` are added (e.g. the spec-hash label) without being
    /// part of the hash.
    pub fn create_body(
        &self,
        extra_labels: &[(String, String)],
    ) -> (ContainerCreateBody, Vec<(String, EndpointSettings)>) {
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.extend(extra_labels.iter().cloned());
        let body = ContainerCreateBody {
            hostname: self.hostname.clone(),
            domainname: self.domainname.clone(),
            user: self.user.clone(),
            // compose runs detached: nothing attached, stdin not once.
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            exposed_ports: non_empty(self.exposed_ports()),
            tty: Some(self.tty),
            open_stdin: Some(self.stdin_open),
            stdin_once: Some(false),
            env: non_empty(self.environment.clone()),
            cmd: self.command.clone(),
            healthcheck: self.healthcheck.as_ref().map(Health::engine),
            image: Some(self.image.clone()),
            // compose always sends Config.Volumes, `{}` when empty.
            volumes: Some(self.config_volumes()),
            working_dir: self.working_dir.clone(),
            entrypoint: self.entrypoint.clone(),
            network_disabled: Some(false),
            labels: Some(labels),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_grace_period,
            host_config: Some(self.host_config()),
            networking_config: self.networking_config(),
            ..Default::default()
        };
        (body, self.later_networks())
    }

    fn exposed_ports(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.ports.keys().chain(&self.expose).collect();
        all.into_iter().cloned().collect()
    }

    /// Every short-syntax target, binds included, as
    /// `_build_container_volume_options` lists them.
    fn config_volumes(&self) -> Vec<String> {
        self.volumes
            .iter()
            .filter(|v| !matches!(v, Volume::Mount(_)))
            .map(|v| v.target().to_owned())
            .collect()
    }

    /// Binds for short-syntax sources, then carried anonymous volumes.
    fn binds(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |b: String| {
            if !out.contains(&b) {
                out.push(b);
            }
        };
        for v in &self.volumes {
            match v {
                Volume::Bind {
                    source: s,
                    target,
                    mode,
                }
                | Volume::Named {
                    name: s,
                    target,
                    mode,
                } => push(format!("{s}:{target}:{mode}")),
                _ => {}
            }
        }
        for (target, name) in &self.carried {
            if !self.is_long_anonymous(target) {
                push(format!("{name}:{target}:rw"));
            }
        }
        out
    }

    fn is_long_anonymous(&self, target: &str) -> bool {
        self.volumes.iter().any(|v| {
            matches!(v, Volume::Mount(m) if m.target == target && m.kind == MountKind::Volume && m.source.is_none())
        })
    }

    fn mounts(&self) -> Vec<Mount> {
        self.volumes
            .iter()
            .filter_map(|v| match v {
                Volume::Mount(m) => Some(self.engine_mount(m)),
                _ => None,
            })
            .collect()
    }

    /// docker-py's `Mount`; an anonymous volume mount takes the carried
    /// volume's name as its source.
    fn engine_mount(&self, m: &MountSpec) -> Mount {
        let carried = self.carried.iter().find(|(t, _)| *t == m.target);
        let source = match (&m.source, carried) {
            (None, Some((_, name))) if m.kind == MountKind::Volume => Some(name.clone()),
            (source, _) => source.clone(),
        };
        Mount {
            target: Some(m.target.clone()),
            source,
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            bind_options: match &m.propagation {
                Some(p) => Some(MountBindOptions {
                    propagation: p.parse().ok(),
                    ..Default::default()
                }),
                None => m.empty_bind_options.then(MountBindOptions::default),
            },
            volume_options: m.nocopy.then(|| MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            tmpfs_options: m.tmpfs_size.map(|size| MountTmpfsOptions {
                size_bytes: Some(size),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// docker-py's `HostConfig` with what compose v1 passes: Binds,
    /// PortBindings, Links and VolumesFrom always (empty lists and maps
    /// included), LogConfig always, the rest when set.
    fn host_config(&self) -> HostConfig {
        let port_bindings = self
            .ports
            .iter()
            .map(|(key, binds)| {
                (
                    key.clone(),
                    Some(binds.iter().map(PortBind::engine).collect()),
                )
            })
            .collect();
        HostConfig {
            binds: Some(self.binds()),
            port_bindings: Some(port_bindings),
            links: Some(Vec::new()),
            volumes_from: Some(Vec::new()),
            privileged: self.privileged.then_some(true),
            network_mode: Some(self.network_mode.clone()),
            devices: non_empty(self.devices.iter().map(Device::engine).collect()),
            dns: non_empty(self.dns.clone()),
            dns_options: non_empty(self.dns_opt.clone()),
            dns_search: non_empty(self.dns_search.clone()),
            restart_policy: self.restart.as_ref().map(Restart::engine),
            cap_add: non_empty(self.cap_add.clone()),
            cap_drop: non_empty(self.cap_drop.clone()),
            memory: self.mem_limit,
            memory_reservation: self.mem_reservation,
            ulimits: non_empty(self.ulimits.iter().map(Ulimit::engine).collect()),
            log_config: Some(HostConfigLogConfig {
                typ: Some(self.logging.driver.clone()),
                config: Some(self.logging.options.clone().into_iter().collect()),
            }),
            extra_hosts: non_empty(self.extra_hosts.clone()),
            readonly_rootfs: self.read_only.then_some(true),
            security_opt: non_empty(self.security_opt.clone()),
            shm_size: self.shm_size,
            sysctls: non_empty_map(&self.sysctls),
            tmpfs: non_empty_map(&self.tmpfs),
            init: self.init.then_some(true),
            nano_cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            runtime: self.runtime.clone(),
            group_add: non_empty(self.group_add.clone()),
            mounts: non_empty(self.mounts()),
            ..Default::default()
        }
    }

    /// The primary network only, as `build_default_networking_config`.
    /// compose creates it with an empty IPAMConfig, but before start it
    /// finds no short-ID alias there (the engine adds it at start), so it
    /// disconnects and reconnects it like the others: the container ends
    /// up with IPAMConfig only when an address is set, which is what is
    /// sent here.
    fn networking_config(&self) -> Option<NetworkingConfig> {
        let primary = self.networks.first()?;
        let endpoints = HashMap::from([(primary.name.clone(), primary.endpoint())]);
        Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        })
    }

    fn later_networks(&self) -> Vec<(String, EndpointSettings)> {
        self.networks
            .iter()
            .skip(1)
            .map(|a| (a.name.clone(), a.endpoint()))
            .collect()
    }

    /// The compose keys that differ between two specs, in a stable
    /// (alphabetical) order; networks are named `networks.<key>` or, for
    /// one setting, `networks.<key>.aliases` and the like.
    pub fn changed_keys(&self, other: &ContainerSpec) -> Vec<String> {
        let (a, b) = (json_fields(self), json_fields(other));
        let mut keys = Vec::new();
        for (field, value) in &a {
            if field == "networks" {
                keys.extend(network_changes(&self.networks, &other.networks));
            } else if b.get(field) != Some(value) {
                keys.push(compose_key(field).to_owned());
            }
        }
        keys
    }
}

fn json_fields(spec: &ContainerSpec) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn compose_key(field: &str) -> &str {
    match field {
        "name" => "container_name",
        other => other,
    }
}

fn network_changes(a: &[Attachment], b: &[Attachment]) -> Vec<String> {
    let keys: BTreeSet<&String> = a.iter().chain(b).map(|n| &n.key).collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (
            a.iter().find(|n| &n.key == key),
            b.iter().find(|n| &n.key == key),
        );
        match (x, y) {
            (Some(x), Some(y)) if x.name == y.name => {
                for (sub, same) in [
                    ("aliases", x.aliases == y.aliases),
                    ("ipv4_address", x.ipv4_address == y.ipv4_address),
                    ("ipv6_address", x.ipv6_address == y.ipv6_address),
                ] {
                    if !same {
                        out.push(format!("networks.{key}.{sub}"));
                    }
                }
            }
            _ => out.push(format!("networks.{key}")),
        }
    }
    out
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn non_empty_map(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.clone().into_iter().collect())
}

impl Attachment {
    /// docker-py's `EndpointConfig`: IPAMConfig only with an address.
    fn endpoint(&self) -> EndpointSettings {
        let ipam = (self.ipv4_address.is_some() || self.ipv6_address.is_some()).then(|| {
            EndpointIpamConfig {
                ipv4_address: self.ipv4_address.clone(),
                ipv6_address: self.ipv6_address.clone(),
                ..Default::default()
            }
        });
        EndpointSettings {
            aliases: Some(self.aliases.clone()),
            ipam_config: ipam,
            ..Default::default()
        }
    }
}

impl Health {
    fn engine(&self) -> HealthConfig {
        HealthConfig {
            test: self.test.clone(),
            interval: self.interval,
            timeout: self.timeout,
            retries: self.retries,
            start_period: self.start_period,
            ..Default::default()
        }
    }
}

impl PortBind {
    fn engine(&self) -> PortBinding {
        PortBinding {
            host_ip: Some(self.host_ip.clone()),
            host_port: Some(self.host_port.clone()),
        }
    }
}

impl Restart {
    fn engine(&self) -> RestartPolicy {
        RestartPolicy {
            name: self.name.parse().ok(),
            maximum_retry_count: Some(self.maximum_retry_count),
        }
    }
}

impl Device {
    fn engine(&self) -> DeviceMapping {
        DeviceMapping {
            path_on_host: Some(self.path_on_host.clone()),
            path_in_container: Some(self.path_in_container.clone()),
            cgroup_permissions: Some(self.cgroup_permissions.clone()),
        }
    }
}

impl Ulimit {
    fn engine(&self) -> ResourcesUlimits {
        ResourcesUlimits {
            name: Some(self.name.clone()),
            soft: Some(self.soft),
            hard: Some(self.hard),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::LoadOptions;

    fn project(yaml: &str) -> (tempfile::TempDir, ComposeProject) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(&file, yaml).unwrap();
        let p = ComposeProject::load(&[file], "proj", &LoadOptions::default()).unwrap();
        (dir, p)
    }

    fn spec(yaml: &str) -> ContainerSpec {
        let (_dir, p) = project(yaml);
        desired(&p, "api", "proj_api").unwrap()
    }

    /// The error after its location, which must be the service's line.
    fn error(yaml: &str) -> String {
        let (_dir, p) = project(yaml);
        let e = format!("{:#}", desired(&p, "api", "proj_api").unwrap_err());
        let (at, rest) = e.split_once(": service `api`").unwrap_or(("", &e));
        assert!(at.ends_with("docker-compose.yml:2"), "{e}");
        format!("service `api`{rest}")
    }

    fn body(spec: &ContainerSpec) -> serde_json::Value {
        serde_json::to_value(spec.create_body(&[]).0).unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn config_fields_names_and_labels() {
        let (_dir, p) = project(
            r#"
services:
  api:
    image: example/api:1
    command: sh -c "echo 'hi there'"
    entrypoint: ["/init", "--"]
    environment: ["B=2", "A=1"]
    working_dir: /srv
    user: "1000:1000"
    hostname: api-host
    domainname: example.org
    tty: true
    stdin_open: true
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    labels:
      team: core
      com.docker.compose.project: spoofed
  other:
    image: x
    container_name: fixed
"#,
        );
        let s = desired(&p, "api", "example/api:1").unwrap();
        assert_eq!(s.name, "proj-api-1");
        assert_eq!(desired(&p, "other", "x").unwrap().name, "fixed");
        assert_eq!(s.image, "example/api:1");
        assert_eq!(s.command, Some(strings(&["sh", "-c", "echo 'hi there'"])));
        assert_eq!(s.entrypoint, Some(strings(&["/init", "--"])));
        assert_eq!(s.environment, strings(&["B=2", "A=1"]));
        assert_eq!(s.stop_grace_period, Some(90));
        let b = body(&s);
        assert_eq!(b["User"], "1000:1000");
        assert_eq!(b["Hostname"], "api-host");
        assert_eq!(b["Domainname"], "example.org");
        assert_eq!(b["WorkingDir"], "/srv");
        assert_eq!(b["Tty"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["StdinOnce"], false);
        assert_eq!(b["StopSignal"], "SIGINT");
        assert_eq!(b["StopTimeout"], 90);
        assert_eq!(b["Env"], serde_json::json!(["B=2", "A=1"]));
        let labels = &b["Labels"];
        assert_eq!(labels["team"], "core");
        assert_eq!(labels[LABEL_PROJECT], "proj");
        assert_eq!(labels[LABEL_SERVICE], "api");
        assert_eq!(labels[LABEL_ONE_OFF], "False");
        assert_eq!(labels[LABEL_CONTAINER_NUMBER], "1");
        assert_eq!(labels[LABEL_VERSION], "2.40.3");
        assert_eq!(labels[LABEL_DEPENDS_ON], "");
        assert_eq!(labels[LABEL_WORKING_DIR], p.dir.to_string_lossy().as_ref());
        let file = p.files[0].to_string_lossy().into_owned();
        assert_eq!(labels[LABEL_CONFIG_FILES], file.as_str());
        // Added at create, outside the spec's hash.
        assert!(labels.get("com.docker.compose.config-hash").is_none());
    }

    #[test]
    fn the_depends_on_label_is_compose_v2s_sorted() {
        let others = "  db:\n    image: y\n  redis:\n    image: z\n";
        let short = spec(&format!(
            "services:\n  api:\n    image: x\n    depends_on: [redis, db]\n{others}"
        ));
        assert_eq!(
            short.labels[LABEL_DEPENDS_ON],
            "db:service_started:false,redis:service_started:false"
        );
        let long = spec(&format!(
            "services:\n  api:\n    image: x\n    depends_on:\n      db: {{condition: service_healthy, restart: true}}\n{others}"
        ));
        assert_eq!(long.labels[LABEL_DEPENDS_ON], "db:service_healthy:true");
    }

    #[test]
    fn compose_always_sends_these_even_empty() {
        let b = body(&spec("services:\n  api:\n    image: x\n"));
        let h = &b["HostConfig"];
        assert_eq!(b["Volumes"], serde_json::json!({}));
        assert_eq!(h["Binds"], serde_json::json!([]));
        assert_eq!(h["PortBindings"], serde_json::json!({}));
        assert_eq!(h["Links"], serde_json::json!([]));
        assert_eq!(h["VolumesFrom"], serde_json::json!([]));
        assert_eq!(
            h["LogConfig"],
            serde_json::json!({"Type": "", "Config": {}})
        );
        assert_eq!(h["NetworkMode"], "proj_default");
        assert!(
            b.get("Env").is_none() && b.get("Cmd").is_none() && b.get("ExposedPorts").is_none()
        );
        for absent in [
            "Privileged",
            "ReadonlyRootfs",
            "Init",
            "Memory",
            "NanoCpus",
            "Mounts",
        ] {
            assert!(h.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn hash_is_stable_and_changed_keys_name_the_key() {
        // One directory: the working-dir and config-files labels are hashed.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose.yml");
        let load = |yaml: &str| {
            std::fs::write(&file, yaml).unwrap();
            let p =
                ComposeProject::load(std::slice::from_ref(&file), "proj", &LoadOptions::default());
            desired(&p.unwrap(), "api", "proj_api").unwrap()
        };
        let yaml = "services:\n  api:\n    image: x\n    environment: [A=1]\n    ports: [\"80\"]\n";
        let (a, b) = (load(yaml), load(yaml));
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        assert!(a.changed_keys(&b).is_empty());
        let c = load(&yaml.replace("A=1", "A=2"));
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.changed_keys(&c), ["environment"]);
        let d = load(&yaml.replace("A=1", "A=2").replace("\"80\"", "\"81\""));
        assert_eq!(a.changed_keys(&d), ["environment", "ports"]);
        let json = serde_json::to_string(&a).unwrap();
        let back: ContainerSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.hash(), a.hash());
    }

    #[test]
    fn single_instances_say_why() {
        let why = |yaml: &str| spec(yaml).single_instance();
        assert_eq!(
            why("services:\n  api:\n    image: x\n    ports: [\"80\"]\n"),
            None
        );
        let named = why("services:\n  api:\n    image: x\n    container_name: bot\n").unwrap();
        assert!(named.contains("container_name `bot`"), "{named}");
        let port =
            why("services:\n  api:\n    image: x\n    ports: [\"127.0.0.1:8080:80\"]\n").unwrap();
        assert!(port.contains("8080"), "{port}");
        let ip = why(
            "services:\n  api:\n    image: x\n    networks:\n      n:\n        ipv4_address: 10.9.0.5\n\
             networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.9.0.0/24\n",
        )
        .unwrap();
        assert!(ip.contains("10.9.0.5"), "{ip}");
    }

    #[test]
    fn extra_labels_are_not_hashed() {
        let s = spec("services:\n  api:\n    image: x\n");
        let hash = s.hash();
        let (b, _) = s.create_body(&[("slipway.spec".into(), hash.clone())]);
        assert_eq!(b.labels.unwrap()["slipway.spec"], hash);
        assert_eq!(s.hash(), hash);
    }

    #[test]
    fn ports_short_long_and_expose() {
        let s = spec(
            r#"
services:
  api:
    image: x
    ports:
      - "127.0.0.1:8080:80"
      - "8081:81/udp"
      - "82"
      - "8000-8001:9000-9001"
      - "7000-7010:83"
      - "127.0.0.1::84"
      - "[::1]:8085:85"
      - "8086:80"
    expose: ["3000", "3001-3002/udp"]
"#,
        );
        let bind = |ip: &str, port: &str| PortBind {
            host_ip: ip.into(),
            host_port: port.into(),
        };
        assert_eq!(
            s.ports["80/tcp"],
            [bind("127.0.0.1", "8080"), bind("", "8086")]
        );
        assert_eq!(s.ports["81/udp"], [bind("", "8081")]);
        assert_eq!(s.ports["82/tcp"], [bind("", "")]);
        assert_eq!(s.ports["9000/tcp"], [bind("", "8000")]);
        assert_eq!(s.ports["9001/tcp"], [bind("", "8001")]);
        assert_eq!(s.ports["83/tcp"], [bind("", "7000-7010")]);
        assert_eq!(s.ports["84/tcp"], [bind("127.0.0.1", "")]);
        assert_eq!(s.ports["85/tcp"], [bind("::1", "8085")]);
        let b = body(&s);
        let exposed: Vec<&String> = b["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(
            exposed,
            [
                "3000",
                "3001-3002/udp",
                "80/tcp",
                "81/udp",
                "82/tcp",
                "83/tcp",
                "84/tcp",
                "85/tcp",
                "9000/tcp",
                "9001/tcp"
            ]
        );
        assert_eq!(
            b["HostConfig"]["PortBindings"]["80/tcp"],
            serde_json::json!([
                {"HostIp": "127.0.0.1", "HostPort": "8080"},
                {"HostIp": "", "HostPort": "8086"}
            ])
        );
        let long = spec(
            "services:\n  api:\n    image: x\n    ports:\n      - {target: 80, published: 8080, protocol: udp, mode: host}\n      - {target: 81}\n",
        );
        assert_eq!(long.ports["80/udp"], [bind("", "8080")]);
        assert_eq!(long.ports["81/tcp"], [bind("", "")]);
        // Both forms in one list, a host IP and a published string in the
        // long one, as compose v2 reads them.
        let mixed = spec(
            "services:\n  api:\n    image: x\n    ports:\n      - \"8080:80\"\n      - {target: 443, host_ip: \"::1\", published: \"8443\"}\n      - {target: 444, host_ip: 127.0.0.1}\n      - 7001\n",
        );
        assert_eq!(mixed.ports["80/tcp"], [bind("", "8080")]);
        assert_eq!(mixed.ports["443/tcp"], [bind("::1", "8443")]);
        assert_eq!(mixed.ports["444/tcp"], [bind("127.0.0.1", "")]);
        assert_eq!(mixed.ports["7001/tcp"], [bind("", "")]);
    }

    #[test]
    fn bad_ports_name_the_service_and_entry() {
        let yaml = "services:\n  api:\n    image: x\n    ports: [\"80\", \"abc:80\"]\n";
        assert_eq!(
            error(yaml),
            format!("service `api`: ports[1] `abc:80`: {NOT_A_PORT}")
        );
        for bad in [
            "80/http",
            "8000-8002:80-81",
            ":80",
            "localhost:80:80",
            "90-80",
            "",
        ] {
            assert!(split_port(bad).is_err(), "{bad}");
        }
        let host =
            "services:\n  api:\n    image: x\n    network_mode: host\n    ports: [\"80:80\"]\n";
        assert!(error(host).contains("network_mode: host"));
    }

    #[test]
    fn volumes_of_every_kind() {
        let (_dir, p) = project(
            r#"
services:
  api:
    image: x
    volumes:
      - ./data:/data
      - /etc/hosts:/etc/hosts:ro
      - cache:/cache/
      - /anon
      - type: bind
        source: ./conf
        target: /conf
        read_only: true
        bind: {propagation: rshared}
      - type: volume
        source: cache
        target: /cache2
        volume: {nocopy: true}
      - type: volume
        target: /anon2
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1048576}
volumes:
  cache: {}
"#,
        );
        let s = desired(&p, "api", "x").unwrap();
        let dir = p.dir.to_string_lossy();
        let b = body(&s);
        assert_eq!(
            b["HostConfig"]["Binds"],
            serde_json::json!([
                format!("{dir}/data:/data:rw"),
                "/etc/hosts:/etc/hosts:ro",
                "proj_cache:/cache:rw"
            ])
        );
        let volumes: Vec<&String> = b["Volumes"].as_object().unwrap().keys().collect();
        assert_eq!(volumes, ["/anon", "/cache", "/data", "/etc/hosts"]);
        assert_eq!(
            b["HostConfig"]["Mounts"],
            serde_json::json!([
                {"Target": "/conf", "Source": format!("{dir}/conf"), "Type": "bind", "ReadOnly": true,
                 "BindOptions": {"Propagation": "rshared"}},
                {"Target": "/cache2", "Source": "proj_cache", "Type": "volume", "ReadOnly": false,
                 "VolumeOptions": {"NoCopy": true}},
                {"Target": "/anon2", "Type": "volume", "ReadOnly": false},
                {"Target": "/scratch", "Type": "tmpfs", "ReadOnly": false,
                 "TmpfsOptions": {"SizeBytes": 1048576}}
            ])
        );
        assert_eq!(s.volume_names(), ["proj_cache"]);
    }

    #[test]
    fn volume_errors() {
        let undeclared = "services:\n  api:\n    image: x\n    volumes: [\"data:/data\"]\n";
        assert_eq!(
            error(undeclared),
            "service `api`: volumes[0] `data:/data`: named volume `data` is not declared in the top-level `volumes:`"
        );
        let dup = "services:\n  api:\n    image: x\n    volumes: [\"/a:/x\", \"/b:/x/\"]\n";
        assert!(
            error(dup).contains("duplicate mount point `/x`"),
            "{}",
            error(dup)
        );
        let parts = "services:\n  api:\n    image: x\n    volumes: [\"/a:/b:ro:z\"]\n";
        assert!(error(parts).contains("volumes[0] `/a:/b:ro:z`"));
        let selinux = "services:\n  api:\n    image: x\n    volumes:\n      - {type: bind, source: /a, target: /b, bind: {selinux: z}}\n";
        assert!(error(selinux).contains("`bind.selinux` is applied with"));
    }

    #[test]
    fn a_bind_that_may_create_its_path_is_a_binds_entry_as_compose_v2_sends_it() {
        let s = spec(
            "services:\n  api:\n    image: x\n    volumes:\n      - {type: bind, source: /srv/a, target: /a/, read_only: true, bind: {create_host_path: true, selinux: Z}}\n      - {type: bind, source: /srv/b, target: /b, bind: {create_host_path: true}}\n",
        );
        assert_eq!(
            body(&s)["HostConfig"]["Binds"],
            serde_json::json!(["/srv/a:/a:ro,Z", "/srv/b:/b:rw"])
        );
    }

    #[test]
    fn anonymous_volumes_carry_over_without_changing_the_hash() {
        let s = spec(
            r#"
services:
  api:
    image: x
    volumes:
      - /anon
      - /srv:/bound
      - type: volume
        target: /anon2
"#,
        );
        let existing = vec![
            ("/anon".to_owned(), "aaa".to_owned()),
            ("/bound".to_owned(), "bbb".to_owned()),
            ("/anon2".to_owned(), "ccc".to_owned()),
            ("/image-vol".to_owned(), "ddd".to_owned()),
            ("/gone".to_owned(), "eee".to_owned()),
        ];
        let carried = s.with_anonymous_volumes(&existing, &["/image-vol/".to_owned()]);
        assert_eq!(carried.hash(), s.hash());
        let b = body(&carried);
        assert_eq!(
            b["HostConfig"]["Binds"],
            serde_json::json!(["/srv:/bound:rw", "aaa:/anon:rw", "ddd:/image-vol:rw"])
        );
        assert_eq!(b["HostConfig"]["Mounts"][0]["Source"], "ccc");
    }

    #[test]
    fn healthchecks() {
        let s = spec(
            r#"
services:
  api:
    image: x
    healthcheck:
      test: curl -f http://localhost/
      interval: 1m30s
      timeout: 500ms
      retries: 3
      start_period: 1.5s
"#,
        );
        assert_eq!(
            s.healthcheck,
            Some(Health {
                test: Some(strings(&["CMD-SHELL", "curl -f http://localhost/"])),
                interval: Some(90_000_000_000),
                timeout: Some(500_000_000),
                retries: Some(3),
                start_period: Some(1_500_000_000),
            })
        );
        let list = spec(
            "services:\n  api:\n    image: x\n    healthcheck:\n      test: [CMD, \"true\"]\n",
        );
        assert_eq!(
            list.healthcheck.unwrap().test,
            Some(strings(&["CMD", "true"]))
        );
        let off = spec("services:\n  api:\n    image: x\n    healthcheck:\n      disable: true\n");
        assert_eq!(
            body(&off)["Healthcheck"],
            serde_json::json!({"Test": ["NONE"]})
        );
        let bad = "services:\n  api:\n    image: x\n    healthcheck:\n      test: [curl]\n";
        assert!(error(bad).contains("NONE, CMD or CMD-SHELL"));
        let mixed = "services:\n  api:\n    image: x\n    healthcheck:\n      disable: true\n      interval: 5s\n";
        assert!(error(mixed).contains("cannot be combined"));
        let dur = "services:\n  api:\n    image: x\n    healthcheck:\n      interval: \"5\"\n";
        assert!(
            error(dur).contains("healthcheck.interval `5`: not a duration"),
            "{}",
            error(dur)
        );
    }

    #[test]
    fn networks_primary_aliases_and_addresses() {
        let (_dir, p) = project(
            r#"
services:
  api:
    image: x
    networks:
      zeta:
        aliases: [backend, api]
        ipv4_address: 172.30.0.5
      alpha:
  solo:
    image: x
  hostnet:
    image: x
    network_mode: host
networks:
  zeta: {}
  alpha:
    name: custom-alpha
"#,
        );
        let s = desired(&p, "api", "x").unwrap();
        assert_eq!(s.network_mode, "custom-alpha");
        assert_eq!(s.network_names(), ["custom-alpha", "proj_zeta"]);
        let (b, later) = s.create_body(&[]);
        let b = serde_json::to_value(b).unwrap();
        assert_eq!(
            b["NetworkingConfig"],
            serde_json::json!({"EndpointsConfig": {"custom-alpha": {"Aliases": ["api", "proj-api-1"]}}})
        );
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].0, "proj_zeta");
        assert_eq!(
            serde_json::to_value(&later[0].1).unwrap(),
            serde_json::json!({"Aliases": ["api", "proj-api-1", "backend"], "IPAMConfig": {"IPv4Address": "172.30.0.5"}})
        );
        let solo = desired(&p, "solo", "x").unwrap();
        assert_eq!(solo.network_names(), ["proj_default"]);
        let host = desired(&p, "hostnet", "x").unwrap();
        let (b, later) = host.create_body(&[]);
        assert!(b.networking_config.is_none() && later.is_empty());
        assert_eq!(b.host_config.unwrap().network_mode.as_deref(), Some("host"));

        let mut other = s.clone();
        other.networks[1].aliases.push("more".into());
        assert_eq!(s.changed_keys(&other), ["networks.zeta.aliases"]);
        other.networks.pop();
        assert_eq!(s.changed_keys(&other), ["networks.zeta"]);
    }

    #[test]
    fn host_config_fields() {
        let s = spec(
            r#"
services:
  api:
    image: x
    restart: on-failure:3
    privileged: true
    read_only: true
    init: true
    cap_add: [net_admin, SYS_TIME, CAP_NET_ADMIN]
    cap_drop: [ALL]
    dns: [1.1.1.1]
    dns_opt: [ndots:2]
    dns_search: [example.org]
    extra_hosts: ["db:10.0.0.2"]
    devices: ["/dev/fuse", "/dev/sda:/dev/xvda:r"]
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: 3}
    security_opt: ["no-new-privileges:true", "label=disable"]
    sysctls: {net.core.somaxconn: 1024, net.ipv4.tcp_syncookies: 0}
    tmpfs: ["/run:size=64k", /tmp]
    shm_size: 64m
    mem_limit: 1.5g
    mem_reservation: 512k
    cpus: 0.5
    cpu_shares: 512
"#,
        );
        let h = &body(&s)["HostConfig"];
        let expect = serde_json::json!({
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
            "Privileged": true,
            "ReadonlyRootfs": true,
            "Init": true,
            "CapAdd": ["CAP_NET_ADMIN", "CAP_SYS_TIME"],
            "CapDrop": ["ALL"],
            "Dns": ["1.1.1.1"],
            "DnsOptions": ["ndots:2"],
            "DnsSearch": ["example.org"],
            "ExtraHosts": ["db:10.0.0.2"],
            "Devices": [
                {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
                {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"}
            ],
            "Ulimits": [
                {"Name": "nofile", "Soft": 1024, "Hard": 2048},
                {"Name": "nproc", "Soft": 512, "Hard": 512}
            ],
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            "SecurityOpt": ["no-new-privileges:true", "label=disable"],
            "Sysctls": {"net.core.somaxconn": "1024", "net.ipv4.tcp_syncookies": "0"},
            "Tmpfs": {"/run": "size=64k", "/tmp": ""},
            "ShmSize": 67108864,
            "Memory": 1610612736,
            "MemoryReservation": 524288,
            "NanoCpus": 500000000,
            "CpuShares": 512,
        });
        for (key, value) in expect.as_object().unwrap() {
            assert_eq!(&h[key], value, "{key}");
        }
    }

    #[test]
    fn pids_runtime_groups_and_deploy_resources_as_compose_v2_applies_them() {
        let s = spec(
            r#"
services:
  api:
    image: x
    mem_limit: 512M
    cpus: 0.5
    runtime: runc
    group_add: [video, 44]
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 512M, pids: 100}
        reservations: {cpus: "0.25", memory: 128M}
      restart_policy: {condition: on-failure, max_attempts: 3, delay: 5s}
    restart: always
"#,
        );
        let h = &body(&s)["HostConfig"];
        assert_eq!(h["Memory"], 536_870_912);
        assert_eq!(h["NanoCpus"], 500_000_000);
        assert_eq!(h["PidsLimit"], 100);
        assert_eq!(h["MemoryReservation"], 134_217_728);
        assert_eq!(h["Runtime"], "runc");
        assert_eq!(h["GroupAdd"], serde_json::json!(["video", "44"]));
        assert_eq!(
            h["RestartPolicy"],
            serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        let any = spec(
            "services:\n  api:\n    image: x\n    deploy:\n      restart_policy: {max_attempts: 2}\n",
        );
        assert_eq!(any.restart.unwrap().name, "always");
        let own = spec("services:\n  api:\n    image: x\n    pids_limit: 50\n");
        assert_eq!(body(&own)["HostConfig"]["PidsLimit"], 50);
        // A service key and its deploy.resources twin that differ (an
        // absent twin in a present section is zero) are refused, as compose
        // v2 refuses the project.
        for (own, resources, twin) in [
            ("cpus: 2", "limits: {cpus: \"0.5\"}", "limits.cpus"),
            ("mem_limit: 1g", "limits: {cpus: \"0.5\"}", "limits.memory"),
            ("pids_limit: 50", "limits: {pids: 100}", "limits.pids"),
            (
                "mem_reservation: 64m",
                "reservations: {}",
                "reservations.memory",
            ),
        ] {
            let yaml = format!(
                "services:\n  api:\n    image: x\n    {own}\n    deploy:\n      resources:\n        {resources}\n"
            );
            let e = error(&yaml);
            assert!(
                e.contains(&format!("`deploy.resources.{twin}` differ")),
                "{own}: {e}"
            );
        }
        // Unset, they are not in the hashed JSON: an upgrade recreates nothing.
        let plain = serde_json::to_string(&spec("services:\n  api:\n    image: x\n")).unwrap();
        for key in ["pids_limit", "runtime", "group_add"] {
            assert!(!plain.contains(key), "{plain}");
        }
    }

    #[test]
    fn host_config_errors() {
        let restart = "services:\n  api:\n    image: x\n    restart: sometimes\n";
        assert!(error(restart).starts_with("service `api`: restart `sometimes`"));
        let size = "services:\n  api:\n    image: x\n    mem_limit: 1tb\n";
        assert!(error(size).contains("mem_limit `1tb`: not a size"));
        // The engine takes whole seconds; compose v2 truncates.
        let grace = "services:\n  api:\n    image: x\n    stop_grace_period: 2500ms\n";
        assert_eq!(spec(grace).stop_grace_period, Some(2));
        let grace = "services:\n  api:\n    image: x\n    stop_grace_period: soon\n";
        assert!(error(grace).contains("not a duration"));
        let seccomp =
            "services:\n  api:\n    image: x\n    security_opt: [\"seccomp:profile.json\"]\n";
        assert!(error(seccomp).contains("seccomp profile file"));
        let mode = "services:\n  api:\n    image: x\n    network_mode: bridge\n";
        assert_eq!(spec(mode).network_mode, "bridge");
    }

    #[test]
    fn durations_match_compose() {
        // Values from compose v1's parse_nanoseconds_int.
        let cases = [
            ("1s", 1_000_000_000),
            ("1m30s", 90_000_000_000),
            ("500ms", 500_000_000),
            ("1h", 3_600_000_000_000),
            ("0.1s", 100_000_000),
            ("0.3s", 300_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("1us", 1000),
            ("1µs", 1000),
            ("100ns", 100),
            (" 5S ", 5_000_000_000),
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
        ];
        for (text, ns) in cases {
            assert_eq!(nanoseconds("t", Some(text)), Ok(Some(ns)), "{text}");
        }
        for bad in ["", "5", "1m1", "1ms1s", "1.2.3s", "1m 30s", "s"] {
            assert!(timeparse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sizes_match_docker_py() {
        let cases = [
            ("64m", 67_108_864),
            ("1g", 1_073_741_824),
            ("512k", 524_288),
            ("1.5g", 1_610_612_736),
            ("100", 100),
            ("1gb", 1_073_741_824),
            ("64MB", 67_108_864),
            ("0", 0),
            ("2b", 2),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), Some(bytes), "{text}");
        }
        for bad in ["1t", "kb", "abc", "1kib"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn shlex_matches_python() {
        let cases: [(&str, &[&str]); 6] = [
            ("npm start", &["npm", "start"]),
            (
                r#"sh -c "echo \"hi\" \$HOME""#,
                &["sh", "-c", r#"echo "hi" \$HOME"#],
            ),
            ("a '' b", &["a", "", "b"]),
            (r"a\ b c", &["a b", "c"]),
            (r#"x"y z"w"#, &["xy zw"]),
            ("  ", &[]),
        ];
        for (text, words) in cases {
            assert_eq!(shlex_split(text).unwrap(), strings(words), "{text}");
        }
        assert!(shlex_split("it's").is_err());
        assert!(shlex_split("end\\").is_err());
    }

    #[test]
    fn normpath_matches_python() {
        for (p, n) in [
            ("//a/b", "//a/b"),
            ("///a", "/a"),
            ("/a/./b/../c/", "/a/c"),
            ("", "."),
            ("a/..", "."),
            ("../x", "../x"),
            ("/..", "/"),
        ] {
            assert_eq!(normpath(p), n, "{p}");
        }
    }
}
