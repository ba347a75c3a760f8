//! The compose corpus (tests/compose): projects written in the shapes
//! public compose projects use (Sentry-style anchors, Zulip-style override
//! files with secrets, mailcow-style `${BIND:-}` ports, Mattermost-style
//! `read_only: ${X}`, Airflow-style `<<` merges of `depends_on`, …), each
//! loaded by slipway and by Compose v2 (`docker compose config`), the
//! reference. Every project slipway accepts must derive, service by
//! service, what compose v2 derives; every project it refuses must be one
//! listed in [`REFUSED`], and the refusal must name the key, its file and
//! its line.
//!
//! A fixture is a directory: `compose.yaml` or `docker-compose.yml` (with
//! its `.override.yml`), or the files listed one per line in `files`.

use crate::harness::repo_root;
use serde_json::{Map, Value, json};
use slipway::compose::{ComposeProject, ComposeV2, LoadOptions};
use slipway::desired::{ContainerSpec, Volume};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What slipway refuses today: the fixture, the key its message names and
/// the `file:line` it points at.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "networks-external-and-modes",
        "`network_mode`",
        "compose.yaml:12",
    ),
    ("version-key-legacy", "`links`", "docker-compose.yml:10"),
];

/// Fields compared as they are, as booleans (compose leaves out a false
/// one), and as lists (compose leaves out an empty one).
const AS_IS: [&str; 7] = [
    "command",
    "entrypoint",
    "working_dir",
    "user",
    "hostname",
    "domainname",
    "stop_signal",
];
const FLAGS: [&str; 5] = ["tty", "stdin_open", "privileged", "read_only", "init"];
const LISTS: [&str; 6] = [
    "cap_add",
    "cap_drop",
    "dns",
    "dns_opt",
    "dns_search",
    "security_opt",
];

/// The project name both loaders are given: compose's `-p`.
const PROJECT: &str = "corpus";

fn fixtures() -> Vec<PathBuf> {
    let root = repo_root().join("tests/compose");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The compose files of a fixture, in `-f` order.
fn compose_files(dir: &Path) -> Vec<PathBuf> {
    if let Ok(list) = std::fs::read_to_string(dir.join("files")) {
        return list.lines().map(|l| dir.join(l.trim())).collect();
    }
    let main = ["compose.yaml", "docker-compose.yml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{}: no compose file", dir.display()));
    let mut files = vec![main];
    let over = dir.join("docker-compose.override.yml");
    if over.is_file() {
        files.push(over);
    }
    files
}

