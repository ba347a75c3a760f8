//! Desired against observed: what to do with one service. Pure, so every
//! case, the leftovers of a killed deploy included, is a table test.
//!
//! Like a Kubernetes controller, this looks only at the current state, never
//! at what the last run meant to do: a rerun after any crash computes the
//! same answer from what it finds.

use serde::Serialize;

/// What one service should be.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The container name the spec gives (compose v2's
    /// `<project>-<service>-1` or `container_name`).
    pub name: String,
    pub spec_hash: String,
    pub image_id: String,
    /// Compose v2's config-hash of the service, when compose v2 is installed.
    pub config_hash: Option<String>,
}

/// What slipway reads of one existing container of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub id: String,
    pub name: String,
    pub image_id: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    /// The spec-hash label; `None` for a container slipway did not create.
    pub spec_hash: Option<String>,
    /// Compose v2's config-hash label, on what compose v2 or slipway made.
    pub config_hash: Option<String>,
    /// Made as compose v1 makes containers (`com.docker.compose.version`
    /// 1.x: `_1` names), by docker-compose v1 or by an older slipway.
    pub compose_v1: bool,
    /// Docker's creation time (RFC 3339), to pick the newest.
    pub created: String,
}

impl Existing {
    /// On the desired definition: created by slipway from the desired spec,
    /// or by `docker compose up` (v2) from the same service definition.
    fn is_current(&self, desired: &Desired) -> bool {
        match &self.spec_hash {
            Some(hash) => *hash == desired.spec_hash,
            None => self.config_hash.is_some() && self.config_hash == desired.config_hash,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// No container yet.
    Create,
    /// Its image or spec differs (or `--force`).
    Replace,
    /// It already runs the desired spec on the desired image.
    Skip,
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Replace => "replace",
            Verb::Skip => "skip",
        }
    }
}

/// The decision for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub verb: Verb,
    /// Why: the changed compose keys, `image`, `--force`, `not running`.
    pub changed: Vec<String>,
    /// The container that stays (or is replaced), if any.
    pub keep: Option<Existing>,
    /// Leftovers to remove first, each with the reason.
    pub discard: Vec<(Existing, String)>,
}

/// Decide. `changed_keys(hash)` names the compose keys in which the spec a
/// container was created from differs from the desired one (`None` when
/// that spec is unknown).
pub fn reconcile(
    desired: &Desired,
    existing: &[Existing],
    force: bool,
    changed_keys: impl Fn(&str) -> Option<Vec<String>>,
) -> Action {
    let Some(keep) = pick(desired, existing) else {
        return Action {
            verb: Verb::Create,
            changed: Vec::new(),
            keep: None,
            discard: Vec::new(),
        };
    };
    let discard = existing
        .iter()
        .filter(|c| c.id != keep.id)
        .map(|c| (c.clone(), leftover_reason(c, desired)))
        .collect();
    let mut changed = Vec::new();
    if keep.image_id != desired.image_id {
        changed.push("image".to_owned());
    }
    if keep.compose_v1 {
        changed.push(format!(
            "compose v1's {} becomes compose v2's {}",
            keep.name, desired.name
        ));
    }
    match keep.spec_hash.as_deref() {
        _ if keep.is_current(desired) => {}
        Some(hash) => match changed_keys(hash) {
            // The name, the image's tag and the labels are what v1 did
            // differently: said once above.
            Some(keys) if keep.compose_v1 => changed.extend(
                keys.into_iter()
                    .filter(|k| !["container_name", "image", "labels"].contains(&k.as_str())),
            ),
            Some(keys) if !keys.is_empty() => changed.extend(keys),
            _ => changed.push("spec".to_owned()),
        },
        None if keep.compose_v1 => {}
        None => changed.push("spec (created outside slipway)".to_owned()),
    }
    if keep.state != "running" {
        changed.push(format!("not running ({})", keep.state));
    }
    if changed.is_empty() && force {
        changed.push("--force".to_owned());
    }
    Action {
        verb: if changed.is_empty() {
            Verb::Skip
        } else {
            Verb::Replace
        },
        changed,
        keep: Some(keep.clone()),
        discard,
    }
}

