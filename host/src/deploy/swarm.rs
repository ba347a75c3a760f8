//! Rule 1 on a Swarm: push each built image, pin every service of the stack
//! to a digest, let `docker stack deploy` apply the user's compose files
//! (their `deploy:` section, `update_config` included, means what it means
//! to Swarm), and wait until every task the orchestrator wants runs the new
//! digest. A failed update ends in Swarm's own rollback, and the deploy
//! says the previous digest serves.

use super::converge::Restored;
use super::{Agent, Stop, build::Images, host_outputs};
use crate::bindings::Output;
use crate::docker::{Docker, SwarmService, SwarmTask};
use crate::reconcile::Verb;
use crate::report::{ServiceReport, SurfaceReport};
use crate::runtime::Phase;
use crate::text::short_id;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
/// How often a rollout whose tasks nginx routes to by address is looked at.
const REROUTE_POLL: Duration = Duration::from_millis(200);
/// How long after the manager lets a task go a reroute waits: past the
/// node's DNS update, well within the 2 s before the task is stopped.
const LET_GO_SETTLE: Duration = Duration::from_millis(700);

/// How one service's update ended.
enum Settled {
    Converged(Vec<SwarmTask>),
    /// Swarm put the previous spec back; the message says why.
    RolledBack(String),
    /// Neither converged nor rolled back in time.
    Stuck(String),
}

impl Agent {
    /// The swarm counterpart of `converge_services`: what the surface's
    /// services ran, the digests they run now, and the outputs for verify.
    pub(super) async fn converge_stack(
        &self,
        surface: &str,
        dry: bool,
        images: &Images,
        report: &mut SurfaceReport,
    ) -> Result<Vec<Output>, Stop> {
        let docker = self.swarm_manager(surface).await.map_err(Stop::Refused)?;
        let services = &self.loaded.manifest.surface[surface].services;
        let mut before = BTreeMap::new();
        for service in services {
            let running = self.swarm_service(docker, surface, service).await?;
            report.services.push(ServiceReport {
                service: service.clone(),
                image_before: running.as_ref().map(|s| s.image.clone()),
                ..Default::default()
            });
            before.insert(service.clone(), running);
        }
        if dry {
            return Ok(host_outputs(&services.join(","), "", "", "", ""));
        }
        let mut pinned = self.push_built(docker, surface, images, report).await?;
        if let Some(site) = &self.loaded.manifest.surface[surface].site_image {
            let running = before[&site.service].as_ref();
            let shipped = self
                .ship_site(docker, surface, images, running, report)
                .await?;
            match shipped.or_else(|| running.map(|s| s.image.clone())) {
                Some(reference) => pinned.insert(site.service.clone(), reference),
                None => pinned.remove(&site.service),
            };
            if let Some(entry) = report
                .services
                .iter_mut()
                .find(|e| e.service == site.service)
            {
                entry.image_built = pinned.get(&site.service).cloned();
            }
        }
        // A service with no build runs what its compose file names.
        let free: Vec<String> = services
            .iter()
            .filter(|s| !pinned.contains_key(*s))
            .cloned()
            .collect();
        let acted = self
            .roll_stack(
                docker,
                surface,
                &Pins {
                    pinned: &pinned,
                    free: &free,
                    built: images,
                },
                &before,
                report,
            )
            .await?;
        let mut outputs = host_outputs(&services.join(","), &acted.join(","), "", "", "");
        outputs.push(self.stable_output(surface).await);
        Ok(outputs)
    }

    /// `stable`: the surface's services reached through a Swarm VIP, whose
    /// address stays the same when their tasks are replaced, so what routes
    /// to them need not resolve them again. A service that cannot be read
    /// is left out: when in doubt, reload.
    pub(super) async fn stable_output(&self, surface: &str) -> Output {
        let mut stable = Vec::new();
        if let Ok(docker) = self.swarm_manager(surface).await {
            for service in &self.loaded.manifest.surface[surface].services {
                if let Ok(Some(s)) = self.swarm_service(docker, surface, service).await
                    && s.vip
                {
                    stable.push(service.as_str());
                }
            }
        }
        Output {
            key: "stable".into(),
            value: stable.join(","),
        }
    }

