//! The audit journal: one JSON line per deploy, rollback and watchdog action,
//! appended to `<state_dir>/journal.jsonl`.
//!
//! Each entry is written with a single `write(2)` on a file opened with
//! `O_APPEND`, then synced. A crash can at worst leave an unterminated last
//! line: the next append terminates it first, so it never merges with a new
//! entry, and readers skip any line that does not parse.

use crate::report::RunReport;
use crate::text::short_id;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("journal.jsonl")
}

/// Who ran slipway: the local user, and the CI run when there is one.
#[derive(Debug, Serialize)]
pub struct Who {
    pub user: Option<String>,
    /// The CI variables that identify a run, when set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ci: BTreeMap<String, String>,
}

const CI_VARS: [&str; 16] = [
    "CI",
    "GITHUB_ACTOR",
    "GITHUB_REPOSITORY",
    "GITHUB_WORKFLOW",
    "GITHUB_RUN_ID",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITLAB_USER_LOGIN",
    "CI_PROJECT_PATH",
    "CI_PIPELINE_ID",
    "CI_JOB_ID",
    "CI_COMMIT_SHA",
    "BUILDKITE_BUILD_CREATOR",
    "BUILDKITE_BUILD_NUMBER",
    "BUILDKITE_COMMIT",
    "SLIPWAY_ACTOR",
];

impl Who {
    pub fn from_env() -> Who {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Who {
            user: var("SUDO_USER").or_else(|| var("USER")),
            ci: CI_VARS
                .iter()
                .filter_map(|name| Some((name.to_string(), var(name)?)))
                .collect(),
        }
    }

    /// `alice`, or `ci:GITHUB_ACTOR=alice` when a CI run is known.
    fn label(entry: &Value) -> String {
        let who = &entry["who"];
        let ci = who["ci"].as_object();
        let actor = ci.and_then(|ci| {
            [
                "GITHUB_ACTOR",
                "GITLAB_USER_LOGIN",
                "BUILDKITE_BUILD_CREATOR",
                "SLIPWAY_ACTOR",
            ]
            .iter()
            .find_map(|k| Some(format!("ci:{}", ci.get(*k)?.as_str()?)))
        });
        actor
            .or_else(|| who["user"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    }
}

/// One journal line.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    pub who: Who,
    /// `deploy`, `rollback` or `watch`.
    pub command: String,
    pub project: String,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub surfaces: Vec<SurfaceEntry>,
    /// For `watch`: the watcher that acted and what it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watcher: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SurfaceEntry {
    pub name: String,
    pub outcome: String,
    pub duration_ms: u64,
    pub services: Vec<ServiceEntry>,
    pub steps: Vec<StepEntry>,
    /// The release command: its exit code, start, finish and duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::report::ReleaseReport>,
}

#[derive(Debug, Serialize)]
pub struct ServiceEntry {
    pub service: String,
    pub image_before: Option<String>,
    /// The image the service's containers run after the command.
    pub image_after: Option<String>,
    /// What the command did to it: create, replace or skip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<crate::reconcile::Verb>,
    /// Hashes of the specs before and after (see `.slipway/specs/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_after: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StepEntry {
    pub plugin: String,
    pub plugin_name: String,
    pub plugin_version: String,
    pub sha256: String,
    pub ok: bool,
    /// Release ids and the like, as the step reported them.
    pub outputs: BTreeMap<String, String>,
}

pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Entry {
    pub fn of_run(report: &RunReport) -> Entry {
        Entry {
            ts: now(),
            who: Who::from_env(),
            command: report.command.clone(),
            project: report.project.clone(),
            ok: report.ok,
            error: report.error.clone(),
            duration_ms: report.duration_ms,
            surfaces: report
                .surfaces
                .iter()
                .map(|s| SurfaceEntry {
                    name: s.name.clone(),
                    outcome: s.outcome.clone(),
                    duration_ms: s.duration_ms,
                    release: s.release.clone(),
                    services: s
                        .services
                        .iter()
                        .map(|svc| ServiceEntry {
                            service: svc.service.clone(),
                            image_before: svc.image_before.clone(),
                            image_after: svc.image_running.clone(),
                            action: svc.action.clone(),
                            spec_before: svc.spec_before.clone(),
                            spec_after: svc.spec_after.clone(),
                        })
                        .collect(),
                    steps: s
                        .steps
                        .iter()
                        .map(|step| StepEntry {
                            plugin: step.plugin.clone(),
                            plugin_name: step.plugin_name.clone(),
                            plugin_version: step.plugin_version.clone(),
                            sha256: step.sha256.clone(),
                            ok: step.calls.iter().all(|c| c.ok),
                            outputs: step.outputs.clone(),
                        })
                        .collect(),
                })
                .collect(),
            watcher: None,
            action: None,
        }
    }

    pub fn of_action(project: &str, watcher: &str, action: &str, summary: &str) -> Entry {
        Entry {
            ts: now(),
            who: Who::from_env(),
            command: "watch".into(),
            project: project.to_owned(),
            ok: true,
            error: None,
            duration_ms: 0,
            surfaces: Vec::new(),
            watcher: Some(watcher.to_owned()),
            action: Some(format!("{action}: {summary}")),
        }
    }
}

/// Append `entry` as one line.
pub fn append(state_dir: &Path, entry: &Entry) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path(state_dir))?;
    let mut line = Vec::new();
    let end = file.seek(SeekFrom::End(0))?;
    if end > 0 {
        file.seek(SeekFrom::End(-1))?;
        let mut last = [0u8];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.push(b'\n');
        }
    }
    serde_json::to_writer(&mut line, entry).expect("entries serialize");
    line.push(b'\n');
    let written = file.write_all(&line).and_then(|()| file.sync_data());
    if written.is_err() {
        // A full disk can take part of the line: take it back, so that the
        // journal holds whole entries only.
        let _ = file.set_len(end);
    }
    written
}

