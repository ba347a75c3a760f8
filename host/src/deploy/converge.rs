//! Rule 1 as convergence. For each service of a surface: the desired
//! container (compose model + the image just built), what runs (its own
//! leftovers included), the action between them, and its execution. Only
//! this file acts on services' containers during a deploy; a step that
//! replaces them start-first is handed the services to replace.

use super::{Agent, Stop, service_failed};
use crate::compose::UpdateOrder;
use crate::docker::{ContainerInfo, Docker, Parked, Target};
use crate::journal::{Move, PendingRollback, Previous};
use crate::observed::SpecStore;
use crate::reconcile::{Action, Verb};
use crate::report::{ServiceReport, SurfaceReport};
use crate::text::short_id;
use std::time::{Duration, Instant};

/// One service's decision, with the container it leads to.
pub(super) struct Decision {
    pub service: String,
    pub target: Target,
    pub action: Action,
    /// How a replacement is ordered; `None` leaves it to the step that
    /// replaces services (start-first where nginx routes, else stop-first).
    pub order: Option<UpdateOrder>,
}

/// What `converge` did: the services it created, replaced or cleaned
/// up, the containers it parked, and the first failure.
#[derive(Default)]
pub(super) struct Converged {
    pub acted: Vec<String>,
    pub parked: Vec<Parked>,
    pub failed: Option<String>,
}

/// What carrying out one decision did.
#[derive(Default)]
struct Executed {
    container: Option<String>,
    image_running: Option<String>,
    parked: Option<Parked>,
    recreate_ms: u64,
    /// It created, replaced or cleaned up a container.
    acted: bool,
}

/// Who replaces a service, in which order, and why, for `plan` and the log.
struct Ordering {
    order: Option<UpdateOrder>,
    why: String,
}

impl Agent {
    pub(super) fn specs(&self) -> SpecStore {
        SpecStore::new(&self.loaded.state_dir())
    }

    /// model → desired → observed → action, for each service. Records the
    /// action and its reasons in the report; changes nothing.
    pub(super) async fn decide(
        &self,
        surface: &str,
        services: &[String],
        dry: bool,
        report: &mut SurfaceReport,
    ) -> Result<Vec<Decision>, Stop> {
        let step_replaces = self.step_replaces(surface);
        let docker = self.docker_for(surface)?;
        let specs = self.specs();
        // What each service should run and what runs, asked for all of them
        // at once: each is a few engine round trips.
        let observe = services.iter().map(|service| async move {
            let target = match dry {
                true => docker.desired_unbuilt(service).await,
                false => docker.desired(service).await,
            };
            (target, docker.containers(service).await)
        });
        let observed = futures_util::future::join_all(observe).await;
        let mut decisions = Vec::new();
        for (service, (target, containers)) in services.iter().zip(observed) {
            let fail = |what: &str, e| service_failed(surface, service, what, e);
            let target = target.map_err(|e| fail("desired spec", e))?;
            let containers = containers.map_err(|e| fail("inspect", e))?;
            let existing = crate::observed::existing(&containers);
            let desired = target.desired();
            let action = crate::reconcile::reconcile(&desired, &existing, self.force, |hash| {
                specs.load(hash).map(|old| old.changed_keys(&target.spec))
            });
            let ordering = self
                .ordering(surface, service, step_replaces, &target.spec)
                .map_err(|e| Stop::Refused(format!("surface {surface}, service {service}: {e}")));
            let action = match &ordering {
                Ok(o) if step_replaces && o.order != Some(UpdateOrder::StopFirst) => {
                    crate::reconcile::leave_running_leftovers_to_the_step(action)
                }
                _ => action,
            };
            let svc = entry(report, service);
            svc.action = Some(action.verb.clone());
            svc.changed = action.changed.clone();
            svc.spec_before = action.keep.as_ref().and_then(|k| k.spec_hash.clone());
            svc.spec_after = Some(desired.spec_hash.clone());
            let ordering = match (&action.verb, ordering) {
                (Verb::Replace, Err(refusal)) => return Err(refusal),
                (_, Err(_)) => None,
                (_, Ok(o)) => Some(o),
            };
            if action.verb == Verb::Replace {
                svc.order = ordering.as_ref().map(|o| o.why.clone());
                svc.stop_first = ordering
                    .as_ref()
                    .is_some_and(|o| o.order == Some(UpdateOrder::StopFirst));
            }
            log_action(surface, service, &action, svc.order.as_deref());
            decisions.push(Decision {
                service: service.clone(),
                target,
                action,
                order: ordering.and_then(|o| o.order),
            });
        }
        Ok(decisions)
    }