/// Compose v2's model of the project: `docker compose config --format json`,
/// with the `$$` it writes so that its output loads again read back as the
/// `$` the container gets.
fn compose_v2(dir: &Path, files: &[PathBuf]) -> Value {
    let mut cmd = Command::new("docker");
    cmd.arg("compose").arg("-p").arg(PROJECT);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd
        .args(["config", "--format", "json"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker compose config in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut model = serde_json::from_slice(&out.stdout).unwrap();
    unescape_dollars(&mut model);
    model
}

fn unescape_dollars(v: &mut Value) {
    match v {
        Value::String(s) => *s = s.replace("$$", "$"),
        Value::Array(items) => items.iter_mut().for_each(unescape_dollars),
        Value::Object(map) => map.values_mut().for_each(unescape_dollars),
        _ => {}
    }
}

#[test]
fn every_corpus_project_loads_as_compose_v2_reads_it_or_is_refused_by_key_file_and_line() {
    let mut problems = Vec::new();
    let mut loaded = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let files = compose_files(&dir);
        let reference = compose_v2(&dir, &files);
        let refusal = REFUSED.iter().find(|(f, _, _)| *f == name);
        match (
            ComposeProject::load(&files, PROJECT, &LoadOptions::default()),
            refusal,
        ) {
            (Ok(project), None) => {
                loaded += 1;
                problems.extend(compare(&name, &project, &reference));
            }
            (Ok(_), Some(_)) => problems.push(format!(
                "{name}: loads now; take it out of REFUSED so that it is compared"
            )),
            (Err(e), None) => problems.push(format!("{name}: refused: {e:#}")),
            (Err(e), Some((_, key, at))) => {
                let message = format!("{e:#}");
                if !message.contains(key) || !message.contains(&format!("/{name}/{at}")) {
                    problems.push(format!(
                        "{name}: the refusal should name {key} at {at}: {message}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(loaded >= 20, "only {loaded} corpus projects load");
}

/// The config-hash slipway labels each service's container with is the one
/// compose v2 computes. Checked against `docker compose config --hash`,
/// which in 2.40.3 hashes a service before folding its `env_file` in (not
/// what `up` labels, docker/compose#14001): projects with an env_file are
/// left to the unit test that holds the labels `up` wrote.
#[test]
fn every_corpus_project_gets_compose_v2s_config_hash() {
    let mut compared = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let files = compose_files(&dir);
        let Ok(project) = ComposeProject::load(&files, PROJECT, &LoadOptions::default()) else {
            continue;
        };
        let texts: String = files
            .iter()
            .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
            .collect();
        if texts.contains("env_file") {
            continue;
        }
        let ours = ComposeV2::read(&project).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut cmd = Command::new("docker");
        cmd.arg("compose").arg("-p").arg(PROJECT);
        for f in &files {
            cmd.arg("-f").arg(f);
        }
        let out = cmd
            .args(["--profile", "*", "config", "--hash", "*"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(s, h)| (s.to_owned(), h.trim().to_owned()))
            .collect();
        assert_eq!(ours.hashes, theirs, "{name}");
        assert!(ours.version.starts_with("2."), "{}", ours.version);
        compared += theirs.len();
    }
    assert!(compared >= 60, "only {compared} services compared");
}

/// Every difference between slipway's containers and compose v2's model,
/// service by service.
fn compare(fixture: &str, project: &ComposeProject, reference: &Value) -> Vec<String> {
    let theirs = reference["services"].as_object().unwrap();
    let ours: Vec<&String> = project
        .services
        .iter()
        .filter(|(_, def)| def.active)
        .map(|(name, _)| name)
        .collect();
    let mut problems = Vec::new();
    let mut names: Vec<&String> = theirs.keys().collect();
    names.sort();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    if names != ours_sorted {
        problems.push(format!(
            "{fixture}: services {ours_sorted:?}, compose v2: {names:?}"
        ));
        return problems;
    }
    for (name, service) in theirs {
        let def = &project.services[name.as_str()];
        let image = def.image_tag(PROJECT);
        let spec = match slipway::desired::desired(project, name, &image) {
            Ok(spec) => spec,
            Err(e) => {
                problems.push(format!("{fixture}: {name}: {e:#}"));
                continue;
            }
        };
        let mut want = view_of_compose(name, service, reference);
        let dotenv = repo_root().join("tests/compose").join(fixture).join(".env");
        want.insert(
            "copied",
            sorted(compose_copied(service, reference, &dotenv)),
        );
        let got = view_of_spec(&spec);
        for (key, w) in &want {
            let g = got.get(key).unwrap_or(&Value::Null);
            if g != w {
                problems.push(format!(
                    "{fixture}: {name}: `{key}`: slipway {g}, compose v2 {w}"
                ));
            }
        }
    }
    problems
}

/// The container fields compared, from compose v2's service model.
fn view_of_compose(name: &str, s: &Value, project: &Value) -> BTreeMap<&'static str, Value> {
    let str_list = |key: &str| -> Value {
        match &s[key] {
            Value::Array(items) => Value::Array(items.clone()),
            _ => json!([]),
        }
    };
    let mut v = BTreeMap::new();
    if let Some(image) = s["image"].as_str() {
        v.insert("image", json!(image));
    }
    let env: Map<String, Value> = s["environment"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    v.insert("environment", Value::Object(env));
    for key in AS_IS {
        v.insert(key, s[key].clone());
    }
    for key in FLAGS {
        v.insert(key, json!(s[key].as_bool().unwrap_or(false)));
    }
    for key in LISTS {
        v.insert(key, str_list(key));
    }
    // What compose v2's Docker client sends: upper-cased, `CAP_` before
    // all but `ALL`, once each, sorted.
    for key in ["cap_add", "cap_drop"] {
        let caps: std::collections::BTreeSet<String> = s[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| scalar(c).to_uppercase())
            .map(|c| match c == "ALL" || c.starts_with("CAP_") {
                true => c,
                false => format!("CAP_{c}"),
            })
            .collect();
        v.insert(key, json!(caps));
    }
    v.insert(
        "labels",
        s["labels"]
            .as_object()
            .cloned()
            .map_or(json!({}), Value::Object),
    );
    v.insert("sysctls", strings_map(&s["sysctls"]));
    v.insert("ports", sorted(compose_ports(s)));
    v.insert("expose", sorted(compose_expose(s)));
    v.insert("volumes", sorted(compose_volumes(s, project)));
    v.insert("platform", s["platform"].clone());
    v.insert(
        "tmpfs",
        sorted(str_list("tmpfs").as_array().unwrap().clone()),
    );
    v.insert("healthcheck", compose_health(&s["healthcheck"]));
    v.insert("restart", compose_restart(s));
    v.insert(
        "stop_grace_period",
        s["stop_grace_period"]
            .as_str()
            .map_or(Value::Null, |d| json!(go_duration_ns(d) / 1_000_000_000)),
    );
    v.insert("extra_hosts", sorted(compose_hosts(&s["extra_hosts"])));
    v.insert("ulimits", compose_ulimits(&s["ulimits"]));
    // Outside a swarm, `deploy.resources` wins over the service's own keys
    // (compose v2's `setLimits` and `setReservations`).
    let limits = &s["deploy"]["resources"]["limits"];
    let reservations = &s["deploy"]["resources"]["reservations"];
    let either = |first: &Value, second: &Value| match first {
        Value::Null => second.clone(),
        set => set.clone(),
    };
    v.insert("shm_size", bytes(&s["shm_size"]));
    v.insert(
        "mem_limit",
        bytes(&either(&limits["memory"], &s["mem_limit"])),
    );
    v.insert(
        "mem_reservation",
        bytes(&either(&reservations["memory"], &s["mem_reservation"])),
    );
    let cpus = either(&limits["cpus"], &s["cpus"]);
    v.insert(
        "cpus",
        match cpus {
            Value::Null => Value::Null,
            c => json!((scalar(&c).parse::<f64>().unwrap() * 1e9) as i64),
        },
    );
    v.insert("cpu_shares", s["cpu_shares"].clone());
    let pids = limits["pids"]
        .as_i64()
        .filter(|&p| p > 0)
        .or(s["pids_limit"].as_i64().filter(|&p| p != 0));
    v.insert("pids_limit", json!(pids));
    v.insert("runtime", s["runtime"].clone());
    v.insert("group_add", str_list("group_add"));
    v.insert("logging", compose_logging(&s["logging"]));
    v.insert("networks", sorted(compose_networks(s, project, name)));
    v.insert("network_mode", s["network_mode"].clone());
    if let Some(name) = s["container_name"].as_str() {
        v.insert("container_name", json!(name));
    }
    v
}

/// The same fields, from the container slipway would create.
fn view_of_spec(c: &ContainerSpec) -> BTreeMap<&'static str, Value> {
    let spec = serde_json::to_value(c).unwrap();
    let mut v = BTreeMap::new();
    v.insert("image", json!(c.image));
    let env: Map<String, Value> = c
        .environment
        .iter()
        .map(|kv| {
            let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), json!(val))
        })
        .collect();
    v.insert("environment", Value::Object(env));
    for key in AS_IS.iter().chain(&FLAGS).chain(&LISTS) {
        v.insert(*key, spec[*key].clone());
    }
    let labels: Map<String, Value> = c
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("com.docker.compose.") && !k.starts_with("dev.slipway."))
        .map(|(k, val)| (k.clone(), json!(val)))
        .collect();
    v.insert("labels", Value::Object(labels));
    v.insert("sysctls", spec["sysctls"].clone());
    let ports = c.ports.iter().flat_map(|(key, binds)| {
        binds
            .iter()
            .map(move |b| json!(format!("{}:{}->{key}", b.host_ip, b.host_port)))
    });
    v.insert("ports", sorted(ports.collect()));
    v.insert(
        "expose",
        sorted(c.expose.iter().map(|e| json!(e)).collect()),
    );
    v.insert(
        "volumes",
        sorted(c.volumes.iter().map(spec_volume).collect()),
    );
    v.insert("platform", json!(c.platform));
    let copied = c.copied.iter().map(|f| {
        json!(format!(
            "{} {:o} {}:{} {}",
            f.target, f.mode, f.uid, f.gid, f.digest
        ))
    });
    v.insert("copied", sorted(copied.collect()));
    let tmpfs = c.tmpfs.iter().map(|(path, opts)| match opts.as_str() {
        "" => json!(path),
        _ => json!(format!("{path}:{opts}")),
    });
    v.insert("tmpfs", sorted(tmpfs.collect()));
    v.insert("healthcheck", spec_health(c));
    v.insert(
        "restart",
        c.restart
            .as_ref()
            .map_or(Value::Null, |r| match r.maximum_retry_count {
                0 => json!(r.name),
                n => json!(format!("{}:{n}", r.name)),
            }),
    );
    v.insert("stop_grace_period", spec["stop_grace_period"].clone());
    let hosts = c.extra_hosts.iter().map(|h| {
        let (host, ip) = h.split_once([':', '=']).unwrap_or((h, ""));
        json!(format!("{host}={ip}"))
    });
    v.insert("extra_hosts", sorted(hosts.collect()));
    let ulimits: Map<String, Value> = c
        .ulimits
        .iter()
        .map(|u| (u.name.clone(), json!([u.soft, u.hard])))
        .collect();
    v.insert("ulimits", Value::Object(ulimits));
    for key in [
        "shm_size",
        "mem_limit",
        "mem_reservation",
        "cpus",
        "cpu_shares",
    ] {
        v.insert(key, spec[key].clone());
    }
    v.insert("pids_limit", json!(c.pids_limit));
    v.insert("runtime", json!(c.runtime));
    v.insert("group_add", json!(c.group_add));
    v.insert(
        "logging",
        json!({"driver": c.logging.driver, "options": c.logging.options}),
    );
    let networks = c.networks.iter().map(|n| {
        let aliases: Vec<&String> = n.aliases.iter().filter(|a| **a != c.service).collect();
        json!(format!(
            "{} {} aliases={aliases:?} ipv4={:?}",
            n.key, n.name, n.ipv4_address
        ))
    });
    v.insert("networks", sorted(networks.collect()));
    v.insert(
        "network_mode",
        match c.network_mode.as_str() {
            "host" | "none" | "bridge" => json!(c.network_mode),
            _ => Value::Null,
        },
    );
    if !c.name.starts_with(&format!("{PROJECT}_")) && !c.name.starts_with(&format!("{PROJECT}-")) {
        v.insert("container_name", json!(c.name));
    }
    v
}

fn sorted(mut items: Vec<Value>) -> Value {
    items.sort_by_key(|i| i.to_string());
    Value::Array(items)
}

fn strings_map(v: &Value) -> Value {
    let map: Map<String, Value> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), json!(scalar(v))))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(map)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bytes(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        other => json!(scalar(other).parse::<i64>().unwrap()),
    }
}

