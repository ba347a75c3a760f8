//! `slipway status`: what is live per surface, and whether it is what the
//! last recorded deploy left there. A container whose image differs from
//! the journal's is drift (changed by hand); one older than its tag is
//! stale (rebuilt, not recreated). Live releases are read from the
//! `current` symlink of each writable directory a step was granted.

use crate::deploy::Agent;
use crate::docker::Docker;
use crate::journal;
use crate::manifest::{EngineKind, FsMode};
use crate::text::short_id;
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
pub struct ServiceStatus {
    pub surface: String,
    pub service: String,
    pub container: Option<String>,
    pub state: Option<String>,
    pub health: Option<String>,
    pub image_running: Option<String>,
    /// The image the service's tag points to now.
    pub image_current: Option<String>,
    /// The container runs an older image than its tag: rebuilt, not recreated.
    pub stale: bool,
    /// The image the last recorded deploy or rollback left running.
    pub image_deployed: Option<String>,
    /// The container runs another image than the last deploy left: someone
    /// changed it outside slipway.
    pub drift: bool,
    /// What differs between the compose definition plus the built image
    /// and what runs (`environment`, `image`, …): the next deploy replaces
    /// it. Empty when it is current.
    pub pending: Vec<String>,
}

#[derive(Serialize)]
pub struct ReleaseStatus {
    pub surface: String,
    pub step: usize,
    pub plugin: String,
    /// The served directory, relative to slipway.toml.
    pub dir: String,
    /// The release `current` points to.
    pub live: Option<String>,
    /// The release the last recorded deploy or rollback switched to.
    pub deployed: Option<String>,
    /// The service-worker stamp it published, when the step stamps one.
    pub sw_stamp: Option<String>,
    pub drift: bool,
}

#[derive(Serialize)]
pub struct SurfaceStatus {
    pub name: String,
    /// `ts`, `command` and `ok` of the last recorded deploy or rollback.
    pub last: Option<Value>,
}

#[derive(Serialize)]
pub struct Status {
    pub surfaces: Vec<SurfaceStatus>,
    pub services: Vec<ServiceStatus>,
    pub releases: Vec<ReleaseStatus>,
    pub watchers: Vec<Value>,
}

impl Status {
    /// Drift, stale containers or a failing watcher.
    pub fn unhealthy(&self) -> bool {
        self.services
            .iter()
            .any(|s| s.drift || s.stale || s.pending.iter().any(|k| k != FOREIGN))
            || self.releases.iter().any(|r| r.drift)
            || self.watchers.iter().any(|w| w["ok"] == false)
    }
}

pub async fn collect(agent: &Agent, docker: &Docker) -> anyhow::Result<Status> {
    let state_dir = agent.loaded.state_dir();
    let (entries, _) = journal::read(&state_dir)?;
    let mut status = Status {
        surfaces: Vec::new(),
        services: Vec::new(),
        releases: Vec::new(),
        watchers: Vec::new(),
    };
    for (surface, spec) in &agent.loaded.manifest.surface {
        let last = journal::last_deploy(&entries, surface);
        status.surfaces.push(SurfaceStatus {
            name: surface.clone(),
            last: last.map(|(e, _)| {
                serde_json::json!({ "ts": e["ts"], "command": e["command"], "ok": e["ok"] })
            }),
        });
        let recorded = |service: &str| -> Option<String> {
            let (_, s) = last?;
            s["services"]
                .as_array()?
                .iter()
                .find(|svc| svc["service"] == service)?["image_after"]
                .as_str()
                .map(str::to_owned)
        };
        for service in &spec.services {
            if agent.loaded.manifest.project.engine == EngineKind::Swarm {
                let name = format!("{}_{service}", agent.loaded.manifest.project.name);
                let mut row = swarm_status(docker, &name, recorded(service)).await?;
                (row.surface, row.service) = (surface.clone(), service.clone());
                status.services.push(row);
                continue;
            }
            let current = match docker.image_tag(service) {
                Ok(tag) => docker.image_id(&tag).await.ok(),
                Err(_) => None,
            };
            let deployed = recorded(service);
            let desired = docker.desired(service).await.ok();
            let containers = docker.containers(service).await?;
            if containers.is_empty() {
                status.services.push(ServiceStatus {
                    surface: surface.clone(),
                    service: service.clone(),
                    container: None,
                    state: None,
                    health: None,
                    image_running: None,
                    image_current: current.clone(),
                    stale: false,
                    drift: deployed.is_some(),
                    image_deployed: deployed.clone(),
                    pending: vec!["no container".into()],
                });
            }
            for c in containers {
                let pending = desired
                    .as_ref()
                    .map(|d| pending(&agent.loaded.state_dir(), d, &c))
                    .unwrap_or_default();
                status.services.push(ServiceStatus {
                    pending,
                    surface: surface.clone(),
                    service: service.clone(),
                    stale: current.as_ref().is_some_and(|cur| *cur != c.image_id),
                    drift: deployed.as_ref().is_some_and(|d| *d != c.image_id),
                    image_deployed: deployed.clone(),
                    container: Some(c.name),
                    state: Some(c.state),
                    health: c.health,
                    image_running: Some(c.image_id),
                    image_current: current.clone(),
                });
            }
        }
        for (index, step) in spec.step.iter().enumerate() {
            let outputs = last.and_then(|(_, s)| s["steps"].as_array()?.get(index)?.get("outputs"));
            let output = |key: &str| outputs.and_then(|o| o[key].as_str()).map(str::to_owned);
            for grant in step.grants.fs.iter().filter(|g| g.mode == FsMode::Rw) {
                let dir = agent.loaded.dir.join(&grant.host);
                let Ok(target) = std::fs::read_link(dir.join("current")) else {
                    continue;
                };
                let live = target.file_name().map(|n| n.to_string_lossy().into_owned());
                let deployed = output("release");
                status.releases.push(ReleaseStatus {
                    surface: surface.clone(),
                    step: index,
                    plugin: step.plugin.clone(),
                    dir: grant.host.display().to_string(),
                    drift: deployed.is_some() && live != deployed,
                    live,
                    deployed,
                    sw_stamp: output("sw_stamp"),
                });
            }
        }
    }
    status.watchers = agent
        .loaded
        .manifest
        .watch
        .keys()
        .map(|w| match crate::watch::last_tick(&state_dir, w) {
            Some(rec) => serde_json::to_value(rec).expect("serializes"),
            None => serde_json::json!({ "watcher": w, "ok": null, "message": "no tick yet" }),
        })
        .collect();
    Ok(status)
}