    /// Carry out the decisions: discard leftovers, then create, replace
    /// (stop-first, the old container parked until `settle_parked`) or
    /// skip. With `step_replaces`, replacements are left to the step.
    /// Independent services go side by side, in `depends_on` order as
    /// compose starts them. A failure stops before the next wave; what was
    /// parked until then is in the result, for `settle_parked` to put back.
    pub(super) async fn converge(
        &self,
        surface: &str,
        decisions: &[Decision],
        step_replaces: bool,
        report: &mut SurfaceReport,
    ) -> Converged {
        let mut done = Converged::default();
        let docker = match self.docker_for(surface) {
            Ok(docker) => docker,
            Err(why) => {
                done.failed = Some(why);
                return done;
            }
        };
        let names: Vec<&str> = decisions.iter().map(|d| d.service.as_str()).collect();
        let compose = &self.loaded.compose;
        let deps = |s: &str| {
            compose
                .service(s)
                .map(|s| s.depends_on())
                .unwrap_or_default()
        };
        for wave in waves(&names, deps) {
            let wave: Vec<&Decision> = wave.into_iter().map(|i| &decisions[i]).collect();
            let runs = wave
                .iter()
                .map(|d| self.execute(surface, docker, d, step_replaces));
            let outcomes = futures_util::future::join_all(runs).await;
            for (d, outcome) in wave.iter().zip(outcomes) {
                let executed = match outcome {
                    Ok(executed) => executed,
                    Err(e) => {
                        done.failed.get_or_insert(e);
                        continue;
                    }
                };
                done.parked.extend(executed.parked);
                let svc = entry(report, &d.service);
                svc.container = executed.container.or(svc.container.take());
                svc.image_running = executed.image_running.or(svc.image_running.take());
                svc.recreate_ms = executed.recreate_ms;
                if executed.acted {
                    done.acted.push(d.service.clone());
                }
            }
            if done.failed.is_some() {
                break;
            }
        }
        done
    }

    /// One decision carried out.
    async fn execute(
        &self,
        surface: &str,
        docker: &Docker,
        d: &Decision,
        step_replaces: bool,
    ) -> Result<Executed, String> {
        let service = &d.service;
        let fail = |what: &str, e| service_failed(surface, service, what, e);
        self.specs()
            .save(&d.target.spec, d.target.config_hash.as_deref())
            .map_err(|e| fail("save spec", e))?;
        remove_leftovers(docker, surface, service, &d.action.discard).await?;
        let t = Instant::now();
        let mut done = Executed::default();
        match (&d.action.verb, &d.action.keep) {
            (Verb::Skip, Some(keep)) => {
                adopt(docker, keep, &d.target.spec.name)
                    .await
                    .map_err(|e| fail("adopt", e))?;
                // Recorded as running, so that status and the journal still
                // know what this deploy left in place.
                done.image_running = Some(keep.image_id.clone());
                done.container = Some(d.target.spec.name.clone());
                // Removing leftovers changed the addresses behind the
                // service's name: whatever routes to it resolves again.
                done.acted = !d.action.discard.is_empty();
                return Ok(done);
            }
            // The step replaces services itself, in its order; only a fixed
            // stop-first replacement is the host's, side by side with others.
            (Verb::Replace, Some(_))
                if step_replaces && d.order != Some(UpdateOrder::StopFirst) =>
            {
                return Ok(done);
            }
            (Verb::Replace, Some(keep)) => {
                let task = crate::progress::start(format!("{surface}: replace {service}"));
                let result = self.replace(docker, d, &keep.id).await;
                task.end(result.is_ok());
                let (container, parked) = result.map_err(|e| fail("replace", e))?;
                done.container = Some(container);
                done.parked = parked;
            }
            _ => {
                let task = crate::progress::start(format!("{surface}: create {service}"));
                let result = docker.create(&d.target, &d.target.spec.name, None).await;
                task.end(result.is_ok());
                done.container = Some(result.map_err(|e| fail("create", e))?.name);
            }
        }
        done.recreate_ms = t.elapsed().as_millis() as u64;
        done.acted = true;
        Ok(done)
    }