/// `host_ip:published->target/protocol` for each of compose's ports.
fn compose_ports(s: &Value) -> Vec<Value> {
    let Some(ports) = s["ports"].as_array() else {
        return Vec::new();
    };
    ports
        .iter()
        .map(|p| {
            json!(format!(
                "{}:{}->{}/{}",
                p["host_ip"].as_str().unwrap_or(""),
                p["published"].as_str().unwrap_or(""),
                p["target"],
                p["protocol"].as_str().unwrap_or("tcp"),
            ))
        })
        .collect()
}

fn compose_expose(s: &Value) -> Vec<Value> {
    let Some(items) = s["expose"].as_array() else {
        return Vec::new();
    };
    items.iter().map(|e| json!(scalar(e))).collect()
}

/// `type:source:target[:ro][:z]`, with a named volume's engine name.
/// The volumes, then each secret and config bound read-only from its file
/// (`/run/secrets/<name>` and `/<name>` unless `target` says otherwise) where
/// no volume holds the path.
fn compose_volumes(s: &Value, project: &Value) -> Vec<Value> {
    let mut out = volume_mounts(s, project);
    let mut targets: Vec<String> = s["volumes"]
        .as_array()
        .map(|v| v.iter().map(|m| scalar(&m["target"])).collect())
        .unwrap_or_default();
    for (key, base) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for r in s[key].as_array().map(Vec::as_slice).unwrap_or_default() {
            let source = scalar(&r["source"]);
            let target = file_target(r, base);
            let Some(file) = project[key][&source]["file"].as_str() else {
                continue;
            };
            if !targets.contains(&target) {
                out.push(json!(format!("bind:{file}:{target}:ro")));
                targets.push(target);
            }
        }
    }
    out
}