    /// The swarm counterpart of `restore_services`: each service goes back
    /// to the digest it ran before the recorded deploy that left it on the
    /// digest it runs now, through the same stack update as a deploy.
    pub(super) async fn restore_stack(
        &self,
        surface: &str,
        services: &[String],
        report: &mut SurfaceReport,
    ) -> Result<Restored, String> {
        let docker = self.swarm_manager(surface).await?;
        let (entries, _) = crate::journal::read(&self.loaded.state_dir())
            .map_err(|e| format!("surface {surface}: cannot read the journal: {e}"))?;
        let mut before = BTreeMap::new();
        let mut pinned = BTreeMap::new();
        for service in services {
            let running = self
                .swarm_service(docker, surface, service)
                .await
                .map_err(|e| e.message().to_owned())?;
            let current = running.as_ref().map(|s| s.image.clone());
            let previous = current
                .as_deref()
                .and_then(|image| crate::journal::image_before(&entries, surface, service, image));
            before.insert(service.clone(), running);
            let Some(previous) = previous else {
                tracing::info!(
                    "[{surface}] {service}: no recorded deploy put it on {}; left as is",
                    current.as_deref().unwrap_or("no service")
                );
                continue;
            };
            tracing::info!("[{surface}] rolling {service} back to {previous}");
            pinned.insert(service.clone(), previous.clone());
            report.services.push(ServiceReport {
                service: service.clone(),
                image_before: current,
                image_built: Some(previous),
                changed: vec!["rollback".into()],
                ..Default::default()
            });
        }
        if pinned.is_empty() {
            return Ok(Restored::default());
        }
        let host = self
            .roll_stack(
                docker,
                surface,
                &Pins {
                    pinned: &pinned,
                    free: &[],
                    built: &Images::default(),
                },
                &before,
                report,
            )
            .await
            .map_err(|e| e.message().to_owned())?;
        Ok(Restored {
            host,
            step: Vec::new(),
        })
    }

    /// The engine, which must be a Swarm manager.
    async fn swarm_manager(&self, surface: &str) -> Result<&Docker, String> {
        let docker = self.docker_for(surface)?;
        docker
            .swarm_manager()
            .await
            .map_err(|e| format!("surface {surface}: {e}"))?;
        Ok(docker)
    }

