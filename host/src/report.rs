//! What a run did, for people (stderr) and for CI (`--json` on stdout).
//!
//! The `--json` document is a [`Document`]. Its JSON Schema is checked in at
//! `schema/report.schema.json` (`slipway schema report`) and a test keeps it
//! in sync with these types.

use crate::text::short_id;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// Bumped only when a field is removed, renamed or changes meaning; new
/// fields keep the version.
pub const SCHEMA_VERSION: u32 = 2;

/// The `--json` document of `slipway plan`, `deploy` and `rollback`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "slipway run report")]
pub struct Document<'a> {
    /// The report format's major version.
    #[schemars(extend("const" = 2))]
    pub schema_version: u32,
    #[serde(flatten)]
    pub run: &'a RunReport,
    /// The process's exit code: 0 ok, 1 the run failed, 2 bad usage,
    /// manifest or plugin, 3 the deploy lock is held, 4 no Docker engine.
    #[schemars(range(max = 4))]
    pub exit_code: u8,
}

impl<'a> Document<'a> {
    pub fn new(run: &'a RunReport, exit_code: u8) -> Self {
        Document {
            schema_version: SCHEMA_VERSION,
            run,
            exit_code,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunReport {
    /// The subcommand that ran.
    #[schemars(extend("enum" = ["plan", "deploy", "rollback"]))]
    pub command: String,
    /// `project.name` from the manifest; empty when the manifest has none
    /// or could not be read.
    pub project: String,
    /// Whether every selected surface succeeded (for `plan`: could be planned).
    pub ok: bool,
    /// The run stopped because a surface refused the configuration it found
    /// before changing anything (exit code 2); the error says what to change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// The images this deploy built, before any surface ran: one entry per
    /// distinct compose `build:`, shared by the services it lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildReport>,
    /// In run order. Empty when the run failed before any surface ran.
    pub surfaces: Vec<SurfaceReport>,
    /// Set when the run failed; names the surface, step and plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the whole run.
    pub duration_ms: u64,
    /// The Docker engine the run talked to; absent when none answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineReport>,
}

/// The engine, and from where readiness checks and probes reach its
/// containers.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EngineReport {
    /// `unix:///var/run/docker.sock`, `tcp://10.0.0.2:2376`, `ssh://…`.
    pub address: String,
    /// `DOCKER_HOST`, `docker context "NAME"` or `the default socket`.
    pub source: String,
    /// The engine runs on another machine.
    pub remote: bool,
    /// Where readiness checks and probes run from.
    pub checks: String,
}

impl EngineReport {
    pub fn of(
        endpoint: &crate::docker::Endpoint,
        remote: Option<std::net::IpAddr>,
    ) -> EngineReport {
        let checks = match remote {
            None => "from this machine, to the containers' own addresses".to_owned(),
            Some(host) => format!(
                "healthchecks by the engine; otherwise through ports published on {host}, or from inside the container when a port is not published"
            ),
        };
        EngineReport {
            address: endpoint.url.clone(),
            source: endpoint.source.clone(),
            remote: remote.is_some(),
            checks,
        }
    }
}

/// One image build. Services whose compose `build:` is the same (context,
/// Dockerfile, args, target) share it; independent builds run at once.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BuildReport {
    /// The services that run this image, in manifest order.
    pub services: Vec<String>,
    /// The image ID; absent when the build failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `buildkit`, or `classic` where the engine has no BuildKit (or
    /// `DOCKER_BUILDKIT=0`).
    #[schemars(extend("enum" = ["buildkit", "classic"]))]
    pub builder: String,
    pub ok: bool,
    /// RFC 3339 times, to the millisecond.
    pub started: String,
    pub finished: String,
    pub duration_ms: u64,
}

/// The surface's release command (`surface.<name>.release`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema, PartialEq, Eq)]
pub struct ReleaseReport {
    pub service: String,
    pub command: Vec<String>,
    /// Its exit code; absent when it never ran to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// RFC 3339 times: it finished before any container was replaced.
    pub started: String,
    pub finished: String,
    pub duration_ms: u64,
}

/// One surface (`[surface.<name>]`) of the run.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SurfaceReport {
    pub name: String,
    /// `ok`, `failed`, `refused` (changed nothing: its configuration cannot
    /// work with its strategy), `planned` or `skipped` (an earlier surface
    /// failed).
    #[schemars(extend("enum" = ["ok", "failed", "refused", "planned", "skipped"]))]
    pub outcome: String,
    /// The release command, when the surface has one and it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseReport>,
    pub services: Vec<ServiceReport>,
    /// The plugin steps, in manifest order (for `rollback`: last step first).
    pub steps: Vec<StepReport>,
    /// Absent for `plan`, and when the surface failed before its verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<CheckReport>,
    /// Why the surface failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A service the surface builds and converges: created, replaced or left
/// alone (rule 1).
#[derive(Debug, Clone, Serialize, Default, JsonSchema)]
pub struct ServiceReport {
    pub service: String,
    /// Image the container ran before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_before: Option<String>,
    /// Image built (or resolved) for this deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_built: Option<String>,
    /// Image the new container runs; equals `image_built` on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_running: Option<String>,
    /// The container's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// On a swarm: the addresses of the nodes its tasks run on, one entry
    /// per task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// What the deploy did, or `plan` would do: create (no container yet),
    /// replace (image or spec changed, or --force) or skip (unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::reconcile::Verb>,
    /// Why it replaces: the compose keys that changed (`environment`,
    /// `command`, …), `image`, `--force`, `not running (…)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// How a replacement goes: `start-first` (a step starts the new
    /// container beside the old one) or `stop-first`, with the reason when
    /// the service can never run twice (container_name, a published host
    /// port, a static address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Its replacement is fixed stop-first, so the host does it even under
    /// a step that replaces services (not in the JSON: `order` says why).
    #[serde(skip)]
    #[schemars(skip)]
    pub stop_first: bool,
    /// Hash of the spec the replaced container was created from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_before: Option<String>,
    /// Hash of the desired spec (label `dev.slipway.spec-hash`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_after: Option<String>,
    /// Time of the build that made its image (shared by the services in the
    /// same `builds` entry), or to resolve it for an image-only service.
    pub build_ms: u64,
    /// Time to create or replace the container; 0 when it was skipped or a
    /// step replaced it.
    pub recreate_ms: u64,
    /// Time until the container was ready (healthcheck or TCP).
    pub ready_ms: u64,
}

/// One plugin step (`[[surface.<name>.step]]`) of the surface.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StepReport {
    /// The step's position in `[[surface.<name>.step]]`, from 0.
    pub index: usize,
    /// The `[plugins.<key>]` name.
    pub plugin: String,
    /// The name the plugin reports about itself.
    pub plugin_name: String,
    /// The version the plugin reports about itself.
    pub plugin_version: String,
    /// SHA-256 of the plugin's `.wasm` file.
    pub sha256: String,
    /// Each call into the plugin, in order.
    pub calls: Vec<CallReport>,
    /// What the step's calls reported for later steps, e.g. `release`.
    pub outputs: BTreeMap<String, String>,
    /// Services the step works through but the surface does not deploy
    /// (nginx) that had stopped, and slipway started, e.g. `nginx (was
    /// exited)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
}