/// Each secret and config compose v2 copies in from a value
/// (`setDefaultTarget`, `createTar`): `target mode uid:gid sha256`, the
/// mode 0444 unless set (compose prints it in octal), the value its
/// `content`, or the variable `environment` names as the fixture's .env
/// sets it (`config` does not print it).
fn compose_copied(s: &Value, project: &Value, dotenv: &Path) -> Vec<Value> {
    let env = std::fs::read_to_string(dotenv).unwrap_or_default();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    for (key, base) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for r in s[key].as_array().map(Vec::as_slice).unwrap_or_default() {
            let source = scalar(&r["source"]);
            let def = &project[key][&source];
            let value = match (def["content"].as_str(), def["environment"].as_str()) {
                (Some(content), _) => content.to_owned(),
                (None, Some(name)) => var(name).expect("the fixture's .env sets it"),
                (None, None) => continue,
            };
            let target = file_target(r, base);
            let mode = match &r["mode"] {
                Value::String(m) => u32::from_str_radix(m, 8).unwrap(),
                Value::Number(n) => n.as_u64().unwrap() as u32,
                _ => 0o444,
            };
            let id = |k: &str| r[k].as_str().map_or(0, |v| v.parse::<u64>().unwrap());
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(value.as_bytes()));
            out.push(json!(format!(
                "{target} {mode:o} {}:{} {digest}",
                id("uid"),
                id("gid")
            )));
        }
    }
    out
}