    /// Put the pinned services on their images and the free ones on
    /// their compose files' with `docker stack deploy`, and wait until each
    /// has settled; returns the services that changed. `before` holds what
    /// each of the surface's services ran.
    async fn roll_stack(
        &self,
        docker: &Docker,
        surface: &str,
        pins: &Pins<'_>,
        before: &BTreeMap<String, Option<SwarmService>>,
        report: &mut SurfaceReport,
    ) -> Result<Vec<String>, Stop> {
        let stack = &self.loaded.manifest.project.name;
        let (pinned, free) = (pins.pinned, pins.free);
        let overrides = self.pin_stack(docker, surface, pins).await?;
        tracing::info!("[{surface}] docker stack deploy {stack}");
        self.stack_deploy(docker, surface, &overrides).await?;
        let timeout = Duration::from_secs(self.loaded.manifest.surface[surface].ready_timeout_secs);
        let mut acted = Vec::new();
        for entry in &mut report.services {
            let service = entry.service.clone();
            if !pinned.contains_key(&service) && !free.contains(&service) {
                continue;
            }
            let after = self
                .swarm_service(docker, surface, &service)
                .await?
                .ok_or_else(|| {
                    Stop::Failed(format!(
                        "surface {surface}: service {service}: `docker stack deploy` left no swarm service {stack}_{service}"
                    ))
                })?;
            let image = pinned.get(&service).unwrap_or(&after.image).clone();
            let changed = spec_changes(before[&service].as_ref(), &after);
            let name = format!("{stack}_{service}");
            let t = Instant::now();
            let rollout = Rollout {
                name: &name,
                image: &image,
                updated: !changed.is_empty(),
                timeout,
                // A dnsrr service's tasks take new addresses batch by batch.
                reroute: (!after.vip && !changed.is_empty()).then_some((surface, service.as_str())),
            };
            let tasks = match self.settle(docker, &rollout).await {
                Settled::Converged(tasks) => tasks,
                Settled::RolledBack(why) => {
                    return Err(Stop::Failed(format!(
                        "surface {surface}: service {service} (swarm service {name}): the update to {image} failed and Swarm rolled it back: {why}; what serves is {}",
                        before_text(&before[&service])
                    )));
                }
                Settled::Stuck(why) => {
                    return Err(Stop::Failed(format!(
                        "surface {surface}: service {service} (swarm service {name}): {why}; rerun once the tasks can run (see `docker service ps {name}`)"
                    )));
                }
            };
            entry.action = Some(match (&before[&service], changed.is_empty()) {
                (None, _) => Verb::Create,
                (Some(_), true) => Verb::Skip,
                (Some(_), false) => Verb::Replace,
            });
            if entry.changed.is_empty() {
                entry.changed = changed;
            }
            entry.image_running = Some(image);
            entry.ready_ms = t.elapsed().as_millis() as u64;
            entry.nodes = tasks.iter().map(|t| t.node.clone()).collect();
            entry.nodes.sort();
            if entry.action != Some(Verb::Skip) {
                acted.push(service);
            }
        }
        Ok(acted)
    }

    /// Roll one of the surface's services onto `reference`, the rest of the
    /// stack staying as it runs.
    pub(super) async fn roll_one(
        &self,
        docker: &Docker,
        surface: &str,
        service: &str,
        reference: &str,
        images: &Images,
        report: &mut SurfaceReport,
    ) -> Result<(), Stop> {
        let before = BTreeMap::from([(
            service.to_owned(),
            self.swarm_service(docker, surface, service).await?,
        )]);
        let pinned = BTreeMap::from([(service.to_owned(), reference.to_owned())]);
        let pins = Pins {
            pinned: &pinned,
            free: &[],
            built: images,
        };
        self.roll_stack(docker, surface, &pins, &before, report)
            .await
            .map(drop)
    }

    async fn swarm_service(
        &self,
        docker: &Docker,
        surface: &str,
        service: &str,
    ) -> Result<Option<SwarmService>, Stop> {
        let name = format!("{}_{service}", self.loaded.manifest.project.name);
        docker.swarm_service(&name).await.map_err(|e| {
            Stop::Failed(format!(
                "surface {surface}: service {service}: cannot inspect swarm service {name}: {e:#}"
            ))
        })
    }

    /// Push each built service's image to the registry, as
    /// `<registry>/<project>/<service>:<image id>`; returns the pinned
    /// reference per service.
    async fn push_built(
        &self,
        docker: &Docker,
        surface: &str,
        images: &Images,
        report: &mut SurfaceReport,
    ) -> Result<BTreeMap<String, String>, Stop> {
        let mut pinned = BTreeMap::new();
        for entry in &mut report.services {
            let Some(image_id) = images.image(&entry.service) else {
                continue;
            };
            let tag = short_id(image_id);
            let reference = self
                .push(docker, surface, &entry.service, image_id, tag)
                .await?;
            entry.image_built = Some(reference.clone());
            pinned.insert(entry.service.clone(), reference);
        }
        Ok(pinned)
    }