/// A swarm service's row: its spec's image against the journal's, and
/// its tasks. `stale` when a task Swarm wants running runs another image
/// than the spec (an update under way or paused).
async fn swarm_status(
    docker: &Docker,
    name: &str,
    deployed: Option<String>,
) -> anyhow::Result<ServiceStatus> {
    let mut row = ServiceStatus {
        surface: String::new(),
        service: String::new(),
        container: Some(name.to_owned()),
        state: None,
        health: None,
        image_running: None,
        image_current: None,
        stale: false,
        drift: deployed.is_some(),
        image_deployed: deployed,
        pending: vec!["no service".into()],
    };
    let Some(service) = docker.swarm_service(name).await? else {
        return Ok(row);
    };
    let tasks = docker.swarm_tasks(name).await?;
    let wanted: Vec<_> = tasks.iter().filter(|t| t.desired == "running").collect();
    let running = wanted.iter().filter(|t| t.state == "running").count();
    row.state = Some(format!("{running}/{} tasks running", wanted.len()));
    row.stale = wanted.iter().any(|t| t.image != service.image);
    row.drift = row
        .image_deployed
        .as_ref()
        .is_some_and(|d| *d != service.image);
    row.image_running = Some(service.image);
    row.pending.clear();
    Ok(row)
}

impl Status {
    /// The table people read.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for s in &self.surfaces {
            let last = match &s.last {
                Some(l) => format!(
                    "last {} {} at {}",
                    l["command"].as_str().unwrap_or("?"),
                    if l["ok"] == true { "ok" } else { "FAILED" },
                    l["ts"].as_str().unwrap_or("?")
                ),
                None => "no recorded deploy".into(),
            };
            out.push_str(&format!("{:<10} {last}\n", s.name));
            for r in self.services.iter().filter(|r| r.surface == s.name) {
                let mut note = String::new();
                if r.stale {
                    note.push_str(&format!(
                        " STALE: the tag now points to {}; deploy to recreate",
                        short_id(r.image_current.as_deref().unwrap_or("-"))
                    ));
                }
                if !r.pending.is_empty() {
                    note.push_str(&format!(
                        " PENDING ({}): differs from the compose definition or the built image; deploy to apply",
                        r.pending.join(", ")
                    ));
                }
                if r.drift {
                    note.push_str(&format!(
                        " DRIFT: the last deploy left {}; it was changed outside slipway",
                        short_id(r.image_deployed.as_deref().unwrap_or("-"))
                    ));
                }
                out.push_str(&format!(
                    "  {:<14} {:<28} {:<10} image {}{note}\n",
                    r.service,
                    r.container.as_deref().unwrap_or("(no container)"),
                    r.health.as_deref().or(r.state.as_deref()).unwrap_or("-"),
                    short_id(r.image_running.as_deref().unwrap_or("-")),
                ));
            }
            for r in self.releases.iter().filter(|r| r.surface == s.name) {
                let stamp = r
                    .sw_stamp
                    .as_deref()
                    .map(|s| format!(" sw {s}"))
                    .unwrap_or_default();
                let drift = if r.drift {
                    format!(
                        " DRIFT: the last deploy switched to {}",
                        r.deployed.as_deref().unwrap_or("-")
                    )
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "  {:<14} {:<28} release {}{stamp}{drift}\n",
                    r.plugin,
                    r.dir,
                    r.live.as_deref().unwrap_or("-")
                ));
            }
        }
        for w in &self.watchers {
            let state = match w["ok"].as_bool() {
                Some(true) => "ok",
                Some(false) => "FAILING",
                None => "-",
            };
            out.push_str(&format!(
                "watch      {:<14} {state:<10} {}\n",
                w["watcher"].as_str().unwrap_or("?"),
                w["message"].as_str().unwrap_or("")
            ));
        }
        out
    }
}

/// The keys in which a running container differs from its desired spec
/// and image.
fn pending(
    state_dir: &std::path::Path,
    desired: &crate::docker::Target,
    c: &crate::docker::ContainerInfo,
) -> Vec<String> {
    let mut keys = Vec::new();
    if c.image_id != desired.image_id {
        keys.push("image".to_owned());
    }
    let hash = desired.spec.hash();
    match c.spec_hash.as_deref() {
        Some(h) if h == hash => {}
        Some(h) => match crate::observed::SpecStore::new(state_dir).load(h) {
            Some(old) => keys.extend(old.changed_keys(&desired.spec)),
            None => keys.push("spec".to_owned()),
        },
        None => keys.push(FOREIGN.to_owned()),
    }
    keys
}

/// A container compose made, before slipway's first deploy: its spec is
/// unknown, which is worth showing but is not a fault.
const FOREIGN: &str = "spec (created outside slipway)";