    /// Stop-first: park the old container and start the new one; create it
    /// when the old one is already gone.
    async fn replace(
        &self,
        docker: &Docker,
        d: &Decision,
        old_id: &str,
    ) -> anyhow::Result<(String, Option<Parked>)> {
        let old = docker.containers(&d.service).await?;
        match old.into_iter().find(|c| c.id == old_id) {
            Some(old) => {
                let (new, parked) = docker.replace_parked(&old, &d.target).await?;
                Ok((new.name, Some(parked)))
            }
            None => {
                let new = docker.create(&d.target, &d.target.spec.name, None).await?;
                Ok((new.name, None))
            }
        }
    }

    /// Once the replacements are ready (`ready` is Ok), remove the parked
    /// containers. Otherwise put them back, and have the surface's steps
    /// route to them again (rule 2: they may have new addresses), so the old
    /// version serves; the error says so.
    pub(super) async fn settle_parked(
        &self,
        surface: &str,
        parked: &[Parked],
        ready: Result<(), String>,
        report: &mut SurfaceReport,
    ) -> Result<(), Stop> {
        let docker = self.docker_for(surface)?;
        let Err(why) = ready else {
            for p in parked {
                docker.drop_parked(p).await.map_err(|e| {
                    format!("surface {surface}: cannot remove the old {}: {e:#}", p.name)
                })?;
            }
            return Ok(());
        };
        if parked.is_empty() {
            return Err(Stop::Failed(why));
        }
        let mut back = Vec::new();
        for p in parked {
            match docker.unpark(p).await {
                Ok(()) => back.push(p.name.clone()),
                Err(e) => tracing::error!("[{surface}] cannot put back {}: {e:#}", p.name),
            }
        }
        let services: Vec<String> = parked.iter().map(|p| p.service.clone()).collect();
        let mut outputs = super::host_outputs("", &services.join(","), "", "", "");
        let routed = match self
            .run_steps(surface, false, true, &mut outputs, report)
            .await
        {
            Ok(()) => "and the surface's steps routed to them again".to_owned(),
            Err(e) => format!("but routing to them again failed: {e}"),
        };
        Err(Stop::Failed(format!(
            "{why}; put back the old containers ({}), {routed}",
            back.join(", ")
        )))
    }

    /// Wait until every service is ready (in parallel), then prove each of
    /// its containers runs the image this deploy built: otherwise the new
    /// code is not live.
    pub(super) async fn prove_running(
        &self,
        surface: &str,
        services: &[String],
        report: &mut SurfaceReport,
    ) -> Result<(), String> {
        let docker = self.docker_for(surface)?;
        let spec = &self.loaded.manifest.surface[surface];
        let timeout = Duration::from_secs(spec.ready_timeout_secs);
        let waits = services.iter().map(|service| {
            let settle =
                Duration::from_secs(*spec.settle.get(service).unwrap_or(&spec.settle_secs));
            async move {
                let t = Instant::now();
                let task =
                    crate::progress::start(format!("{surface}: wait until {service} is ready"));
                let ready = docker.wait_ready(service, timeout, settle).await;
                task.end(ready.is_ok());
                (ready, t.elapsed())
            }
        });
        let results = futures_util::future::join_all(waits).await;
        for (service, (ready, took)) in services.iter().zip(results) {
            ready.map_err(|e| service_failed(surface, service, "readiness", e))?;
            entry(report, service).ready_ms = took.as_millis() as u64;
            let containers = docker
                .containers(service)
                .await
                .map_err(|e| service_failed(surface, service, "inspect", e))?;
            let svc = entry(report, service);
            let expected = svc.image_built.clone().unwrap_or_default();
            for c in &containers {
                svc.image_running = Some(c.image_id.clone());
                svc.container = Some(c.name.clone());
                if c.image_id != expected {
                    return Err(format!(
                        "surface {surface}, service {service}: container {} runs image {} but the deploy built {expected}; the new code is not live",
                        c.name, c.image_id
                    ));
                }
            }
            tracing::info!("[{surface}] {service} is ready on {}", short_id(&expected));
        }
        Ok(())
    }