/// One call into a step's plugin.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CallReport {
    /// `plan`, `apply`, `verify` or `rollback`.
    #[schemars(extend("enum" = ["plan", "apply", "verify", "rollback"]))]
    pub phase: String,
    pub ok: bool,
    /// The plugin's summary, or the error.
    pub message: String,
    pub duration_ms: u64,
}

/// The surface's front-door verification (`[surface.*.verify]`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckReport {
    /// The URL, with `${VAR}`s replaced.
    pub url: String,
    pub ok: bool,
    /// The last HTTP status; null when nothing answered.
    pub status: Option<u16>,
    /// Requests made until it passed or timed out.
    pub attempts: u32,
    /// What answered, or why it failed.
    pub message: String,
}

impl SurfaceReport {
    /// A surface that has not run yet, with `outcome`.
    pub fn new(name: &str, outcome: &str) -> SurfaceReport {
        SurfaceReport {
            name: name.to_owned(),
            outcome: outcome.to_owned(),
            release: None,
            services: Vec::new(),
            steps: Vec::new(),
            verify: None,
            error: None,
            duration_ms: 0,
        }
    }
}

impl RunReport {
    /// A run that stopped before any surface ran: bad manifest, unknown
    /// surface, lock held, no Docker engine.
    pub fn failed(command: &str, project: String, error: String) -> RunReport {
        RunReport {
            command: command.to_owned(),
            project,
            ok: false,
            refused: false,
            builds: Vec::new(),
            surfaces: Vec::new(),
            error: Some(error),
            duration_ms: 0,
            engine: None,
        }
    }