    /// Push one image as `<registry>/<project>/<service>:<tag>`; returns
    /// the pinned reference.
    pub(super) async fn push(
        &self,
        docker: &Docker,
        surface: &str,
        service: &str,
        image_id: &str,
        tag: &str,
    ) -> Result<String, Stop> {
        let project = &self.loaded.manifest.project;
        let registry = project.registry.as_deref().unwrap_or_default();
        let repo = format!("{registry}/{}/{service}", project.name);
        let reference = docker
            .push(image_id, &repo, tag)
            .await
            .map_err(|e| {
                Stop::Failed(format!(
                    "surface {surface}: service {service}: {e:#}; nothing was updated: check that {registry} answers and that every engine lists it in insecure-registries or trusts its certificate"
                ))
            })?;
        tracing::info!("[{surface}] {service}: pushed {reference}");
        Ok(reference)
    }

    /// The image every service of the stack gets: the new digest for those
    /// just built, what runs now for the others (so that deploying one
    /// surface leaves the rest of the stack on its digests), and the
    /// compose file's image for the free ones and a service that does not
    /// exist yet.
    async fn pin_stack(
        &self,
        docker: &Docker,
        surface: &str,
        pins: &Pins<'_>,
    ) -> Result<BTreeMap<String, String>, Stop> {
        let Pins {
            pinned,
            free,
            built,
        } = *pins;
        let mut images = BTreeMap::new();
        // Every service is named in the file, even one on its compose
        // image: the CLI orders a service's mounts differently when a second
        // file names it, and a new order is a new spec, which Swarm rolls.
        for (service, def) in &self.loaded.compose.services {
            if !def.active {
                continue;
            }
            let image = match pinned.get(service) {
                Some(image) => Some(image.clone()),
                None if free.contains(service) => def.image.clone(),
                None => match self.swarm_service(docker, surface, service).await? {
                    Some(running) => Some(running.image),
                    None => self.unborn(docker, surface, service, built).await?,
                },
            };
            if let Some(image) = image {
                images.insert(service.clone(), image);
            }
        }
        Ok(images)
    }

    /// The image of a service of the stack that another surface deploys and
    /// that has no swarm service yet: `docker stack deploy` creates every
    /// service at once, so one with a `build:` needs its image now. This
    /// run built it (`deploy --all`): push it. It did not: refuse, before
    /// the stack changes. A service without a build runs its compose image.
    async fn unborn(
        &self,
        docker: &Docker,
        surface: &str,
        service: &str,
        built: &Images,
    ) -> Result<Option<String>, Stop> {
        if let Some(image_id) = built.image(service) {
            return self
                .push(docker, surface, service, image_id, short_id(image_id))
                .await
                .map(Some);
        }
        let def = &self.loaded.compose.services[service];
        if def.build.is_none() || def.image.is_some() {
            return Ok(def.image.clone());
        }
        Err(Stop::Refused(format!(
            "surface {surface}: service {service} of the stack is built (`build:`) and not on the swarm yet, and `docker stack deploy` \
             creates every service at once: deploy every surface once with `slipway deploy --all`, with {service} in a surface; \
             nothing was changed on the swarm"
        )))
    }

    /// The user's compose files, then slipway's own file pinning images,
    /// through `docker stack deploy`.
    async fn stack_deploy(
        &self,
        docker: &Docker,
        surface: &str,
        images: &BTreeMap<String, String>,
    ) -> Result<(), Stop> {
        let failed = |e: String| Stop::Failed(format!("surface {surface}: {e}"));
        let services: serde_yaml::Mapping = images
            .iter()
            .map(|(service, image)| {
                let mut def = serde_yaml::Mapping::new();
                def.insert("image".into(), image.clone().into());
                (service.clone().into(), def.into())
            })
            .collect();
        let mut root = serde_yaml::Mapping::new();
        // `docker stack deploy` refuses files of different versions, and
        // one without a version counts as the newest.
        if let Some(version) = self.compose_version() {
            root.insert("version".into(), version.into());
        }
        root.insert("services".into(), services.into());
        let text = serde_yaml::to_string(&root).map_err(|e| failed(e.to_string()))?;
        let dir = self.loaded.state_dir();
        let path = dir.join("swarm-images.yml");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        let compose = &self.loaded.compose;
        let env =
            crate::compose::dotenv_only(&compose.dir).map_err(|e| failed(format!("{e:#}")))?;
        let mut files: Vec<&std::path::Path> = compose.files.iter().map(|f| f.as_path()).collect();
        files.push(&path);
        let stack = &self.loaded.manifest.project.name;
        docker.stack_deploy(stack, &files, &env).await.map_err(|e| {
            failed(format!(
                "{e:#}; run it by hand to see the whole error, fix the compose file and rerun"
            ))
        })
    }
}