/// Record a run; a journal that cannot be written is reported, not fatal:
/// the deploy itself already happened.
pub fn record(state_dir: &Path, entry: &Entry) {
    if let Err(e) = append(state_dir, entry) {
        tracing::warn!(
            "cannot append to the journal {}: {e}; this {} is not recorded",
            path(state_dir).display(),
            entry.command
        );
    }
}

/// Every entry that parses, oldest first, and how many lines did not.
pub fn read(state_dir: &Path) -> std::io::Result<(Vec<Value>, usize)> {
    let text = match std::fs::read_to_string(path(state_dir)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    let mut torn = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => entries.push(v),
            _ => torn += 1,
        }
    }
    Ok((entries, torn))
}

/// The newest successful deploy of `surface`, as recorded.
pub fn last_deploy<'a>(entries: &'a [Value], surface: &str) -> Option<(&'a Value, &'a Value)> {
    entries.iter().rev().find_map(|e| {
        if e["command"] != "deploy" && e["command"] != "rollback" {
            return None;
        }
        let s = e["surfaces"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == surface && s["outcome"] == "ok")?;
        Some((e, s))
    })
}

/// What a service ran before a deploy: its image and, when recorded, the
/// hash of its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    pub image: String,
    pub spec: Option<String>,
}

impl Previous {
    /// What `container` runs: its image and spec.
    pub fn of(container: &crate::docker::ContainerInfo) -> Previous {
        Previous {
            image: container.image_id.clone(),
            spec: container.spec_hash.clone(),
        }
    }

    fn is(&self, container: &crate::docker::ContainerInfo) -> bool {
        self.image == container.image_id
            && (self.spec.is_none() || self.spec == container.spec_hash)
    }
}

/// A rollback under way: for each service of one surface, what it is rolled
/// back from and to. It is written before the rollback changes a service and
/// removed once the rollback succeeds or a deploy of the surface starts. A
/// rollback cut short writes no journal line, so without it a rerun would
/// find a service it had already put back and roll it back one more deploy.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PendingRollback {
    pub services: BTreeMap<String, Move>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Move {
    pub from: Previous,
    pub to: Previous,
}

impl PendingRollback {
    fn path(state_dir: &Path, surface: &str) -> PathBuf {
        state_dir.join(format!("rollback.{surface}.json"))
    }

