//! What a run did, for people (stderr) and for CI (`--json` on stdout).

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `plan` or `deploy`.
    pub command: String,
    pub project: String,
    pub ok: bool,
    pub surfaces: Vec<SurfaceReport>,
    /// Set when the run failed; names the surface, step and plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SurfaceReport {
    pub name: String,
    /// `ok`, `failed`, `planned` or `skipped` (an earlier surface failed).
    pub outcome: String,
    pub services: Vec<ServiceReport>,
    pub steps: Vec<StepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<CheckReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// A service the surface builds and force-recreates (rule 1).
#[derive(Debug, Clone, Serialize, Default)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub build_ms: u64,
    pub recreate_ms: u64,
    pub ready_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub index: usize,
    /// The `[plugins.<key>]` name.
    pub plugin: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub sha256: String,
    pub calls: Vec<CallReport>,
    /// What the step's calls reported for later steps, e.g. `release`.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// `plan`, `apply`, `verify` or `rollback`.
    pub phase: String,
    pub ok: bool,
    /// The plugin's summary, or the error.
    pub message: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub url: String,
    pub ok: bool,
    pub status: Option<u16>,
    pub attempts: u32,
    pub message: String,
}

impl RunReport {
    /// A short human summary, one line per surface.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for s in &self.surfaces {
            out.push_str(&format!(
                "{:<8} {} ({} ms)\n",
                s.outcome, s.name, s.duration_ms
            ));
            for svc in &s.services {
                out.push_str(&format!(
                    "         service {}: {} -> {}\n",
                    svc.service,
                    short_image(svc.image_before.as_deref()),
                    short_image(svc.image_running.as_deref().or(svc.image_built.as_deref())),
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

fn short_image(id: Option<&str>) -> String {
    match id {
        Some(id) => {
            let hex = id.trim_start_matches("sha256:");
            hex[..hex.len().min(12)].to_owned()
        }
        None => "-".into(),
    }
}