/// Where compose puts a secret or config: its absolute `target`, a
/// relative one under `base`, or `base` + its source's name.
fn file_target(r: &Value, base: &str) -> String {
    match r["target"].as_str() {
        Some(t) if t.starts_with('/') => t.to_owned(),
        Some(t) => format!("{base}{t}"),
        None => format!("{base}{}", scalar(&r["source"])),
    }
}

fn volume_mounts(s: &Value, project: &Value) -> Vec<Value> {
    let Some(items) = s["volumes"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|m| {
            let kind = m["type"].as_str().unwrap();
            let source = match (kind, m["source"].as_str()) {
                ("volume", Some(key)) => project["volumes"][key]["name"]
                    .as_str()
                    .unwrap_or(key)
                    .to_owned(),
                (_, source) => source.unwrap_or("").to_owned(),
            };
            let mut out = format!("{kind}:{source}:{}", m["target"].as_str().unwrap());
            if m["read_only"].as_bool().unwrap_or(false) {
                out.push_str(":ro");
            }
            if let Some(label) = m["bind"]["selinux"].as_str() {
                out.push_str(&format!(":{label}"));
            }
            json!(out)
        })
        .collect()
}

fn spec_volume(v: &Volume) -> Value {
    let flags = |mode: &str| {
        let mut out = String::new();
        let parts: Vec<&str> = mode.split(',').collect();
        if parts.contains(&"ro") {
            out.push_str(":ro");
        }
        for label in ["z", "Z"] {
            if parts.contains(&label) {
                out.push_str(&format!(":{label}"));
            }
        }
        out
    };
    json!(match v {
        Volume::Bind {
            source,
            target,
            mode,
        } => format!("bind:{source}:{target}{}", flags(mode)),
        Volume::Named { name, target, mode } => format!("volume:{name}:{target}{}", flags(mode)),
        Volume::Anonymous { target } => format!("volume::{target}"),
        Volume::Mount(m) => {
            let kind = serde_json::to_value(m.kind).unwrap();
            let ro = if m.read_only { ":ro" } else { "" };
            format!(
                "{}:{}:{}{ro}",
                kind.as_str().unwrap(),
                m.source.as_deref().unwrap_or(""),
                m.target
            )
        }
    })
}