    /// What `plan` shows: each service's action and changed keys, decided
    /// against the image its tag points at now (a build may change it). A
    /// refusal is the deploy's refusal.
    pub(super) async fn plan_services(
        &self,
        surface: &str,
        services: &[String],
        report: &mut SurfaceReport,
    ) -> Result<(), Stop> {
        for service in services {
            let mut svc = ServiceReport {
                service: service.clone(),
                ..Default::default()
            };
            if let Some(docker) = &self.docker {
                svc.image_before = docker
                    .containers(service)
                    .await
                    .ok()
                    .and_then(|c| c.first().map(|c| c.image_id.clone()));
            }
            report.services.push(svc);
        }
        if self.docker.is_none() {
            return Ok(());
        }
        match self.decide(surface, services, true, report).await {
            Err(Stop::Refused(e)) => return Err(Stop::Refused(e)),
            Err(e) => tracing::warn!("[{surface}] cannot plan its services yet: {e}"),
            Ok(_) => {}
        }
        Ok(())
    }

    /// Put each service back on the image and spec it ran before the
    /// deploy that left it on its current ones, as the journal records.
    /// Under a step that replaces services, a service whose compose
    /// definition is unchanged is only retagged and handed to the step (its
    /// rollback replaces it, start-first where it would be on a deploy);
    /// the host replaces the others stop-first.
    pub(super) async fn restore_services(
        &self,
        surface: &str,
        services: &[String],
        report: &mut SurfaceReport,
    ) -> Result<Restored, String> {
        let docker = self.docker_for(surface)?;
        let step_replaces = self.step_replaces(surface);
        let state_dir = self.loaded.state_dir();
        let (entries, _) = crate::journal::read(&state_dir)
            .map_err(|e| format!("surface {surface}: cannot read the journal: {e}"))?;
        let mut pending = PendingRollback::read(&state_dir, surface);
        let mut restored = Restored::default();
        for service in services {
            let fail = |what: &str, e| service_failed(surface, service, what, e);
            let containers = docker
                .containers(service)
                .await
                .map_err(|e| fail("inspect", e))?;
            let Some(current) = crate::journal::deployed(&entries, surface, service, &containers)
            else {
                return Err(format!(
                    "surface {surface}, service {service}: no container to roll back"
                ));
            };
            let previous = pending
                .resume(service, current)
                .or_else(|| crate::journal::before(&entries, surface, service, current));
            let Some(previous) = previous else {
                tracing::info!(
                    "[{surface}] {service}: no recorded deploy put it on image {}; left as is",
                    short_id(&current.image_id)
                );
                continue;
            };
            let (target, same_spec) = self.previous_target(docker, service, &previous).await?;
            let to = Previous {
                image: target.image_id.clone(),
                spec: Some(target.spec.hash()),
            };
            let step = Move {
                from: Previous::of(current),
                to,
            };
            pending
                .record(&state_dir, surface, service, step)
                .map_err(|e| fail("record the rollback under way", e.into()))?;
            tracing::info!(
                "[{surface}] rolling {service} back from {} to {}",
                short_id(&current.image_id),
                short_id(&target.image_id)
            );
            report.services.push(ServiceReport {
                service: service.clone(),
                image_before: Some(current.image_id.clone()),
                image_built: Some(target.image_id.clone()),
                action: Some(Verb::Replace),
                changed: vec!["rollback".into()],
                spec_before: current.spec_hash.clone(),
                spec_after: Some(target.spec.hash()),
                ..Default::default()
            });
            let Some(current) = self
                .tidy_for_rollback(surface, docker, &target, &containers, current)
                .await?
            else {
                // An interrupted rollback already put it back. What routes to
                // it resolves again, as after a replacement.
                restored.host.push(service.clone());
                continue;
            };
            if step_replaces && same_spec && target.spec.single_instance().is_none() {
                entry(report, service).order = Some("by the step, as on a deploy".into());
                restored.step.push(service.clone());
                continue;
            }
            let t = Instant::now();
            let new = docker
                .replace(current, &target)
                .await
                .map_err(|e| fail("rollback", e))?;
            let svc = entry(report, service);
            svc.recreate_ms = t.elapsed().as_millis() as u64;
            svc.order = Some("stop-first".into());
            svc.container = Some(new.name);
            restored.host.push(service.clone());
        }
        self.prove_running(surface, &restored.host, report).await?;
        Ok(restored)
    }