    /// The rollback of `surface` a crash left, or none. A file that does not
    /// parse counts as none: the journal then decides, as before it existed.
    pub fn read(state_dir: &Path, surface: &str) -> PendingRollback {
        std::fs::read(Self::path(state_dir, surface))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Where the interrupted rollback was taking `service`, when `current`
    /// is where it started or where it was going.
    pub fn resume(
        &self,
        service: &str,
        current: &crate::docker::ContainerInfo,
    ) -> Option<Previous> {
        let step = self.services.get(service)?;
        (step.from.is(current) || step.to.is(current)).then(|| step.to.clone())
    }

    /// Record `service`'s move, keeping the one an interrupted rollback
    /// recorded (its `from` is where the service started), and save.
    pub fn record(
        &mut self,
        state_dir: &Path,
        surface: &str,
        service: &str,
        step: Move,
    ) -> std::io::Result<()> {
        self.services.entry(service.to_owned()).or_insert(step);
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::state::write_atomic(&Self::path(state_dir, surface), &json)
    }

    pub fn clear(state_dir: &Path, surface: &str) {
        let _ = std::fs::remove_file(Self::path(state_dir, surface));
    }
}

/// `service`'s entries in the recorded deploys of `surface`, newest first.
fn deployed_entries<'a>(
    entries: &'a [Value],
    surface: &'a str,
    service: &'a str,
) -> impl Iterator<Item = &'a Value> {
    entries
        .iter()
        .rev()
        .filter(|e| e["command"] == "deploy")
        .flat_map(|e| e["surfaces"].as_array().into_iter().flatten())
        .filter(move |s| s["name"] == surface)
        .flat_map(|s| s["services"].as_array().into_iter().flatten())
        .filter(move |svc| svc["service"] == service)
}

/// Whether a service's deploy entry left it on `container`'s image and spec.
fn left_on(svc: &Value, container: &crate::docker::ContainerInfo) -> bool {
    svc["image_after"] == container.image_id.as_str()
        && (svc["spec_after"].is_null()
            || svc["spec_after"].as_str() == container.spec_hash.as_deref())
}

/// Of a service's containers, the one its newest recorded deploy of
/// `surface` left. An interrupted deploy or rollback leaves two (the one it
/// replaced, parked, and the one it made); a rollback starts from the one
/// the journal knows. With none recorded, the first.
pub fn deployed<'a>(
    entries: &[Value],
    surface: &str,
    service: &str,
    containers: &'a [crate::docker::ContainerInfo],
) -> Option<&'a crate::docker::ContainerInfo> {
    deployed_entries(entries, surface, service)
        .find_map(|svc| containers.iter().find(|c| left_on(svc, c)))
        .or(containers.first())
}

/// Whether the newest recorded run of `surface` that left `service` on some
/// image (a deploy or a rollback, failed or not) left it on `image` and
/// `spec`. False when a run was cut off after it replaced the service, when
/// someone changed it by hand, and when no run is recorded: then whatever
/// routes to it may hold an address that is gone.
pub fn left_as_recorded(
    entries: &[Value],
    surface: &str,
    service: &str,
    image: &str,
    spec: &str,
) -> bool {
    entries
        .iter()
        .rev()
        .filter(|e| e["command"] == "deploy" || e["command"] == "rollback")
        .flat_map(|e| e["surfaces"].as_array().into_iter().flatten())
        .filter(|s| s["name"] == surface)
        .flat_map(|s| s["services"].as_array().into_iter().flatten())
        .find(|svc| svc["service"] == service && svc["image_after"].is_string())
        .is_some_and(|svc| {
            svc["image_after"] == image
                && (svc["spec_after"].is_null() || svc["spec_after"] == spec)
        })
}

/// The swarm counterpart of [`before`]: the image reference `service` ran
/// before the newest recorded deploy that left it on `current` (a pinned
/// `repo@sha256:…`, which names a spec's image as a digest names bytes).
pub fn image_before(
    entries: &[Value],
    surface: &str,
    service: &str,
    current: &str,
) -> Option<String> {
    deployed_entries(entries, surface, service)
        .filter(|svc| svc["image_after"] == current)
        .find_map(|svc| {
            let image = svc["image_before"].as_str()?;
            (image != current).then(|| image.to_owned())
        })
}