fn compose_health(h: &Value) -> Value {
    if h.is_null() {
        return Value::Null;
    }
    let test = if h["disable"].as_bool().unwrap_or(false) {
        json!(["NONE"])
    } else {
        h["test"].clone()
    };
    let ns = |key: &str| {
        h[key]
            .as_str()
            .map_or(Value::Null, |d| json!(go_duration_ns(d)))
    };
    json!({
        "test": test,
        "interval": ns("interval"),
        "timeout": ns("timeout"),
        "start_period": ns("start_period"),
        "retries": h["retries"],
    })
}

fn spec_health(c: &ContainerSpec) -> Value {
    let Some(h) = &c.healthcheck else {
        return Value::Null;
    };
    json!({
        "test": h.test,
        "interval": h.interval,
        "timeout": h.timeout,
        "start_period": h.start_period,
        "retries": h.retries,
    })
}

/// A Go duration (`1m30s`, `2.5s`, `500ms`) in nanoseconds.
fn go_duration_ns(d: &str) -> i64 {
    let mut total = 0f64;
    let mut rest = d;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..end].parse().unwrap();
        rest = &rest[end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            unit => panic!("unit {unit} in {d}"),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    total as i64
}

/// `host=ip`, as compose v2 prints `extra_hosts`.
fn compose_hosts(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|h| {
                let h = scalar(h);
                let (host, ip) = h.split_once(['=', ':']).unwrap_or((&h, ""));
                json!(format!("{host}={ip}"))
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(host, ip)| json!(format!("{host}={}", scalar(ip))))
            .collect(),
        _ => Vec::new(),
    }
}

fn compose_ulimits(v: &Value) -> Value {
    let map: Map<String, Value> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, limit)| {
                    let pair = match limit {
                        Value::Number(n) => json!([n, n]),
                        _ => json!([limit["soft"], limit["hard"]]),
                    };
                    (name.clone(), pair)
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Object(map)
}

fn compose_logging(v: &Value) -> Value {
    json!({
        "driver": v["driver"].as_str().unwrap_or(""),
        "options": strings_map(&v["options"]),
    })
}

/// `restart`, or what `deploy.restart_policy` makes of it outside a swarm
/// (compose v2's `mapRestartPolicyCondition`; a retry count only where the
/// engine takes one).
fn compose_restart(s: &Value) -> Value {
    let policy = &s["deploy"]["restart_policy"];
    if policy.is_null() {
        return s["restart"].clone();
    }
    let mode = match policy["condition"].as_str().unwrap_or("any") {
        "none" | "no" => "no",
        "any" | "always" => "always",
        other => other,
    };
    match policy["max_attempts"].as_i64() {
        Some(n) if mode == "on-failure" && n > 0 => json!(format!("{mode}:{n}")),
        _ => json!(mode),
    }
}

/// `key engine-name aliases=[..] ipv4=..` for each network the service
/// joins; the service's own name, which the engine always adds as an
/// alias, is left out of the aliases. compose v2 puts the container's name
/// first at create (`getAliases`), which `config` does not print.
fn compose_networks(s: &Value, project: &Value, service: &str) -> Vec<Value> {
    let Some(networks) = s["networks"].as_object() else {
        return Vec::new();
    };
    let container = s["container_name"]
        .as_str()
        .map_or_else(|| format!("{PROJECT}-{service}-1"), str::to_owned);
    networks
        .iter()
        .map(|(key, n)| {
            let name = project["networks"][key]["name"].as_str().unwrap_or(key);
            let file = n["aliases"].as_array().into_iter().flatten().map(scalar);
            let aliases: Vec<String> = std::iter::once(container.clone())
                .chain(file)
                .filter(|a| a != service)
                .collect();
            let ipv4 = n["ipv4_address"].as_str().map(str::to_owned);
            json!(format!("{key} {name} aliases={aliases:?} ipv4={ipv4:?}"))
        })
        .collect()
}