    /// Before a rollback replaces `current` with `target`: the leftovers of
    /// an interrupted deploy or rollback are removed, as a deploy removes
    /// them, and one that already runs `target` is kept under the service's
    /// name. The container to replace, or `None` when it is done already.
    async fn tidy_for_rollback<'a>(
        &self,
        surface: &str,
        docker: &Docker,
        target: &Target,
        containers: &'a [ContainerInfo],
        current: &'a ContainerInfo,
    ) -> Result<Option<&'a ContainerInfo>, String> {
        let service = &current.service;
        let fail = |what: &str, e| service_failed(surface, service, what, e);
        let action = crate::reconcile::reconcile(
            &target.desired(),
            &crate::observed::existing(containers),
            false,
            |_| None,
        );
        let Some(keep) = action.keep else {
            return Ok(Some(current));
        };
        remove_leftovers(docker, surface, service, &action.discard).await?;
        if action.verb == Verb::Skip {
            adopt(docker, &keep, &target.spec.name)
                .await
                .map_err(|e| fail("adopt", e))?;
            return Ok(None);
        }
        Ok(containers.iter().find(|c| c.id == keep.id))
    }

    /// The container a rollback restores: the recorded image, retagged as
    /// the service's image so compose and later deploys agree, and the
    /// recorded spec (or today's, for a deploy recorded before specs were).
    /// Also whether that spec is today's, so a step can build the same
    /// container from the compose model.
    async fn previous_target(
        &self,
        docker: &Docker,
        service: &str,
        previous: &crate::journal::Previous,
    ) -> Result<(Target, bool), String> {
        let fail = |what: &str, e| service_failed("rollback", service, what, e);
        docker.image_id(&previous.image).await.map_err(|_| {
            format!(
                "service {service}: its previous image {} is gone; raise project.keep_images to keep more",
                short_id(&previous.image)
            )
        })?;
        let tag = docker.image_tag(service).map_err(|e| fail("rollback", e))?;
        docker
            .tag(&previous.image, &tag)
            .await
            .map_err(|e| fail("rollback", e))?;
        let mut target = docker
            .desired(service)
            .await
            .map_err(|e| fail("desired spec", e))?;
        let today = target.spec.hash();
        match previous.spec.as_deref().map(|h| (h, self.specs().load(h))) {
            Some((hash, Some(mut spec))) => {
                spec.take_values_from(&target.spec)
                    .map_err(|e| format!("service {service}: cannot roll back: {e}"))?;
                target.spec = spec;
                target.config_hash = self.specs().config_hash(hash);
            }
            Some((_, None)) => tracing::warn!(
                "{service}: the previous spec is no longer in {}; restoring the image with today's compose definition",
                self.loaded.state_dir().display()
            ),
            None => {}
        }
        let same_spec = target.spec.hash() == today;
        Ok((target, same_spec))
    }
}

/// What a rollback put back: by the host (stop-first), and handed to the
/// step that replaces services.
#[derive(Default)]
pub(super) struct Restored {
    pub host: Vec<String>,
    pub step: Vec<String>,
}

/// The indexes of `services` in `depends_on` order (`deps` gives a
/// service's): each wave depends only on earlier ones; services outside
/// the list are already running. A cycle, which compose itself refuses,
/// ends up in one last wave.
fn waves(services: &[&str], deps: impl Fn(&str) -> Vec<String>) -> Vec<Vec<usize>> {
    let mut left: Vec<usize> = (0..services.len()).collect();
    let mut waves = Vec::new();
    while !left.is_empty() {
        let waits = |i: &usize| {
            deps(services[*i])
                .iter()
                .any(|d| d != services[*i] && left.iter().any(|l| services[*l] == d))
        };
        let (blocked, free): (Vec<usize>, Vec<usize>) = left.iter().partition(|i| waits(i));
        if free.is_empty() {
            waves.push(blocked);
            break;
        }
        waves.push(free);
        left = blocked;
    }
    waves
}

/// The report entry of a service, created on first use.
fn entry<'a>(report: &'a mut SurfaceReport, service: &str) -> &'a mut ServiceReport {
    let at = match report.services.iter().position(|s| s.service == service) {
        Some(at) => at,
        None => {
            report.services.push(ServiceReport {
                service: service.to_owned(),
                ..Default::default()
            });
            report.services.len() - 1
        }
    };
    &mut report.services[at]
}

/// Remove the leftovers of an interrupted run that a decision discards,
/// each named in the log with why.
async fn remove_leftovers(
    docker: &Docker,
    surface: &str,
    service: &str,
    discard: &[(crate::reconcile::Existing, String)],
) -> Result<(), String> {
    for (leftover, why) in discard {
        tracing::warn!("[{surface}] {service}: removing {why}");
        docker
            .discard(service, &leftover.id)
            .await
            .map_err(|e| service_failed(surface, service, "remove leftover", e))?;
    }
    Ok(())
}