/// What `service` ran before the newest recorded deploy that left it on
/// `current`'s image and spec: what a rollback restores. Rollbacks
/// themselves are not followed, so rolling back twice goes back two
/// deploys.
pub fn before(
    entries: &[Value],
    surface: &str,
    service: &str,
    current: &crate::docker::ContainerInfo,
) -> Option<Previous> {
    let current_spec = current.spec_hash.as_deref();
    deployed_entries(entries, surface, service)
        .filter(|svc| left_on(svc, current))
        .find_map(|svc| {
            let image = svc["image_before"].as_str()?.to_owned();
            let spec = svc["spec_before"].as_str().map(str::to_owned);
            let same_spec = spec.is_none() || spec.as_deref() == current_spec;
            (image != current.image_id || !same_spec).then_some(Previous { image, spec })
        })
}

/// One entry as a line for people.
pub fn human(entry: &Value) -> String {
    let mut line = format!(
        "{} {:<8} {:<6} by {}",
        entry["ts"].as_str().unwrap_or("?"),
        entry["command"].as_str().unwrap_or("?"),
        if entry["ok"] == true { "ok" } else { "FAILED" },
        Who::label(entry),
    );
    if let Some(watcher) = entry["watcher"].as_str() {
        line.push_str(&format!(
            "\n    {watcher}: {}",
            entry["action"].as_str().unwrap_or("")
        ));
    }
    for s in entry["surfaces"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "\n    {} {} in {:.1} s",
            s["name"].as_str().unwrap_or("?"),
            s["outcome"].as_str().unwrap_or("?"),
            s["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
        ));
        for svc in s["services"].as_array().into_iter().flatten() {
            line.push_str(&format!(
                "\n      {:<12} {} -> {}",
                svc["service"].as_str().unwrap_or("?"),
                short_id(svc["image_before"].as_str().unwrap_or("-")),
                short_id(svc["image_after"].as_str().unwrap_or("-"))
            ));
        }
        for step in s["steps"].as_array().into_iter().flatten() {
            let outputs: Vec<String> = step["outputs"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !["built", "recreated"].contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            line.push_str(&format!(
                "\n      step {} {} sha256:{} {}",
                step["plugin_name"].as_str().unwrap_or("?"),
                step["plugin_version"].as_str().unwrap_or("?"),
                short_id(step["sha256"].as_str().unwrap_or("")),
                outputs.join(" ")
            ));
        }
    }
    if let Some(error) = entry["error"].as_str() {
        line.push_str(&format!("\n    error: {error}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: &str) -> Entry {
        Entry::of_action("p", "w", command, "summary")
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_never_merges_with_the_next() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &entry("one")).unwrap();
        // A crash mid-write: half a line, no newline.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path()))
            .unwrap();
        f.write_all(br#"{"ts":"2026-11-26T00:00:00Z","comm"#)
            .unwrap();
        append(dir.path(), &entry("two")).unwrap();
        let (entries, torn) = read(dir.path()).unwrap();
        assert_eq!(torn, 1);
        let actions: Vec<&str> = entries
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["one: summary", "two: summary"]);
    }

    #[test]
    fn rollback_targets_follow_deploys_back() {
        let deploy = |before: (&str, &str), after: (&str, &str)| {
            serde_json::json!({"command": "deploy", "surfaces": [{"name": "b", "outcome": "ok",
                "services": [{"service": "api", "image_before": before.0, "spec_before": before.1,
                    "image_after": after.0, "spec_after": after.1}]}]})
        };
        let rollback = serde_json::json!({"command": "rollback", "surfaces": [{"name": "b",
            "services": [{"service": "api", "image_before": "v2", "image_after": "v1"}]}]});
        let entries = vec![
            deploy(("v0", "s0"), ("v1", "s1")),
            deploy(("v1", "s1"), ("v2", "s1")),
            rollback,
            deploy(("v1", "s1"), ("v1", "s1")),
            // A config-only change: same image, new spec.
            deploy(("v1", "s1"), ("v1", "s2")),
        ];
        let running = |image: &str, spec: &str| crate::docker::ContainerInfo {
            image_id: image.into(),
            spec_hash: Some(spec.into()),
            ..Default::default()
        };
        let at = |image: &str, spec: &str| before(&entries, "b", "api", &running(image, spec));
        let prev = |image: &str, spec: &str| Previous {
            image: image.into(),
            spec: Some(spec.into()),
        };
        assert_eq!(at("v2", "s1"), Some(prev("v1", "s1")));
        assert_eq!(
            at("v1", "s2"),
            Some(prev("v1", "s1")),
            "the config goes back"
        );
        assert_eq!(at("v1", "s1"), Some(prev("v0", "s0")));
        assert_eq!(at("v0", "s0"), None);
        assert_eq!(before(&entries, "b", "worker", &running("v1", "s1")), None);
    }

    #[test]
    fn a_service_replaced_by_a_run_the_journal_lacks_is_not_as_recorded() {
        let run = |command: &str, after: Option<&str>| {
            serde_json::json!({"command": command, "surfaces": [{"name": "b", "outcome": "failed",
                "services": [{"service": "api", "image_before": "v1", "image_after": after,
                    "spec_after": "s1"}]}]})
        };
        let at = |entries: &[Value], image: &str, spec: &str| {
            left_as_recorded(entries, "b", "api", image, spec)
        };
        let entries = vec![run("deploy", Some("v1")), run("deploy", Some("v2"))];
        assert!(at(&entries, "v2", "s1"));
        assert!(
            !at(&entries, "v3", "s1"),
            "a run cut off after it replaced api"
        );
        assert!(!at(&entries, "v2", "s2"), "the spec changed");
        // A run that failed before it replaced api records no image after.
        let entries = vec![run("deploy", Some("v2")), run("deploy", None)];
        assert!(at(&entries, "v2", "s1"));
        let entries = vec![run("deploy", Some("v2")), run("rollback", Some("v1"))];
        assert!(at(&entries, "v1", "s1"));
        assert!(!at(&[], "v1", "s1"), "nothing recorded");
    }

    #[test]
    fn a_rerun_of_an_interrupted_rollback_resumes_it_rather_than_going_further_back() {
        let dir = tempfile::tempdir().unwrap();
        let running = |image: &str, spec: &str| crate::docker::ContainerInfo {
            image_id: image.into(),
            spec_hash: Some(spec.into()),
            ..Default::default()
        };
        let prev = |image: &str, spec: &str| Previous {
            image: image.into(),
            spec: Some(spec.into()),
        };
        let mut pending = PendingRollback::read(dir.path(), "b");
        assert_eq!(pending.resume("api", &running("v2", "s2")), None);
        let step = Move {
            from: prev("v2", "s2"),
            to: prev("v1", "s1"),
        };
        pending.record(dir.path(), "b", "api", step).unwrap();
        // The rerun finds api where it started or already put back.
        let pending = PendingRollback::read(dir.path(), "b");
        assert_eq!(
            pending.resume("api", &running("v2", "s2")),
            Some(prev("v1", "s1"))
        );
        assert_eq!(
            pending.resume("api", &running("v1", "s1")),
            Some(prev("v1", "s1"))
        );
        // Anywhere else, or another service or surface: the journal decides.
        assert_eq!(pending.resume("api", &running("v3", "s2")), None);
        assert_eq!(pending.resume("bot", &running("v2", "s2")), None);
        assert_eq!(
            PendingRollback::read(dir.path(), "c"),
            PendingRollback::default()
        );
        // A resumed rollback keeps where the service started.
        let mut pending = pending;
        let again = Move {
            from: prev("v1", "s1"),
            to: prev("v1", "s1"),
        };
        pending.record(dir.path(), "b", "api", again).unwrap();
        let read = PendingRollback::read(dir.path(), "b");
        assert_eq!(read.services["api"].from, prev("v2", "s2"));
        PendingRollback::clear(dir.path(), "b");
        assert_eq!(
            PendingRollback::read(dir.path(), "b"),
            PendingRollback::default()
        );
    }

    #[test]
    fn swarm_rollback_targets_follow_pinned_digests_back() {
        let deploy = |before: &str, after: &str| {
            serde_json::json!({"command": "deploy", "surfaces": [{"name": "b", "outcome": "ok",
                "services": [{"service": "api", "image_before": before, "image_after": after}]}]})
        };
        let entries = vec![
            deploy("r/api@sha256:1", "r/api@sha256:2"),
            deploy("r/api@sha256:2", "r/api@sha256:3"),
            // A rerun that changed nothing records the same digest twice.
            deploy("r/api@sha256:3", "r/api@sha256:3"),
        ];
        let at = |current: &str| image_before(&entries, "b", "api", current);
        assert_eq!(at("r/api@sha256:3").as_deref(), Some("r/api@sha256:2"));
        assert_eq!(at("r/api@sha256:2").as_deref(), Some("r/api@sha256:1"));
        assert_eq!(at("r/api@sha256:1"), None);
        assert_eq!(image_before(&entries, "b", "bot", "r/api@sha256:3"), None);
    }

    #[test]
    fn after_an_interrupted_run_the_rollback_starts_from_the_container_the_journal_knows() {
        let entries = vec![
            serde_json::json!({"command": "deploy", "surfaces": [{"name": "b", "outcome": "ok",
                "services": [{"service": "api", "image_before": "v1", "image_after": "v2", "spec_after": "s2"}]}]}),
        ];
        let container = |id: &str, image: &str, spec: &str| crate::docker::ContainerInfo {
            id: id.into(),
            image_id: image.into(),
            spec_hash: Some(spec.into()),
            ..Default::default()
        };
        // The rollback's new container, listed first, and the parked one it replaced.
        let both = [
            container("new", "v1", "s1"),
            container("parked", "v2", "s2"),
        ];
        let from = deployed(&entries, "b", "api", &both).map(|c| c.id.as_str());
        assert_eq!(from, Some("parked"));
        let unknown = [container("a", "v7", "s7"), container("b", "v8", "s8")];
        let from = deployed(&entries, "b", "api", &unknown).map(|c| c.id.as_str());
        assert_eq!(from, Some("a"), "none recorded: the first");
        assert!(deployed(&entries, "b", "api", &[]).is_none());
    }

    #[test]
    fn entries_with_non_ascii_text_print_without_panicking() {
        let entry = serde_json::json!({"ts": "2026-12-01T00:00:00Z", "command": "deploy", "ok": true,
            "who": {"user": "zoë–ünïcode-ñame"},
            "surfaces": [{"name": "bäckend", "outcome": "ok", "services": [{"service": "äpi",
                "image_before": "sha256:ééééééééééééééé", "image_after": "日本語の画像識別子です"}]}]});
        let line = human(&entry);
        assert!(
            line.contains("éééééééééééé") && line.contains("日本語の画像識別子です"),
            "{line}"
        );

        // Every field a person, a CI variable or a plugin sets, and every
        // id that is cut short, holding text whose 12th byte falls inside
        // a character (the byte slice that cut the step's sha256 panicked).
        let text = "déploiement-ü-日本語";
        let id = "日本語-déploiement-ü";
        assert!(!id.is_char_boundary(12));
        let entry = serde_json::json!({"ts": text, "command": text, "ok": false, "error": text,
            "who": {"user": text, "ci": {"GITHUB_ACTOR": text}},
            "watcher": text, "action": text,
            "surfaces": [{"name": text, "outcome": text, "duration_ms": 1,
                "services": [{"service": text, "image_before": format!("sha256:{id}"),
                    "image_after": id}],
                "steps": [{"plugin_name": text, "plugin_version": text, "sha256": id,
                    "outputs": {text: text}}]}]});
        let line = human(&entry);
        assert!(line.contains(&format!("by ci:{text}")), "{line}");
        assert!(
            line.contains("日本語-déploiem -> 日本語-déploiem")
                && line.contains(&format!("sha256:日本語-déploiem {text}={text}")),
            "{line}"
        );
    }

    #[test]
    fn a_missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap().0.len(), 0);
    }

    #[test]
    fn last_deploy_skips_failures_and_other_surfaces() {
        let lines = [
            r#"{"command":"deploy","surfaces":[{"name":"a","outcome":"ok","n":1}]}"#,
            r#"{"command":"deploy","surfaces":[{"name":"a","outcome":"failed","n":2}]}"#,
            r#"{"command":"deploy","surfaces":[{"name":"b","outcome":"ok","n":3}]}"#,
        ];
        let entries: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(last_deploy(&entries, "a").unwrap().1["n"], 1);
        assert_eq!(last_deploy(&entries, "b").unwrap().1["n"], 3);
        assert!(last_deploy(&entries, "c").is_none());
    }
}
