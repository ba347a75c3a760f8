//! Converge: a deploy derives every container from the compose model
//! (`project.compose_files`, `.env`, `env_file`, interpolation, anchors,
//! multi-file merge) plus the image it just built, and creates, replaces or
//! skips it. The fixture is host/tests/fixtures/converge; Compose v2
//! (`docker compose`, 2.40.3) is the oracle for what a container must look
//! like.
//!
//! CLI and `--json` shapes these tests rely on:
//! - `slipway plan --json backend` and `slipway deploy [--force] --json
//!   backend` print a run report whose `surfaces[name == "backend"].services[]`
//!   entries carry `service`, `action` (`create` | `replace` | `skip`) and
//!   `changed` (compose keys, e.g. `environment`; an entry may be more
//!   precise, `environment.GREETING`, but starts with the key).
//! - `deploy --force` replaces unchanged services too (`action: replace`).
//! - Containers carry compose v2's labels (its config-hash included) plus
//!   `dev.slipway.spec-hash`.
//! - A portless service without a healthcheck that exits within the settle
//!   window (default 5 s) fails the deploy with exit 1 and its last log line.
//! - Bad compose or manifest input exits 2 before anything changes, naming
//!   the file and the line (`file:LINE` or `line LINE`).

use crate::harness::{cache_dir, claim, docker, docker_lenient, json, repo_root, text, unique};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const COMPOSE_FILES: [&str; 2] = ["docker-compose.yml", "docker-compose.override.yml"];
/// The services of `[surface.backend]` in the fixture.
const SERVICES: [&str; 3] = ["api", "worker", "sidecar"];
/// Variables the fixture interpolates; removed from the environment of
/// every slipway and docker-compose run so the developer's shell cannot
/// change the model.
const FIXTURE_VARS: [&str; 6] = [
    "GREETING",
    "API_BIND",
    "STACK_ID",
    "SUBNET_PREFIX",
    "LOG_MAX_SIZE",
    "CONVERGE_UNSET_SECRET",
];
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// The fixture on the real engine