impl Agent {
    /// The `version` the user's first compose file declares, if any.
    fn compose_version(&self) -> Option<String> {
        let first = self.loaded.compose.files.first()?;
        let text = std::fs::read_to_string(first).ok()?;
        let root: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        match root.get("version")? {
            serde_yaml::Value::String(v) => Some(v.clone()),
            serde_yaml::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// What a stack deploy puts each service on.
#[derive(Clone, Copy)]
struct Pins<'a> {
    /// The surface's services, on these references.
    pinned: &'a BTreeMap<String, String>,
    /// The surface's services on their compose files' images.
    free: &'a [String],
    /// What this run built, for a service the stack does not have yet.
    built: &'a Images,
}

/// One service's rolling update, as `settle` waits for it.
struct Rollout<'a> {
    /// The swarm service, `<stack>_<service>`.
    name: &'a str,
    image: &'a str,
    /// Its spec changed: an update runs, and an old update state says nothing.
    updated: bool,
    timeout: Duration,
    /// `(surface, service)` when the steps that reach the service apply
    /// again each time one of its tasks starts (see `reroute_mid_update`).
    reroute: Option<(&'a str, &'a str)>,
}

impl Agent {
    /// Wait until every task Swarm wants for the service runs the image and
    /// the update is over, or until Swarm has rolled the update back. A
    /// paused update (Swarm's default `failure_action`) is rolled back here,
    /// so that a failed deploy never stays half done.
    async fn settle(&self, docker: &Docker, r: &Rollout<'_>) -> Settled {
        let deadline = Instant::now() + r.timeout;
        let mut asked_rollback = false;
        let mut last = String::from("no answer from the manager yet");
        let mut seen: Option<Vec<String>> = None;
        while Instant::now() < deadline {
            if let Some((surface, service)) = r.reroute {
                self.reroute_if_moved(docker, r.name, &mut seen, surface, service)
                    .await;
            }
            match observe(docker, r.name, r.image, r.updated).await {
                Ok(Observed::Done(tasks)) => {
                    // The last task let go can fall between the look above
                    // and this one; the next update's first look only
                    // records, so route now.
                    if let Some((surface, service)) = r.reroute {
                        self.reroute_if_moved(docker, r.name, &mut seen, surface, service)
                            .await;
                    }
                    return Settled::Converged(tasks);
                }
                Ok(Observed::RolledBack(why)) => {
                    if let Some((surface, service)) = r.reroute {
                        self.reroute_mid_update(surface, service).await;
                    }
                    return Settled::RolledBack(why);
                }
                Ok(Observed::Paused(why)) if !asked_rollback => {
                    tracing::warn!(
                        "{}: update paused ({why}); asking Swarm to roll it back",
                        r.name
                    );
                    asked_rollback = true;
                    if let Err(e) = docker.rollback_service(r.name).await {
                        return Settled::Stuck(format!(
                            "the update paused ({why}) and the rollback was refused: {e:#}"
                        ));
                    }
                }
                Ok(Observed::Paused(why) | Observed::Pending(why)) => last = why,
                Err(e) => last = format!("{e:#}"),
            }
            // A reroute must land within Swarm's 2 s: look more often.
            let poll = match r.reroute {
                Some(_) => REROUTE_POLL,
                None => POLL,
            };
            tokio::time::sleep(poll).await;
        }
        let secs = r.timeout.as_secs();
        if !asked_rollback && docker.rollback_service(r.name).await.is_ok() {
            return Settled::Stuck(format!(
                "not converged after {secs} s ({last}); slipway asked Swarm to roll it back to the previous digest"
            ));
        }
        Settled::Stuck(format!("not converged after {secs} s ({last})"))
    }