/// An unchanged container stays; one adopted from a killed deploy gets its
/// service's name back.
async fn adopt(
    docker: &Docker,
    keep: &crate::reconcile::Existing,
    name: &str,
) -> anyhow::Result<()> {
    if keep.name != name {
        tracing::info!("adopting {} as {name}", keep.name);
        docker.rename(&keep.id, name).await?;
    }
    Ok(())
}

impl Agent {
    /// The update order of a replaced service: a service that can never run
    /// twice is stop-first; otherwise `surface.<name>.update_order`, then
    /// compose's `deploy.update_config.order`, then the strategy's default.
    /// Start-first needs a step that replaces services; without one it is
    /// refused, with the two ways out.
    fn ordering(
        &self,
        surface: &str,
        service: &str,
        step_replaces: bool,
        spec: &crate::desired::ContainerSpec,
    ) -> Result<Ordering, String> {
        if let Some(why) = spec.single_instance() {
            return Ok(Ordering {
                order: Some(UpdateOrder::StopFirst),
                why: format!("stop-first: its {why} cannot be held by two containers"),
            });
        }
        let key = format!("surface.{surface}.update_order.{service}");
        let overridden = self.loaded.manifest.surface[surface]
            .update_order
            .get(service)
            .and_then(|o| UpdateOrder::parse(o).ok())
            .map(|o| (o, key.clone()));
        let composed = self
            .loaded
            .compose
            .service(service)
            .and_then(|s| s.extra.update_order)
            .map(|o| (o, "deploy.update_config.order".to_owned()));
        match (overridden.or(composed), step_replaces) {
            (Some((UpdateOrder::StartFirst, from)), false) => Err(format!(
                "{from} is start-first, but no step of the surface replaces services; use a start-first strategy (nginx-zero-downtime.wasm or nginx-overlap.wasm), or set {key} = \"stop-first\" in slipway.toml"
            )),
            (Some((order, from)), _) => Ok(Ordering {
                order: Some(order),
                why: format!("{} ({from})", order.name()),
            }),
            (None, true) => Ok(Ordering {
                order: None,
                why: "start-first if nginx routes to it, else stop-first (the step decides)".into(),
            }),
            (None, false) => Ok(Ordering {
                order: Some(UpdateOrder::StopFirst),
                why: "stop-first".into(),
            }),
        }
    }
}

/// The `order` output: `service=start-first|stop-first` for each replaced
/// service whose order is fixed, so the step need not guess.
pub(super) fn order_output(decisions: &[Decision]) -> String {
    decisions
        .iter()
        .filter(|d| d.action.verb == Verb::Replace)
        .filter_map(|d| d.order.map(|o| format!("{}={}", d.service, o.name())))
        .collect::<Vec<_>>()
        .join(",")
}

fn log_action(surface: &str, service: &str, action: &Action, order: Option<&str>) {
    let why = action.changed.join(", ");
    let order = order.unwrap_or_default();
    match action.verb {
        Verb::Create => tracing::info!("[{surface}] {service}: create (no container yet)"),
        Verb::Replace => tracing::info!("[{surface}] {service}: replace, {order} ({why})"),
        Verb::Skip => tracing::info!("[{surface}] {service}: skip (unchanged)"),
    }
    for (c, reason) in &action.discard {
        tracing::info!("[{surface}] {service}: will remove {} ({reason})", c.name);
    }
}

#[cfg(test)]
mod tests {
    use super::waves;

    #[test]
    fn independent_services_share_a_wave_and_dependents_follow() {
        let services = ["nextjs", "api", "bot", "worker", "beat"];
        let deps = |s: &str| match s {
            "nextjs" => vec!["api".to_owned()],
            "worker" => vec!["postgres".to_owned(), "redis".to_owned()],
            "beat" => vec!["worker".to_owned(), "beat".to_owned()],
            _ => vec![],
        };
        assert_eq!(waves(&services, deps), vec![vec![1, 2, 3], vec![0, 4]]);
    }

    #[test]
    fn a_cycle_ends_in_one_last_wave() {
        let services = ["a", "b", "c"];
        let deps = |s: &str| match s {
            "a" => vec!["b".to_owned()],
            "b" => vec!["a".to_owned()],
            _ => vec![],
        };
        assert_eq!(waves(&services, deps), vec![vec![2], vec![0, 1]]);
    }
}