/// Under a step that replaces services start-first, running leftovers are
/// not removed: nginx may route to any of them, and only the step moves
/// traffic without a gap (it starts a replacement, switches to it, then
/// retires every other container of the service). So the service goes to
/// the step as replaced; stopped leftovers are still removed first.
pub fn leave_running_leftovers_to_the_step(mut action: Action) -> Action {
    let (running, stopped): (Vec<_>, Vec<_>) = action
        .discard
        .into_iter()
        .partition(|(c, _)| c.state == "running");
    action.discard = stopped;
    if !running.is_empty() {
        action.verb = Verb::Replace;
        action.changed.extend(
            running
                .iter()
                .map(|(c, _)| format!("{} runs beside it, left by an interrupted deploy", c.name)),
        );
    }
    action
}

/// The container to keep: one already on the desired spec and running
/// (a replacement that was never retired is adopted), else a running one
/// with the canonical name, else the newest running, else the newest.
fn pick<'a>(desired: &Desired, existing: &'a [Existing]) -> Option<&'a Existing> {
    let running = |c: &&Existing| c.state == "running";
    let current = |c: &&Existing| c.is_current(desired) && c.image_id == desired.image_id;
    let newest = |a: &&Existing, b: &&Existing| a.created.cmp(&b.created);
    existing
        .iter()
        .filter(running)
        .filter(current)
        .max_by(newest)
        .or_else(|| {
            existing
                .iter()
                .filter(running)
                .find(|c| c.name == desired.name)
        })
        .or_else(|| existing.iter().filter(running).max_by(newest))
        .or_else(|| existing.iter().max_by(newest))
}