    /// Reroute once a task of `name` runs that did not at the last look, or
    /// one that did is no longer wanted. Swarm takes a task out of its
    /// service's DNS records, then waits 2 s before it stops the task
    /// (moby's `defaultGossipConvergeDelay`, in its executor's
    /// `controller.Shutdown`): a reload in that window moves nginx off the
    /// task before it stops, after which a connection to its address hangs.
    /// The first look only records.
    async fn reroute_if_moved(
        &self,
        docker: &Docker,
        name: &str,
        seen: &mut Option<Vec<String>>,
        surface: &str,
        service: &str,
    ) {
        let Some(running) = running_tasks(docker, name).await else {
            return;
        };
        let before = seen
            .replace(running.clone())
            .unwrap_or_else(|| running.clone());
        if running == before {
            return;
        }
        // A task let go follows one that starts (start-first) or comes
        // first (stop-first), and the manager lets it go before its node has
        // taken it out of the DNS records: wait for both, then route once.
        tokio::time::sleep(LET_GO_SETTLE).await;
        if let Some(now) = running_tasks(docker, name).await {
            *seen = Some(now);
        }
        self.reroute_mid_update(surface, service).await;
    }

    /// Rule 2 between the batches of a rolling update. A `dnsrr` service's
    /// name resolves to its tasks' addresses, and each batch replaces some:
    /// an nginx that resolved them at its last reload would hold only gone
    /// ones by the last batch. So each time one of its tasks starts running
    /// or is let go (and when Swarm has rolled an update back), every step granted the
    /// service applies again with `recreated` = the service; the steps run
    /// in full once the update is over. A failure here is logged: the final
    /// run decides.
    pub(super) async fn reroute_mid_update(&self, surface: &str, service: &str) {
        let outputs = host_outputs("", service, "", "", "");
        for (index, step) in self.loaded.manifest.surface[surface]
            .step
            .iter()
            .enumerate()
        {
            let grants = &self.grants[&(surface.to_owned(), index)];
            if !grants.docker.names().any(|s| s == service) {
                continue;
            }
            match self
                .call_step(surface, index, step, Phase::Apply, &outputs, false)
                .await
            {
                Ok((call, _)) => tracing::info!(
                    "[{surface}] {service}: a task started mid-update; step {index}: {}",
                    call.message
                ),
                Err((_, stop)) => tracing::warn!(
                    "[{surface}] {service}: a task started mid-update; step {index}: {}",
                    stop.message()
                ),
            }
        }
    }
}

/// The IDs of the service's tasks that run and are wanted, sorted; None
/// when the manager does not answer.
async fn running_tasks(docker: &Docker, name: &str) -> Option<Vec<String>> {
    let tasks = docker.swarm_tasks(name).await.ok()?;
    let mut running: Vec<String> = tasks
        .into_iter()
        .filter(|t| t.desired == "running" && t.state == "running")
        .map(|t| t.id)
        .collect();
    running.sort();
    Some(running)
}

enum Observed {
    Done(Vec<SwarmTask>),
    RolledBack(String),
    Paused(String),
    Pending(String),
}

/// One look at the service. `updated` is false when its image did not
/// change: no update runs then, and an old update state says nothing.
async fn observe(
    docker: &Docker,
    name: &str,
    image: &str,
    updated: bool,
) -> anyhow::Result<Observed> {
    let service = docker
        .swarm_service(name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the service is gone"))?;
    let (tasks, past): (Vec<_>, Vec<_>) = docker
        .swarm_tasks(name)
        .await?
        .into_iter()
        .partition(|t| t.desired == "running");
    let failures = task_failures(&past);
    let state = service.update_state.as_str();
    if service.image != image {
        let why = format!("{}{failures}", service.update_message);
        return Ok(match state {
            "rollback_completed" | "rollback_paused" => Observed::RolledBack(why),
            _ => Observed::Pending(format!("rolling back: {why}")),
        });
    }
    if state == "paused" {
        return Ok(Observed::Paused(format!(
            "{}{failures}",
            service.update_message
        )));
    }
    let current = tasks
        .iter()
        .filter(|t| t.image == image && t.state == "running")
        .count();
    let wanted = service.replicas.map_or(tasks.len(), |r| r as usize);
    let over = !updated || matches!(state, "" | "completed");
    if over && current == tasks.len() && current >= wanted {
        return Ok(Observed::Done(tasks));
    }
    Ok(Observed::Pending(format!(
        "update {}, {current} of {wanted} tasks running the new digest{failures}",
        if state.is_empty() {
            "not started"
        } else {
            state
        }
    )))
}

/// `; task abc on 10.231.4.2: …` for the last three tasks that failed.
fn task_failures(tasks: &[SwarmTask]) -> String {
    tasks
        .iter()
        .filter(|t| !t.error.is_empty())
        .take(3)
        .map(|t| format!("; task {} on {}: {}", short_id(&t.id), t.node, t.error))
        .collect()
}

/// Where a service's spec changed (`TaskTemplate.ContainerSpec.Image`,
/// `Mode.Replicated.Replicas`, …); empty when it did not, `["created"]`
/// when there was no service.
fn spec_changes(before: Option<&SwarmService>, after: &SwarmService) -> Vec<String> {
    let Some(before) = before else {
        return vec!["created".into()];
    };
    let mut changed = Vec::new();
    diff_paths("", &before.spec, &after.spec, 3, &mut changed);
    changed
}

/// The paths, `depth` keys deep at most, where two JSON values differ.
fn diff_paths(
    at: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    depth: usize,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if a == b {
        return;
    }
    let (Value::Object(a), Value::Object(b), 1..) = (a, b, depth) else {
        out.push(at.to_owned());
        return;
    };
    let null = Value::Null;
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let (x, y) = (a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null));
        diff_paths(&path, x, y, depth - 1, out);
    }
}