    /// A short human summary, one line per surface.
    pub fn human(&self) -> String {
        let mut out = String::new();
        if let Some(engine) = self.engine.as_ref().filter(|e| e.remote) {
            out.push_str(&format!(
                "engine   {} (from {}), another machine; checks: {}\n",
                engine.address, engine.source, engine.checks
            ));
        }
        for s in &self.surfaces {
            out.push_str(&format!(
                "{:<8} {} ({} ms)\n",
                s.outcome, s.name, s.duration_ms
            ));
            for svc in &s.services {
                let order = svc
                    .order
                    .as_deref()
                    .map(|o| format!(", {o}"))
                    .unwrap_or_default();
                let action = match (&svc.action, svc.changed.is_empty()) {
                    (Some(verb), true) => format!(" {}{order}", verb.name()),
                    (Some(verb), false) => {
                        format!(" {}{order} ({})", verb.name(), svc.changed.join(", "))
                    }
                    (None, _) => String::new(),
                };
                out.push_str(&format!(
                    "         service {}:{action} {} -> {}\n",
                    svc.service,
                    short_id(svc.image_before.as_deref().unwrap_or("-")),
                    short_id(
                        svc.image_running
                            .as_deref()
                            .or(svc.image_built.as_deref())
                            .unwrap_or("-")
                    ),
                ));
            }
            for step in &s.steps {
                for call in &step.calls {
                    out.push_str(&format!(
                        "         step {} {} {} {}: {}{}\n",
                        step.index,
                        step.plugin_name,
                        step.plugin_version,
                        call.phase,
                        if call.ok { "" } else { "FAILED: " },
                        call.message
                    ));
                }
            }
            if let Some(v) = &s.verify {
                out.push_str(&format!(
                    "         verify {}: {}{}\n",
                    v.url,
                    if v.ok { "" } else { "FAILED: " },
                    v.message
                ));
            }
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}

/// The JSON Schema of the `--json` report, as checked in under `schema/`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Document);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_schema_is_checked_in_and_in_sync() {
        crate::manifest::tests::assert_schema_in_sync(
            "report.schema.json",
            &json_schema(),
            "slipway schema report",
        );
    }

    #[test]
    fn the_document_flattens_the_run_between_version_and_exit_code() {
        let run = RunReport::failed("deploy", "p".into(), "lock held".into());
        let doc = serde_json::to_value(Document::new(&run, 3)).unwrap();
        assert_eq!(doc["schema_version"], SCHEMA_VERSION);
        assert_eq!(doc["exit_code"], 3);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["error"], "lock held");
        assert_eq!(doc["surfaces"], serde_json::json!([]));
        let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
        let required = schema["required"].to_string();
        for key in ["schema_version", "exit_code", "ok", "command", "surfaces"] {
            assert!(required.contains(key), "{key} not required: {required}");
        }
    }
}