fn leftover_reason(c: &Existing, desired: &Desired) -> String {
    let current = c.is_current(desired);
    format!(
        "leftover of an interrupted deploy: {} ({}, {} spec)",
        c.name,
        c.state,
        if current { "desired" } else { "old" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> Desired {
        Desired {
            name: "p_api_1".into(),
            spec_hash: "new".into(),
            image_id: "img2".into(),
            config_hash: Some("cfg".into()),
        }
    }

    fn c(id: &str, name: &str, image: &str, state: &str, hash: Option<&str>, at: &str) -> Existing {
        Existing {
            id: id.into(),
            name: name.into(),
            image_id: image.into(),
            state: state.into(),
            spec_hash: hash.map(Into::into),
            config_hash: None,
            compose_v1: false,
            created: at.into(),
        }
    }

    fn run(existing: &[Existing], force: bool) -> Action {
        reconcile(&desired(), existing, force, |old| {
            (old == "old").then(|| vec!["environment".to_owned()])
        })
    }

    fn ids(a: &Action) -> (Option<&str>, Vec<&str>) {
        (
            a.keep.as_ref().map(|k| k.id.as_str()),
            a.discard.iter().map(|(c, _)| c.id.as_str()).collect(),
        )
    }

    #[test]
    fn running_leftovers_go_to_a_start_first_step_and_stopped_ones_are_removed() {
        let existing = [
            c("old", "p_api_1", "img1", "running", Some("old"), "1"),
            c(
                "next",
                "p_api_1_next_9",
                "img2",
                "running",
                Some("new"),
                "2",
            ),
            c("dead", "x_p_api_1", "img1", "exited", Some("old"), "0"),
        ];
        let action = leave_running_leftovers_to_the_step(run(&existing, false));
        assert_eq!(action.verb, Verb::Replace);
        assert_eq!(ids(&action), (Some("next"), vec!["dead"]));
        assert!(
            action
                .changed
                .iter()
                .any(|c| c.contains("p_api_1 runs beside it")),
            "{:?}",
            action.changed
        );
        let alone = [c("a", "p_api_1", "img2", "running", Some("new"), "1")];
        let action = leave_running_leftovers_to_the_step(run(&alone, false));
        assert_eq!(action.verb, Verb::Skip, "no leftover: nothing to hand over");
    }

    #[test]
    fn create_replace_and_skip() {
        assert_eq!(run(&[], false).verb, Verb::Create);
        let same = [c("a", "p_api_1", "img2", "running", Some("new"), "1")];
        assert_eq!(run(&same, false).verb, Verb::Skip);
        let forced = run(&same, true);
        assert_eq!(
            (forced.verb, forced.changed),
            (Verb::Replace, vec!["--force".into()])
        );
        let env = run(
            &[c("a", "p_api_1", "img2", "running", Some("old"), "1")],
            false,
        );
        assert_eq!(
            (env.verb, env.changed),
            (Verb::Replace, vec!["environment".into()])
        );
        let image = run(
            &[c("a", "p_api_1", "img1", "running", Some("new"), "1")],
            false,
        );
        assert_eq!(image.changed, ["image"]);
        let unknown = run(
            &[c("a", "p_api_1", "img2", "running", Some("gone"), "1")],
            false,
        );
        assert_eq!(unknown.changed, ["spec"]);
        let foreign = run(&[c("a", "p_api_1", "img2", "running", None, "1")], false);
        assert_eq!(foreign.changed, ["spec (created outside slipway)"]);
        let stopped = run(
            &[c("a", "p_api_1", "img2", "exited", Some("new"), "1")],
            false,
        );
        assert_eq!(stopped.changed, ["not running (exited)"]);
    }

    #[test]
    fn compose_v2_containers_on_the_desired_definition_are_adopted() {
        let made_by_compose = |config: &str| Existing {
            config_hash: Some(config.into()),
            ..c("a", "p_api_1", "img2", "running", None, "1")
        };
        let same = run(&[made_by_compose("cfg")], false);
        assert_eq!((same.verb, same.changed), (Verb::Skip, vec![]));
        let other = run(&[made_by_compose("edited")], false);
        assert_eq!(other.changed, ["spec (created outside slipway)"]);
        // Without compose v2 installed, slipway cannot tell.
        let unknown = reconcile(
            &Desired {
                config_hash: None,
                ..desired()
            },
            &[made_by_compose("cfg")],
            false,
            |_| None,
        );
        assert_eq!(unknown.verb, Verb::Replace);
    }

    #[test]
    fn compose_v1_containers_are_migrated_and_say_so() {
        let v1 = |hash: Option<&str>| Existing {
            compose_v1: true,
            ..c("a", "p_api_1_v1", "img2", "running", hash, "1")
        };
        let by_slipway = reconcile(&desired(), &[v1(Some("old"))], false, |_| {
            Some(vec![
                "container_name".to_owned(),
                "image".to_owned(),
                "labels".to_owned(),
                "environment".to_owned(),
            ])
        });
        assert_eq!(
            by_slipway.changed,
            [
                "compose v1's p_api_1_v1 becomes compose v2's p_api_1",
                "environment"
            ]
        );
        let by_compose_v1 = run(&[v1(None)], false);
        assert_eq!(by_compose_v1.verb, Verb::Replace);
        assert_eq!(
            by_compose_v1.changed,
            ["compose v1's p_api_1_v1 becomes compose v2's p_api_1"]
        );
    }

    #[test]
    fn leftovers_of_a_killed_deploy_converge() {
        // Start-first killed before retiring the old container: the new one
        // is adopted and the old one discarded.
        let a = run(
            &[
                c("old", "p_api_1", "img1", "running", Some("old"), "1"),
                c("new", "p_api_1_next_9", "img2", "running", Some("new"), "2"),
            ],
            false,
        );
        assert_eq!(
            (a.verb.clone(), ids(&a)),
            (Verb::Skip, (Some("new"), vec!["old"]))
        );
        assert!(a.discard[0].1.contains("interrupted deploy"));
        // Stop-first killed after the old one was stopped and renamed, and
        // the new one created but never started.
        let b = run(
            &[
                c("old", "0123_p_api_1", "img1", "exited", Some("old"), "1"),
                c("new", "p_api_1", "img2", "created", Some("new"), "2"),
            ],
            false,
        );
        assert_eq!(
            (b.verb.clone(), ids(&b)),
            (Verb::Replace, (Some("new"), vec!["old"]))
        );
        // Killed after the new one started but before the old one was
        // removed: adopt, discard.
        let c2 = run(
            &[
                c("old", "0123_p_api_1", "img1", "exited", Some("old"), "1"),
                c("new", "p_api_1", "img2", "running", Some("new"), "2"),
            ],
            false,
        );
        assert_eq!(
            (c2.verb.clone(), ids(&c2)),
            (Verb::Skip, (Some("new"), vec!["old"]))
        );
        // A half-made replacement next to the serving old one: keep serving
        // the old one and replace it properly.
        let d = run(
            &[
                c("old", "p_api_1", "img1", "running", Some("old"), "1"),
                c("new", "p_api_1_next_9", "img2", "created", Some("new"), "2"),
            ],
            false,
        );
        assert_eq!(
            (d.verb.clone(), ids(&d)),
            (Verb::Replace, (Some("old"), vec!["new"]))
        );
    }
}