/// A copy of the converge fixture under a unique compose project, on a
/// subnet no other test uses. Dropping it removes every container, network,
/// volume and image the project made, and nothing else.
struct Fixture {
    dir: tempfile::TempDir,
    project: String,
    /// Image IDs seen on the project's containers.
    images: Mutex<BTreeSet<String>>,
    /// Anonymous volumes seen on the project's containers.
    volumes: Mutex<BTreeSet<String>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let project = unique("cvg");
        let src = repo_root().join("host/tests/fixtures/converge");
        copy_dir(&src, dir.path());
        let fx = Fixture {
            dir,
            project,
            images: Default::default(),
            volumes: Default::default(),
        };
        let subnet = free_subnet();
        fx.edit(
            ".env",
            "STACK_ID=converge-fixture",
            &format!("STACK_ID={}", fx.project),
        );
        fx.edit(
            ".env",
            "SUBNET_PREFIX=10.231.7",
            &format!("SUBNET_PREFIX={subnet}"),
        );
        fx.edit(
            "slipway.toml",
            "name = \"converge\"",
            &format!("name = \"{}\"", fx.project),
        );
        fx
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replace the one occurrence of `from` in `file`.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.path().join(file);
        let body = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            body.matches(from).count(),
            1,
            "{file} must contain `{from}` exactly once:\n{body}"
        );
        std::fs::write(&path, body.replacen(from, to, 1)).unwrap();
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path().join(file)).unwrap()
    }

    fn write(&self, file: &str, body: &str) {
        std::fs::write(self.path().join(file), body).unwrap();
    }

    /// The 1-based line of `file` that contains `needle` (exactly one does).
    fn line_of(&self, file: &str, needle: &str) -> usize {
        let body = self.read(file);
        let lines: Vec<usize> = body
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(lines.len(), 1, "`{needle}` in {file}: {lines:?}\n{body}");
        lines[0]
    }

    /// `docker compose -p <project> -f <dir>/docker-compose.yml -f
    /// <dir>/docker-compose.override.yml <args>` (Compose v2); panics on
    /// failure.
    fn compose(&self, args: &str) -> String {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "docker compose -p {} -f {} -f {} {args} 2>&1",
                self.project,
                self.path().join(COMPOSE_FILES[0]).display(),
                self.path().join(COMPOSE_FILES[1]).display(),
            ))
            .current_dir(self.path());
        for var in FIXTURE_VARS {
            cmd.env_remove(var);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "docker compose {args} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn slipway_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.current_dir(self.path())
            .args(args)
            .env("SLIPWAY_CACHE_DIR", cache_dir())
            .env("NO_COLOR", "1");
        for var in FIXTURE_VARS {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Run slipway to completion, killing it (and failing) after `DEPLOY_TIMEOUT`.
    fn slipway(&self, args: &[&str]) -> Output {
        let child = self
            .slipway_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run slipway");
        wait_output(
            child,
            DEPLOY_TIMEOUT,
            &format!("slipway {}", args.join(" ")),
        )
    }

    fn deploy_ok(&self, args: &[&str]) -> Output {
        let out = self.slipway(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "slipway {} must succeed:\n{}",
            args.join(" "),
            text(&out)
        );
        out
    }

    /// `plan --json backend`: each service's (action, changed).
    fn plan(&self) -> BTreeMap<String, (String, Vec<String>)> {
        let out = self.slipway(&["plan", "--json", "backend"]);
        assert_eq!(out.status.code(), Some(0), "plan:\n{}", text(&out));
        actions(&json(&out))
    }

    /// Every container of the project, oneoff ones excepted: (service, id).
    fn containers(&self) -> Vec<(String, String)> {
        let out = docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.ID}}\t{{.Label \"com.docker.compose.service\"}}\t{{.Label \"com.docker.compose.oneoff\"}}",
        ]);
        let mut rows: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (id, service, oneoff) = (f.next()?, f.next()?, f.next().unwrap_or(""));
                (!oneoff.eq_ignore_ascii_case("true")).then(|| (service.to_owned(), id.to_owned()))
            })
            .collect();
        rows.sort();
        rows
    }

    /// Container IDs by service.
    fn ids(&self) -> BTreeMap<String, Vec<String>> {
        let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (service, id) in self.containers() {
            ids.entry(service).or_default().push(id);
        }
        ids
    }

    /// `docker inspect` of the one container of `service`.
    fn the(&self, service: &str) -> Value {
        let ids: Vec<String> = self
            .containers()
            .into_iter()
            .filter(|(s, _)| s == service)
            .map(|(_, id)| id)
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "expected one container of service {service} in project {}, found {ids:?}",
            self.project
        );
        self.inspect(&ids[0])
    }

    fn inspect(&self, id: &str) -> Value {
        let c = inspect(id).unwrap_or_else(|| panic!("docker inspect {id} failed"));
        self.track(&c);
        c
    }

    fn track(&self, c: &Value) {
        if let Some(image) = c["Image"].as_str() {
            self.images.lock().unwrap().insert(image.to_owned());
        }
        for m in c["Mounts"].as_array().into_iter().flatten() {
            if let Some(name) = m["Name"].as_str().filter(|n| is_anonymous(n)) {
                self.volumes.lock().unwrap().insert(name.to_owned());
            }
        }
    }

    fn inspect_all(&self) -> BTreeMap<String, Value> {
        SERVICES
            .iter()
            .map(|s| (s.to_string(), self.the(s)))
            .collect()
    }

    /// Poll until `ok`, failing after `timeout` with `what`.
    fn wait_until(&self, what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(start.elapsed() < timeout, "{what} (waited {timeout:?})");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let p = &self.project;
        // Containers first (labelled or named after the project, whatever
        // state a killed deploy left them in), noting their images and
        // anonymous volumes.
        let mut ids: BTreeSet<String> = self.containers().into_iter().map(|(_, id)| id).collect();
        ids.extend(
            docker_lenient(&[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("name=^/{p}"),
            ])
            .split_whitespace()
            .map(str::to_owned),
        );
        for id in &ids {
            if let Some(c) = inspect(id) {
                self.track(&c);
            }
        }
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker_lenient(&args);
        }
        for kind in ["network", "volume"] {
            let listed = docker_lenient(&[
                kind,
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={p}"),
            ]);
            let mut names: BTreeSet<String> =
                listed.split_whitespace().map(str::to_owned).collect();
            if kind == "network" {
                for sep in ["_", "-"] {
                    names.extend(["front", "back", "default"].map(|n| format!("{p}{sep}{n}")));
                }
            } else {
                names.extend([format!("{p}_data"), format!("{p}-data")]);
                names.extend(self.volumes.lock().unwrap().iter().cloned());
            }
            for name in names {
                docker_lenient(&[kind, "rm", &name]);
            }
        }
        // Images: this project's tags, then the IDs seen (without -f, so
        // an identical image another test still uses stays; --no-prune, so
        // the shared parent layers other tests build from stay too).
        // compose v1 tags `<project>_<service>`, v2 `<project>-<service>`.
        for pattern in [format!("reference={p}_*"), format!("reference={p}-*")] {
            let tags = docker_lenient(&[
                "images",
                "--filter",
                &pattern,
                "--format",
                "{{.Repository}}:{{.Tag}}",
            ]);
            for tag in tags.split_whitespace() {
                docker_lenient(&["rmi", "--no-prune", tag]);
            }
        }
        let mut images = self.images.lock().unwrap().clone();
        images.extend(
            docker_lenient(&[
                "images",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.compose.project={p}"),
            ])
            .split_whitespace()
            .map(str::to_owned),
        );
        for id in images {
            docker_lenient(&["rmi", "--no-prune", &id]);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn inspect(id: &str) -> Option<Value> {
    let out = Command::new("docker").args(["inspect", id]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Value>(&out.stdout).ok()?[0]
        .clone()
        .into()
}

/// An anonymous volume's name: 64 hex digits.
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A /24 prefix (`10.231.N`) that no network on the engine, no route of
/// this machine (scripts/engines gives its engines 10.231.1-5) and no other
/// test process uses.
fn free_subnet() -> String {
    let networks = docker_lenient(&["network", "ls", "-q"]);
    let mut used = String::new();
    for id in networks.split_whitespace() {
        used.push_str(&docker_lenient(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            id,
        ]));
    }
    let routes = Command::new("ip").args(["-4", "route"]).output().unwrap();
    used.push_str(&String::from_utf8_lossy(&routes.stdout));
    let start = std::process::id() % 250;
    for k in 0..250 {
        let n = 1 + (start + k) % 250;
        let prefix = format!("10.231.{n}");
        if !used.contains(&format!("{prefix}.")) && claim(&format!("subnet-{prefix}")) {
            return prefix;
        }
    }
    panic!("no free 10.231.N.0/24 subnet");
}

/// Wait for `child` with its output, killing it after `timeout`.
fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let out = Output {
                status,
                stdout: stdout.join().unwrap(),
                stderr: stderr.join().unwrap(),
            };
            panic!("{what} did not finish within {timeout:?}:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The services of surface `backend` in a run report: service -> (action, changed).
fn actions(report: &Value) -> BTreeMap<String, (String, Vec<String>)> {
    let surface = report["surfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "backend")
        .unwrap_or_else(|| panic!("no surface backend in the report:\n{report:#}"));
    surface["services"]
        .as_array()
        .unwrap_or_else(|| panic!("surface backend has no services:\n{report:#}"))
        .iter()
        .map(|s| {
            let name = s["service"].as_str().unwrap().to_owned();
            let action = s["action"]
                .as_str()
                .unwrap_or_else(|| panic!("service {name} has no `action`:\n{report:#}"))
                .to_owned();
            let changed = s["changed"]
                .as_array()
                .map(|a| a.iter().map(|k| k.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (name, (action, changed))
        })
        .collect()
}

/// The compose key a `changed` entry names: `environment.GREETING` and
/// `environment` both name `environment`.
fn top_key(entry: &str) -> &str {
    entry.split(['.', '[', '/']).next().unwrap()
}

/// `service` is replaced because of `key`, and of nothing else.
#[track_caller]
fn assert_replaced_for(plan: &BTreeMap<String, (String, Vec<String>)>, service: &str, key: &str) {
    let (action, changed) = plan
        .get(service)
        .unwrap_or_else(|| panic!("no plan for {service}: {plan:?}"));
    assert_eq!(action, "replace", "{service} must be replaced: {plan:?}");
    assert!(
        !changed.is_empty() && changed.iter().all(|c| top_key(c) == key),
        "{service} must be replaced for `{key}` alone, plan says {changed:?} (whole plan {plan:?})"
    );
}

#[track_caller]
fn assert_action(plan: &BTreeMap<String, (String, Vec<String>)>, service: &str, want: &str) {
    let got = plan.get(service).map(|(a, _)| a.as_str());
    assert_eq!(got, Some(want), "action of {service}: {plan:?}");
}

fn env_of(c: &Value) -> BTreeSet<String> {
    c["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn id_of(c: &Value) -> String {
    c["Id"].as_str().unwrap().to_owned()
}

fn running(c: &Value) -> bool {
    c["State"]["Running"] == true
}

// ---------------------------------------------------------------------------
// The oracle comparison

#[derive(Clone, Copy, Debug)]
enum Cmp {
    /// Equal, where null, [] and {} are all "unset".
    Exact,
    /// Equal as sets.
    Set,
    /// As a set, without the `affinity:container==<old id>` entry compose v1
    /// adds when it recreates a container (a swarm-era scheduling hint).
    Env,
    /// Equal minus slipway's own labels and compose's image label.
    Labels,
    /// Compared only when compose set it (it is not the short container ID).
    Hostname,
    /// As sets, without the binds that keep an anonymous volume across a
    /// replacement (compose v1 adds `<64 hex>:/path:rw` on recreate).
    Binds,
    /// As sets, without `type: volume` mounts of anonymous volumes.
    HostMounts,
    /// Per network: aliases (as a set, without the short ID) and IPAMConfig.
    Networks,
    /// Type, name (volumes), source (binds), destination and RW, by destination.
    Mounts,
}

/// Everything compose sets on a container that a replacement must keep.
/// IDs, timestamps and state are left out. Where slipway's create body is
/// still shaped as compose v1 sent it, the comparison takes what the engine
/// treats as the same: `Config.Volumes` is not compared (compose v2 sends
/// none; slipway declares its short-syntax targets there, and the mounts
/// that result are compared as `Mounts`), and anonymous volumes are
/// compared by their mounts, not their binds.
const ORACLE_FIELDS: &[(&str, Cmp)] = &[
    ("Name", Cmp::Exact),
    ("Config.Env", Cmp::Env),
    ("Config.Cmd", Cmp::Exact),
    ("Config.Entrypoint", Cmp::Exact),
    ("Config.WorkingDir", Cmp::Exact),
    ("Config.User", Cmp::Exact),
    ("Config.Labels", Cmp::Labels),
    ("Config.ExposedPorts", Cmp::Exact),
    ("Config.Healthcheck", Cmp::Exact),
    ("Config.StopSignal", Cmp::Exact),
    ("Config.StopTimeout", Cmp::Exact),
    ("Config.Tty", Cmp::Exact),
    ("Config.OpenStdin", Cmp::Exact),
    ("Config.Hostname", Cmp::Hostname),
    ("Config.Domainname", Cmp::Exact),
    ("Config.Image", Cmp::Exact),
    ("HostConfig.Binds", Cmp::Binds),
    ("HostConfig.PortBindings", Cmp::Exact),
    ("HostConfig.RestartPolicy", Cmp::Exact),
    ("HostConfig.ExtraHosts", Cmp::Set),
    ("HostConfig.Dns", Cmp::Exact),
    ("HostConfig.DnsSearch", Cmp::Exact),
    ("HostConfig.DnsOptions", Cmp::Exact),
    ("HostConfig.CapAdd", Cmp::Set),
    ("HostConfig.CapDrop", Cmp::Set),
    ("HostConfig.Ulimits", Cmp::Set),
    ("HostConfig.LogConfig", Cmp::Exact),
    ("HostConfig.Init", Cmp::Exact),
    ("HostConfig.Privileged", Cmp::Exact),
    ("HostConfig.ReadonlyRootfs", Cmp::Exact),
    ("HostConfig.ShmSize", Cmp::Exact),
    ("HostConfig.Memory", Cmp::Exact),
    ("HostConfig.MemoryReservation", Cmp::Exact),
    ("HostConfig.NanoCpus", Cmp::Exact),
    ("HostConfig.CpuShares", Cmp::Exact),
    ("HostConfig.Devices", Cmp::Set),
    ("HostConfig.Sysctls", Cmp::Exact),
    ("HostConfig.SecurityOpt", Cmp::Set),
    ("HostConfig.Tmpfs", Cmp::Exact),
    ("HostConfig.Mounts", Cmp::HostMounts),
    ("HostConfig.NetworkMode", Cmp::Exact),
    ("NetworkSettings.Networks", Cmp::Networks),
    ("Mounts", Cmp::Mounts),
];

/// Labels that legitimately differ between compose's container and
/// slipway's: slipway's own, the one compose adds when it recreates, and
/// the image ID (compose builds an image per service, slipway one per
/// build; each labels its own, see `image_label_is_the_containers_image`).
fn ignored_label(key: &str) -> bool {
    ["com.docker.compose.replace", "com.docker.compose.image"].contains(&key)
        || key.starts_with("dev.slipway.")
}

fn image_label_is_the_containers_image(c: &Value) {
    assert_eq!(
        c["Config"]["Labels"]["com.docker.compose.image"], c["Image"],
        "{}",
        c["Name"]
    );
}

/// compose writes `depends_on` in Go's map order, which varies run to run.
fn label_value(key: &str, value: &Value) -> Value {
    match (key, value.as_str()) {
        ("com.docker.compose.depends_on", Some(deps)) => {
            let mut deps: Vec<&str> = deps.split(',').collect();
            deps.sort_unstable();
            Value::String(deps.join(","))
        }
        _ => value.clone(),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

fn unset_if_empty(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        v => v.clone(),
    }
}

fn as_set(items: impl IntoIterator<Item = Value>) -> Value {
    let mut items: Vec<Value> = items.into_iter().collect();
    items.sort_by_key(|v| v.to_string());
    unset_if_empty(&Value::Array(items))
}

fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// The comparable form of one field of a container.
fn normalized(c: &Value, path: &str, cmp: Cmp) -> Value {
    let v = at(c, path);
    match cmp {
        Cmp::Exact | Cmp::Hostname => unset_if_empty(v),
        Cmp::Set => match v {
            Value::Array(a) => as_set(a.iter().cloned()),
            v => unset_if_empty(v),
        },
        Cmp::Env => as_set(array(v).into_iter().filter(|e| {
            !e.as_str()
                .is_some_and(|e| e.starts_with("affinity:container=="))
        })),
        Cmp::Labels => {
            let kept: Map<String, Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !ignored_label(k))
                .map(|(k, v)| (k.clone(), label_value(k, v)))
                .collect();
            unset_if_empty(&Value::Object(kept))
        }
        Cmp::Binds => as_set(array(v).into_iter().filter(|b| {
            !b.as_str()
                .is_some_and(|b| is_anonymous(b.split(':').next().unwrap()))
        })),
        Cmp::HostMounts => as_set(array(v).into_iter().filter(|m| {
            let anonymous = m["Source"]
                .as_str()
                .is_none_or(|s| s.is_empty() || is_anonymous(s));
            !(m["Type"] == "volume" && anonymous)
        })),
        Cmp::Networks => {
            let id = c["Id"].as_str().unwrap_or_default();
            let short = &id[..12.min(id.len())];
            let mut out = Map::new();
            for (name, ep) in v.as_object().into_iter().flatten() {
                let aliases = as_set(
                    array(&ep["Aliases"])
                        .into_iter()
                        .filter(|a| a.as_str() != Some(short)),
                );
                let ipam: Map<String, Value> = ep["IPAMConfig"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !(v.is_null() || *v == "" || unset_if_empty(v).is_null()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                out.insert(
                    name.clone(),
                    json!({ "Aliases": aliases, "IPAMConfig": unset_if_empty(&Value::Object(ipam)) }),
                );
            }
            unset_if_empty(&Value::Object(out))
        }
        Cmp::Mounts => {
            let mut mounts: Vec<Value> = array(v)
                .iter()
                .map(|m| {
                    json!({
                        "Type": m["Type"],
                        "Name": if m["Type"] == "volume" { m["Name"].clone() } else { Value::Null },
                        "Source": if m["Type"] == "bind" { m["Source"].clone() } else { Value::Null },
                        "Destination": m["Destination"],
                        "RW": m["RW"],
                    })
                })
                .collect();
            mounts.sort_by_key(|m| m["Destination"].to_string());
            unset_if_empty(&Value::Array(mounts))
        }
    }
}

/// The worker's secrets and configs, read inside the container as root
/// (the worker runs as nobody): each path, its mode and owner, then its
/// bytes. Inspect shows those from a
/// file as mounts; those from a value were copied in before start.
fn worker_files(c: &Value) -> String {
    let script: Vec<String> = [
        "/run/secrets/db_password",
        "/run/secrets/worker_token",
        "/run/secrets/token_for_nobody",
        "/banner",
        "/etc/converge-banner",
    ]
    .iter()
    .map(|f| format!("stat -c '%n %a %u:%g' {f} && cat {f}"))
    .collect();
    docker(&[
        "exec",
        "-u",
        "0",
        &id_of(c),
        "sh",
        "-c",
        &script.join(" && "),
    ])
}

/// Every field of `ORACLE_FIELDS` where `ours` differs from `oracle`, as
/// (field, oracle's value, ours).
fn mismatches(oracle: &Value, ours: &Value) -> Vec<(&'static str, Value, Value)> {
    let oracle_short = oracle["Id"].as_str().map(|id| &id[..12]).unwrap_or("");
    ORACLE_FIELDS
        .iter()
        .filter(|(path, cmp)| {
            !matches!(cmp, Cmp::Hostname) || at(oracle, path).as_str() != Some(oracle_short)
        })
        .filter_map(|&(path, cmp)| {
            let want = normalized(oracle, path, cmp);
            let got = normalized(ours, path, cmp);
            (want != got).then_some((path, want, got))
        })
        .collect()
}

fn report_mismatches(found: &[(String, &'static str, Value, Value)]) -> String {
    found
        .iter()
        .map(|(service, field, want, got)| {
            format!("service {service}, field {field}:\n  compose: {want}\n  slipway: {got}\n")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests

/// The comparison itself, with compose on both sides: compose's own
/// force-recreate passes it, and a changed env var fails it on exactly
/// `Config.Env`. Needs no slipway changes.
#[test]
fn oracle_comparison_accepts_composes_own_recreate_and_catches_a_change() {
    let fx = Fixture::new();
    fx.compose("up -d");
    let first = fx.inspect_all();
    assert!(
        !fx.ids().contains_key("debug"),
        "the profile-gated service must not start without --profile"
    );
    let api = &first["api"];
    assert_eq!(
        api["NetworkSettings"]["Networks"][format!("{}_back", fx.project)]["IPAMConfig"]
            ["IPv4Address"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next(),
        Some("10")
    );
    assert!(
        env_of(api).contains("LITERAL=cost $5"),
        "$$ is a literal $: {:?}",
        env_of(api)
    );
    assert!(
        env_of(api).contains("APP_MODE=override"),
        "{:?}",
        env_of(api)
    );
    assert!(
        env_of(&first["worker"]).contains("SHARED=from-environment")
            && env_of(&first["worker"]).contains("WORKER_NAME=w1"),
        "{:?}",
        env_of(&first["worker"])
    );
    assert_eq!(first["sidecar"]["Name"], format!("/{}-sidecar", fx.project));

    fx.compose("up -d --force-recreate");
    let second = fx.inspect_all();
    let mut found = Vec::new();
    for s in SERVICES {
        assert_ne!(id_of(&first[s]), id_of(&second[s]), "{s} was not recreated");
        for (f, want, got) in mismatches(&first[s], &second[s]) {
            found.push((s.to_owned(), f, want, got));
        }
    }
    assert!(
        found.is_empty(),
        "compose's own recreate differs:\n{}",
        report_mismatches(&found)
    );
    // Anonymous volumes survive, which the comparison checks by name.
    assert!(
        normalized(&second["api"], "Mounts", Cmp::Mounts)
            .to_string()
            .contains(
                &fx.volumes
                    .lock()
                    .unwrap()
                    .iter()
                    .next()
                    .unwrap()
                    .to_string()
            ),
        "{}",
        second["api"]["Mounts"]
    );

    fx.edit(
        "docker-compose.override.yml",
        "APP_MODE: override",
        "APP_MODE: changed",
    );
    fx.compose("up -d");
    let third = fx.the("api");
    let fields: Vec<&str> = mismatches(&second["api"], &third)
        .into_iter()
        .map(|(f, _, _)| f)
        .collect();
    // The env, and with it compose's config-hash label.
    assert_eq!(fields, ["Config.Env", "Config.Labels"]);
}

/// (a) What slipway creates equals what docker-compose creates, field by field.
#[test]
fn force_deploy_replaces_every_container_with_what_compose_would_create() {
    let fx = Fixture::new();
    fx.compose("up -d");
    let oracle = fx.inspect_all();
    let oracle_files = worker_files(&oracle["worker"]);
    for needle in [
        "db-password-from-file",
        "/run/secrets/token_for_nobody 400 65534:65534\ntoken-from-dotenv",
        "/etc/converge-banner 440 0:0\nconverge ",
    ] {
        assert!(oracle_files.contains(needle), "{needle} in {oracle_files}");
    }
    let out = fx.deploy_ok(&["deploy", "--force", "backend"]);
    let ours = fx.inspect_all();
    assert_eq!(
        worker_files(&ours["worker"]),
        oracle_files,
        "the worker's secrets and configs"
    );
    let mut found = Vec::new();
    for s in SERVICES {
        assert_ne!(
            id_of(&oracle[s]),
            id_of(&ours[s]),
            "--force must replace {s}:\n{}",
            text(&out)
        );
        assert!(
            running(&ours[s]),
            "{s} is not running: {}",
            ours[s]["State"]
        );
        image_label_is_the_containers_image(&ours[s]);
        let hash = &ours[s]["Config"]["Labels"]["dev.slipway.spec-hash"];
        assert!(
            hash.as_str().is_some_and(|h| !h.is_empty()),
            "{s} has no dev.slipway.spec-hash label: {}",
            ours[s]["Config"]["Labels"]
        );
        for (f, want, got) in mismatches(&oracle[s], &ours[s]) {
            found.push((s.to_owned(), f, want, got));
        }
    }
    assert!(
        found.is_empty(),
        "slipway's containers differ from docker-compose's:\n{}",
        report_mismatches(&found)
    );
    assert!(
        !fx.ids().contains_key("debug"),
        "the profile-gated service is in no surface and must not be created"
    );
    assert_eq!(
        fx.containers().len(),
        SERVICES.len(),
        "one container per service, no leftovers: {:?}",
        fx.containers()
    );
}

/// (b) Each kind of edit is planned as a replacement for the changed key,
/// and the deploy ships it.
#[test]
fn edits_to_the_compose_model_are_planned_by_key_and_shipped() {
    let fx = Fixture::new();
    let plan = fx.plan();
    for s in SERVICES {
        assert_action(&plan, s, "create");
    }
    fx.deploy_ok(&["deploy", "backend"]);
    let mut ids: BTreeMap<String, String> = SERVICES
        .iter()
        .map(|s| (s.to_string(), id_of(&fx.the(s))))
        .collect();

    // Run one edit: plan names `key` for each service in `changed_services`
    // and skips the rest; the deploy replaces exactly those; `check` sees
    // the change on the new container.
    let ship = |what: &str,
                changed_services: &[&str],
                key: &str,
                ids: &mut BTreeMap<String, String>,
                check: &dyn Fn(&str, &Value)| {
        let plan = fx.plan();
        for s in SERVICES {
            if changed_services.contains(&s) {
                assert_replaced_for(&plan, s, key);
            } else {
                assert_action(&plan, s, "skip");
            }
        }
        let out = fx.deploy_ok(&["deploy", "--json", "backend"]);
        let done = actions(&json(&out));
        for s in SERVICES {
            let c = fx.the(s);
            if changed_services.contains(&s) {
                assert_eq!(done[s].0, "replace", "{what}: {done:?}");
                assert_ne!(id_of(&c), ids[s], "{what}: {s} was not replaced");
                assert!(running(&c), "{what}: {s} is not running: {}", c["State"]);
                check(s, &c);
            } else {
                assert_eq!(done[s].0, "skip", "{what}: {done:?}");
                assert_eq!(id_of(&c), ids[s], "{what}: {s} must be left alone");
            }
            ids.insert(s.to_owned(), id_of(&c));
        }
    };

    // An added env var.
    fx.edit(
        "docker-compose.yml",
        "      APP_MODE: base\n",
        "      APP_MODE: base\n      ADDED_VAR: added\n",
    );
    ship("add env var", &["api"], "environment", &mut ids, &|_, c| {
        assert!(env_of(c).contains("ADDED_VAR=added"), "{:?}", env_of(c));
    });

    // The worker's command.
    fx.edit(
        "docker-compose.yml",
        "worker $$WORKER_NAME up\\\"",
        "worker $$WORKER_NAME up again\\\"",
    );
    ship(
        "change command",
        &["worker"],
        "command",
        &mut ids,
        &|_, c| {
            let cmd = c["Config"]["Cmd"].to_string();
            assert!(cmd.contains("worker $WORKER_NAME up again"), "{cmd}");
            let id = id_of(c);
            fx.wait_until(
                "the new worker logs its greeting",
                Duration::from_secs(30),
                || docker_lenient(&["logs", &id]).contains("worker w1 up again"),
            );
        },
    );

    // The same value moved into .env: api's model is unchanged, but the
    // worker's `${GREETING:-hi}` now resolves to it.
    fx.edit(
        "docker-compose.yml",
        "      GREETING: hello\n",
        "      GREETING: ${GREETING}\n",
    );
    let env = fx.read(".env") + "GREETING=hello\n";
    fx.write(".env", &env);
    ship(
        ".env default for worker",
        &["worker"],
        "environment",
        &mut ids,
        &|_, c| {
            assert!(env_of(c).contains("GREETING=hello"), "{:?}", env_of(c));
        },
    );
    // And a new value in .env ships to both.
    fx.edit(".env", "GREETING=hello", "GREETING=bonjour");
    ship(
        ".env value",
        &["api", "worker"],
        "environment",
        &mut ids,
        &|_, c| {
            assert!(env_of(c).contains("GREETING=bonjour"), "{:?}", env_of(c));
        },
    );

    // An added volume.
    fx.edit(
        "docker-compose.yml",
        "      - data:/data:ro\n",
        "      - data:/data:ro\n      - ./app/www:/srv/www:ro\n",
    );
    ship("add volume", &["worker"], "volumes", &mut ids, &|_, c| {
        let mounts = array(&c["Mounts"]);
        assert!(
            mounts.iter().any(|m| m["Destination"] == "/srv/www"
                && m["Type"] == "bind"
                && m["RW"] == false
                && m["Source"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("/app/www"))),
            "{}",
            c["Mounts"]
        );
    });

    // An added network alias.
    fx.edit(
        "docker-compose.yml",
        "          - backend\n",
        "          - backend\n          - api-extra\n",
    );
    let back = format!("{}_back", fx.project);
    ship("add alias", &["api"], "networks", &mut ids, &|_, c| {
        let aliases = c["NetworkSettings"]["Networks"][&back]["Aliases"].to_string();
        assert!(
            aliases.contains("\"api-extra\"") && aliases.contains("\"backend\""),
            "{aliases}"
        );
    });

    // A changed healthcheck.
    fx.edit(
        "docker-compose.yml",
        "      interval: 1s\n",
        "      interval: 2s\n",
    );
    ship(
        "change healthcheck",
        &["api"],
        "healthcheck",
        &mut ids,
        &|_, c| {
            assert_eq!(
                c["Config"]["Healthcheck"]["Interval"], 2_000_000_000u64,
                "{}",
                c["Config"]["Healthcheck"]
            );
            assert_eq!(c["State"]["Health"]["Status"], "healthy", "{}", c["State"]);
        },
    );
}

/// (c) A service added to the compose file and to the surface is created.
#[test]
fn a_service_added_to_compose_and_surface_is_created() {
    let fx = Fixture::new();
    fx.deploy_ok(&["deploy", "backend"]);
    let before = fx.ids();
    fx.edit(
        "docker-compose.yml",
        "\nnetworks:\n",
        "  extra:\n    <<: *base\n    command: [\"sh\", \"-c\", \"echo extra up; while true; do sleep 1; done\"]\n    networks:\n      - front\n\nnetworks:\n",
    );
    fx.edit(
        "slipway.toml",
        "services = [\"api\", \"worker\", \"sidecar\"]",
        "services = [\"api\", \"worker\", \"sidecar\", \"extra\"]",
    );
    let plan = fx.plan();
    assert_action(&plan, "extra", "create");
    for s in SERVICES {
        assert_action(&plan, s, "skip");
    }
    let out = fx.deploy_ok(&["deploy", "--json", "backend"]);
    assert_eq!(actions(&json(&out))["extra"].0, "create", "{}", text(&out));
    let extra = fx.the("extra");
    assert!(running(&extra), "{}", extra["State"]);
    assert_eq!(extra["Name"], format!("/{}-extra-1", fx.project));
    assert!(
        extra["NetworkSettings"]["Networks"]
            .get(format!("{}_front", fx.project))
            .is_some(),
        "{}",
        extra["NetworkSettings"]["Networks"]
    );
    let after = fx.ids();
    for s in SERVICES {
        assert_eq!(before[s], after[s], "{s} must be left alone");
    }
}

/// (d) An unchanged service is skipped; `--force` replaces it.
#[test]
fn unchanged_services_are_skipped_and_force_replaces_them() {
    let fx = Fixture::new();
    fx.deploy_ok(&["deploy", "backend"]);
    let first = fx.ids();
    let out = fx.deploy_ok(&["deploy", "--json", "backend"]);
    let done = actions(&json(&out));
    for s in SERVICES {
        assert_eq!(done[s].0, "skip", "{done:?}");
    }
    assert_eq!(
        fx.ids(),
        first,
        "an unchanged deploy must keep every container"
    );

    let out = fx.deploy_ok(&["deploy", "--force", "--json", "backend"]);
    let done = actions(&json(&out));
    let forced = fx.ids();
    for s in SERVICES {
        assert_eq!(done[s].0, "replace", "{done:?}");
        assert_eq!(forced[s].len(), 1, "{forced:?}");
        assert_ne!(forced[s], first[s], "--force must replace {s}");
        assert!(running(&fx.the(s)));
    }
}

/// (e) A portless, healthcheck-less service that dies within the settle
/// window fails the deploy with its last words; one that stays up passes.
#[test]
fn a_worker_that_exits_during_the_settle_window_fails_the_deploy() {
    let fx = Fixture::new();
    fx.deploy_ok(&["deploy", "backend"]);
    let worker = fx.the("worker");
    assert!(running(&worker), "{}", worker["State"]);
    assert_eq!(worker["RestartCount"], 0, "the steady worker restarted");

    let steady = "echo \\\"worker $$WORKER_NAME up\\\"; trap 'exit 0' TERM INT; while true; do sleep 1; done";
    let crashing = "echo \\\"worker $$WORKER_NAME starting\\\"; sleep 3; echo \\\"worker-last-words-before-exit\\\"; exit 3";
    fx.edit("docker-compose.yml", steady, crashing);
    let out = fx.slipway(&["deploy", "backend"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("worker-last-words-before-exit"),
        "the worker's last log line is missing:\n{all}"
    );
    assert!(all.contains("worker"), "{all}");
    assert!(!all.contains("panicked"), "{all}");

    fx.edit("docker-compose.yml", crashing, steady);
    fx.deploy_ok(&["deploy", "backend"]);
    let worker = fx.the("worker");
    assert!(running(&worker), "{}", worker["State"]);
    assert!(
        worker["Config"]["Cmd"].to_string().contains("up\\\""),
        "{}",
        worker["Config"]["Cmd"]
    );
}

/// `text` names `file` and `line` (`file:LINE…` or `line LINE`).
fn names_file_and_line(text: &str, file: &str, line: usize) -> bool {
    let n = line.to_string();
    let at_boundary = |i: usize| !text[i..].starts_with(|c: char| c.is_ascii_digit());
    let has = |prefix: String| {
        text.match_indices(&(prefix.clone() + &n))
            .any(|(i, m)| at_boundary(i + m.len()))
    };
    text.contains(file) && (has(format!("{file}:")) || has("line ".into()))
}

/// (f) Bad input exits 2, names the file and line, and changes nothing.
#[test]
fn bad_compose_or_manifest_input_exits_2_naming_file_and_line_and_changes_nothing() {
    let fx = Fixture::new();
    fx.deploy_ok(&["deploy", "backend"]);
    let before = fx.containers();
    let pristine: Vec<(&str, String)> = [
        "docker-compose.yml",
        "docker-compose.override.yml",
        "slipway.toml",
        ".env",
    ]
    .into_iter()
    .map(|f| (f, fx.read(f)))
    .collect();

    struct Case {
        what: &'static str,
        file: &'static str,
        from: &'static str,
        to: &'static str,
        /// Text on the offending line, to find its number.
        line_text: &'static str,
        /// Also in the message.
        needle: &'static str,
    }
    let cases = [
        Case {
            what: "unsupported key",
            file: "docker-compose.yml",
            from: "    working_dir: /tmp\n",
            to: "    working_dir: /tmp\n    links:\n      - api\n",
            line_text: "    links:",
            needle: "links",
        },
        Case {
            what: "YAML syntax error",
            file: "docker-compose.override.yml",
            from: "      APP_MODE: override\n",
            to: "      APP_MODE: over: ride\n",
            line_text: "over: ride",
            needle: "docker-compose.override.yml",
        },
        Case {
            what: "undefined ${VAR:?}",
            file: "docker-compose.yml",
            from: "      APP_MODE: base\n",
            to: "      APP_MODE: base\n      SECRET: ${CONVERGE_UNSET_SECRET:?must be set}\n",
            line_text: "CONVERGE_UNSET_SECRET",
            needle: "must be set",
        },
        Case {
            what: "missing env_file",
            file: "docker-compose.yml",
            from: "    env_file: worker.env\n",
            to: "    env_file: missing.env\n",
            line_text: "missing.env",
            needle: "missing.env",
        },
        Case {
            what: "surface names an unknown service",
            file: "slipway.toml",
            from: "services = [\"api\", \"worker\", \"sidecar\"]",
            to: "services = [\"api\", \"worker\", \"sidecar\", \"ghost\"]",
            line_text: "\"ghost\"",
            needle: "ghost",
        },
    ];
    for case in &cases {
        fx.edit(case.file, case.from, case.to);
        let line = fx.line_of(case.file, case.line_text);
        for args in [&["deploy", "backend"][..], &["plan", "backend"][..]] {
            let out = fx.slipway(args);
            let all = text(&out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{} ({}):\n{all}",
                case.what,
                args[0]
            );
            assert!(
                names_file_and_line(&stderr, case.file, line),
                "{} ({}): stderr must name {}:{line}:\n{all}",
                case.what,
                args[0],
                case.file
            );
            assert!(
                stderr.contains(case.needle),
                "{}: `{}` missing:\n{all}",
                case.what,
                case.needle
            );
            assert!(!all.contains("panicked"), "{all}");
            assert_eq!(
                fx.containers(),
                before,
                "{}: a container changed",
                case.what
            );
        }
        for (f, body) in &pristine {
            fx.write(f, body);
        }
    }
    // The pristine project still deploys, and leaves everything as it was.
    fx.deploy_ok(&["deploy", "backend"]);
    assert_eq!(fx.containers(), before);
}

#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// A fixed time after the start.
    After(Duration),
    /// As soon as a container with the round's label exists.
    NewContainer,
    /// As soon as some service has two containers (old and new).
    TwoContainers,
}

/// (g) A deploy killed with SIGKILL at any point is repaired by the next
/// plain deploy: one container per service, on the new spec. The kill
/// matrix (kills.rs) kills deploys at every operation they report; this
/// adds what it does not change each round, a compose key of every service
/// with `--force`, at a few points in time and at the two moments that
/// matter most: the first new container, two containers of one service.
#[test]
fn a_deploy_killed_at_any_point_is_repaired_by_the_next_deploy() {
    let fx = Fixture::new();
    let round_label = |n: usize| format!("    dev.converge.round: \"{n}\"\n");
    fx.edit(
        "docker-compose.yml",
        "    dev.converge.stack: \"${STACK_ID}\"\n",
        &format!(
            "    dev.converge.stack: \"${{STACK_ID}}\"\n{}",
            round_label(0)
        ),
    );
    fx.deploy_ok(&["deploy", "backend"]);
    let rounds = [
        KillAt::After(Duration::from_millis(300)),
        KillAt::After(Duration::from_secs(2)),
        KillAt::After(Duration::from_secs(5)),
        KillAt::NewContainer,
        KillAt::TwoContainers,
    ];
    for (i, kill_at) in rounds.iter().enumerate() {
        let round = i + 1;
        fx.edit(
            "docker-compose.yml",
            &round_label(round - 1),
            &round_label(round),
        );
        // Also a new image each round, so the build is part of what is killed.
        fx.write("app/VERSION", &format!("converge round {round}\n"));
        let mut child = fx
            .slipway_command(&["deploy", "--force", "backend"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let want = round.to_string();
        let labelled = |c: &Value| c["Config"]["Labels"]["dev.converge.round"] == want.as_str();
        let mut killed = false;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let now = match kill_at {
                KillAt::After(d) => start.elapsed() >= *d,
                KillAt::NewContainer => fx
                    .containers()
                    .iter()
                    .filter_map(|(_, id)| inspect(id))
                    .any(|c| labelled(&c)),
                KillAt::TwoContainers => fx.ids().values().any(|ids| ids.len() > 1),
            };
            if now {
                child.kill().unwrap();
                killed = true;
                break;
            }
            assert!(
                start.elapsed() < DEPLOY_TIMEOUT,
                "round {round}: deploy hung"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait().unwrap();
        eprintln!(
            "round {round} ({kill_at:?}): {} after {:?}",
            if killed {
                "killed"
            } else {
                "finished before the kill"
            },
            start.elapsed()
        );
        for id in fx.containers().into_iter().map(|(_, id)| id) {
            if let Some(c) = inspect(&id) {
                fx.track(&c);
            }
        }

        let out = fx.deploy_ok(&["deploy", "backend"]);
        let ids = fx.ids();
        assert_eq!(
            ids.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut s = SERVICES.to_vec();
                s.sort();
                s
            },
            "round {round} ({kill_at:?}): services after the repair: {ids:?}\n{}",
            text(&out)
        );
        for s in SERVICES {
            assert_eq!(ids[s].len(), 1, "round {round} ({kill_at:?}): {s}: {ids:?}");
            let c = fx.the(s);
            assert!(
                labelled(&c),
                "round {round} ({kill_at:?}): {s} is not on the new spec: {}",
                c["Config"]["Labels"]
            );
            assert!(
                running(&c),
                "round {round} ({kill_at:?}): {s}: {}",
                c["State"]
            );
            let version = docker_lenient(&["exec", &id_of(&c), "cat", "/VERSION"]);
            assert_eq!(
                version.trim(),
                format!("converge round {round}"),
                "round {round} ({kill_at:?}): {s} runs an old image"
            );
        }
        assert_eq!(
            fx.the("sidecar")["Name"],
            format!("/{}-sidecar", fx.project),
            "round {round}: container_name lost"
        );
    }
}

/// (h) Rollback restores the previous container config and image.
#[test]
fn rollback_restores_the_previous_env_and_image() {
    let fx = Fixture::new();
    fx.deploy_ok(&["deploy", "backend"]);
    let v1 = fx.inspect_all();
    assert!(
        env_of(&v1["api"]).contains("GREETING=hello"),
        "{:?}",
        env_of(&v1["api"])
    );

    fx.edit(
        "docker-compose.yml",
        "      GREETING: hello\n",
        "      GREETING: hola\n",
    );
    fx.write("app/VERSION", "converge v2\n");
    fx.deploy_ok(&["deploy", "backend"]);
    let v2 = fx.inspect_all();
    assert!(
        env_of(&v2["api"]).contains("GREETING=hola"),
        "{:?}",
        env_of(&v2["api"])
    );
    for s in SERVICES {
        assert_ne!(
            v1[s]["Image"], v2[s]["Image"],
            "{s}: VERSION changed, the image must too"
        );
    }

    let out = fx.slipway(&["rollback", "backend"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let back = fx.inspect_all();
    let env = env_of(&back["api"]);
    assert!(
        env.contains("GREETING=hello") && !env.contains("GREETING=hola"),
        "rollback must restore the previous env: {env:?}\n{}",
        text(&out)
    );
    for s in SERVICES {
        assert_eq!(
            back[s]["Image"],
            v1[s]["Image"],
            "{s}: rollback must restore the image\n{}",
            text(&out)
        );
        assert!(running(&back[s]), "{s}: {}", back[s]["State"]);
        let version = docker_lenient(&["exec", &id_of(&back[s]), "cat", "/VERSION"]);
        assert_eq!(version.trim(), "converge v1", "{s}");
    }
    // Everything else compose sets is as it was after the first deploy.
    let mut found = Vec::new();
    for s in SERVICES {
        for (f, want, got) in mismatches(&v1[s], &back[s]) {
            found.push((s.to_owned(), f, want, got));
        }
    }
    assert!(
        found.is_empty(),
        "after rollback:\n{}",
        report_mismatches(&found)
    );
}