fn before_text(before: &Option<SwarmService>) -> String {
    match before {
        Some(s) => format!("{} (as before this deploy)", s.image),
        None => "none: the service did not exist before".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> SwarmService {
        SwarmService {
            image: String::new(),
            update_state: String::new(),
            update_message: String::new(),
            vip: true,
            replicas: Some(1),
            spec,
        }
    }

    #[test]
    fn spec_changes_name_the_keys_that_differ() {
        let v1 = json!({"Name": "s_api", "TaskTemplate": {"ContainerSpec": {"Image": "r/a@sha256:1", "Env": ["A=1"]}},
            "Mode": {"Replicated": {"Replicas": 3}}});
        let mut v2 = v1.clone();
        v2["TaskTemplate"]["ContainerSpec"]["Image"] = json!("r/a@sha256:2");
        v2["Mode"]["Replicated"]["Replicas"] = json!(2);
        v2["Labels"] = json!({"x": "y"});
        assert_eq!(
            spec_changes(Some(&service(v1.clone())), &service(v2)),
            [
                "Labels",
                "Mode.Replicated.Replicas",
                "TaskTemplate.ContainerSpec.Image"
            ]
        );
        assert!(spec_changes(Some(&service(v1.clone())), &service(v1.clone())).is_empty());
        assert_eq!(spec_changes(None, &service(v1)), ["created"]);
    }
}
