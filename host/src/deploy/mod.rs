//! Running surfaces: build their services and converge them on the compose
//! model (rule 1, in `converge`), run their plugin steps in order, verify
//! through the front door, and stop at the first failure. Surfaces run in
//! `plan` order (rule 3).

use crate::bindings::{Context, Output};
use crate::capability::Grants;
use crate::docker::{Docker, Unreachable};
use crate::lock::LockError;
use crate::manifest::{
    EngineKind, GrantSpec, HttpCheck, Loaded, ManifestError, StepSpec, interpolate,
};
use crate::reconcile::Verb;
use crate::report::{CallReport, CheckReport, EngineReport, RunReport, StepReport, SurfaceReport};

use crate::runtime::{CallError, Limits, Phase, Plugin, Role, Runtime};
use crate::sandbox::{Caller, HostServices};

mod build;
mod converge;
mod front_door;
mod remote;
mod site_image;
mod surface_build;
mod swarm;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Failures before or around a run. A deploy that ran and failed is a
/// [`RunReport`] with `ok: false`, not one of these.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Bad request or bad plugin: unknown surface, cycle, unloadable plugin.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Why a surface stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// It refused the configuration it found and changed nothing (exit 2).
    Refused(String),
    /// It failed; the message says what serves now.
    Failed(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Stop {
        Stop::Failed(message)
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl Stop {
    fn message(&self) -> &str {
        match self {
            Stop::Refused(m) | Stop::Failed(m) => m,
        }
    }
}

/// A plugin's `err` that starts with this refused the configuration it
/// found before changing anything.
pub const REFUSED: &str = "refused: ";

pub struct Agent {
    pub loaded: Loaded,
    /// Replace containers even when they already match (`--force`).
    pub force: bool,
    runtime: Runtime,
    docker: Option<Arc<Docker>>,
    plugins: HashMap<String, Plugin>,
    /// The grants of every loaded step and watcher, resolved once.
    grants: HashMap<GrantsOf, Grants>,
}

/// Whose grants: a surface's step (`surface`, index) or a watcher
/// (`watch.<name>`, 0).
type GrantsOf = (String, usize);

impl Agent {
    pub fn open(manifest: &Path, cache_dir: Option<PathBuf>) -> Result<Agent, AgentError> {
        let loaded = Loaded::load(manifest)?;
        let runtime = Runtime::new(cache_dir)?;
        Ok(Agent {
            loaded,
            force: false,
            runtime,
            docker: None,
            plugins: HashMap::new(),
            grants: HashMap::new(),
        })
    }

    pub async fn connect_docker(&mut self) -> Result<Arc<Docker>, AgentError> {
        if let Some(d) = &self.docker {
            return Ok(d.clone());
        }
        let docker = Docker::connect(self.loaded.compose.clone())
            .await
            .map_err(|e| match e.downcast::<Unreachable>() {
                Ok(u) => AgentError::Unreachable(u),
                Err(e) => AgentError::Other(e),
            })?;
        let docker = Arc::new(match self.loaded.manifest.project.engine {
            EngineKind::Swarm => docker.for_stack(),
            EngineKind::Compose => docker,
        });
        self.docker = Some(docker.clone());
        Ok(docker)
    }

    /// The surfaces to run, in order: every surface with `all`, otherwise the
    /// named ones.
    pub fn select(&self, names: &[String], all: bool) -> Result<Vec<String>, AgentError> {
        let surfaces = &self.loaded.manifest.surface;
        let order = match (all, names.is_empty()) {
            (true, true) => crate::plan::order_all(surfaces),
            (false, false) => crate::plan::order_selected(surfaces, names),
            (true, false) => {
                return Err(AgentError::Usage(
                    "name surfaces or pass --all, not both".into(),
                ));
            }
            (false, true) => {
                let known: Vec<&str> = surfaces.keys().map(String::as_str).collect();
                return Err(AgentError::Usage(format!(
                    "name the surfaces to deploy or pass --all; the manifest defines: {}",
                    known.join(", ")
                )));
            }
        };
        order.map_err(AgentError::Usage)
    }

    /// Refuse a deploy that could only fail at its end: every `${VAR}` its
    /// verifications use must be set, and what [`Agent::preflight_rollback`]
    /// checks must hold, before anything changes.
    pub fn preflight(&self, surfaces: &[String]) -> Result<(), AgentError> {
        self.preflight_rollback(surfaces)?;
        for name in surfaces {
            if let Some(check) = &self.loaded.manifest.surface[name].verify {
                for text in std::iter::once(&check.url).chain(check.expect.as_ref()) {
                    interpolate(text).map_err(|e| {
                        AgentError::Usage(format!(
                            "surface.{name}.verify: {e}; set it before deploying"
                        ))
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Refuse a run that could not work: the state directory must have room
    /// for its records, and a surface that writes files must run where the
    /// engine that serves them does.
    pub fn preflight_rollback(&self, surfaces: &[String]) -> Result<(), AgentError> {
        crate::state::check_room(&self.loaded.state_dir()).map_err(AgentError::Usage)?;
        // An endpoint that cannot be read fails at connect, with its own error.
        if let Ok(endpoint) = crate::docker::Endpoint::from_env() {
            remote::refuse_local_files_for_remote_engine(&self.loaded, surfaces, &endpoint)
                .map_err(AgentError::Usage)?;
        }
        Ok(())
    }

    /// Load (from the cache when possible) every plugin the surfaces use.
    pub async fn load_plugins(&mut self, surfaces: &[String]) -> Result<(), AgentError> {
        for surface in surfaces {
            let steps = self.loaded.manifest.surface[surface].step.clone();
            for (index, step) in steps.iter().enumerate() {
                self.load_plugin(&step.plugin, Role::Step).await?;
                let who = format!("surface.{surface}.step[{index}]");
                self.refuse_replacing_on_swarm(&step.plugin, &who)?;
                self.resolve_grants((surface.clone(), index), &step.plugin, &step.grants, &who)?;
            }
        }
        Ok(())
    }

    /// On a swarm, Swarm replaces a service's tasks (by its
    /// `update_config`), so a step that replaces containers itself cannot
    /// run there.
    fn refuse_replacing_on_swarm(&self, plugin: &str, who: &str) -> Result<(), AgentError> {
        let info = &self.plugins[plugin].info;
        if self.loaded.manifest.project.engine != EngineKind::Swarm || !info.replaces_services {
            return Ok(());
        }
        Err(AgentError::Usage(format!(
            "{who}: plugin {plugin} ({} {}) replaces containers itself, which on a swarm is Swarm's job: \
             set the order in the service's deploy.update_config (order: start-first) and use a step that \
             does not replace services, such as nginx-reload",
            info.name, info.version
        )))
    }

    /// Resolve a step's or watcher's grants from the manifest, once.
    fn resolve_grants(
        &mut self,
        of: GrantsOf,
        plugin: &str,
        spec: &GrantSpec,
        key: &str,
    ) -> Result<(), AgentError> {
        let grants = self
            .loaded
            .grants(spec)
            .map_err(|(k, e)| AgentError::Usage(format!("{key}.grants.{k}: {e}")))?;
        refuse_prefix_grants(&self.plugins[plugin], &grants, key)?;
        self.grants.insert(of, grants);
        Ok(())
    }

    /// Load the plugins of the named watchers (every watcher when empty).
    pub async fn load_watchers(&mut self, names: &[String]) -> Result<Vec<String>, AgentError> {
        let watchers = &self.loaded.manifest.watch;
        for name in names {
            if !watchers.contains_key(name) {
                let known: Vec<&str> = watchers.keys().map(String::as_str).collect();
                return Err(AgentError::Usage(format!(
                    "no watcher named `{name}`; the manifest defines: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        let selected: Vec<String> = match names.is_empty() {
            true => watchers.keys().cloned().collect(),
            false => names.to_vec(),
        };
        for name in &selected {
            let spec = self.loaded.manifest.watch[name].clone();
            self.load_plugin(&spec.plugin, Role::Watcher).await?;
            let who = format!("watch.{name}");
            self.resolve_grants(watcher_grants(name), &spec.plugin, &spec.grants, &who)?;
        }
        // A watcher that moves a service hands it to the surfaces that
        // route to it (`reroute`): their steps must be ready too.
        let surfaces: Vec<String> = selected
            .iter()
            .flat_map(|w| self.watched_surfaces(w))
            .collect();
        self.load_plugins(&surfaces).await?;
        Ok(selected)
    }

    /// The surfaces holding a service the watcher may act on.
    fn watched_surfaces(&self, watcher: &str) -> Vec<String> {
        let granted: Vec<&str> = self.grants[&watcher_grants(watcher)]
            .docker
            .names()
            .collect();
        self.loaded
            .manifest
            .surface
            .iter()
            .filter(|(_, s)| s.services.iter().any(|svc| granted.contains(&svc.as_str())))
            .map(|(name, _)| name.clone())
            .collect()
    }

    async fn load_plugin(&mut self, key: &str, role: Role) -> Result<(), AgentError> {
        if let Some(plugin) = self.plugins.get(key) {
            return check_role(key, plugin, role);
        }
        let spec = &self.loaded.manifest.plugins[key];
        let path = self.loaded.dir.join(&spec.path);
        let limits = Limits {
            timeout: Duration::from_secs(spec.timeout_secs),
            memory_bytes: usize::try_from(spec.memory_mb)
                .ok()
                .and_then(|m| m.checked_mul(1 << 20))
                .unwrap_or(usize::MAX),
        };
        let plugin = self
            .runtime
            .load(key, &path, spec.sha256.as_deref(), limits)
            .await
            .map_err(|e| AgentError::Usage(format!("plugins.{key}: {e:#}")))?;
        tracing::debug!(
            "loaded {} {} ({}, {})",
            plugin.info.name,
            plugin.info.version,
            path.display(),
            if plugin.from_cache {
                "cached"
            } else {
                "compiled"
            }
        );
        check_role(key, &plugin, role)?;
        self.plugins.insert(key.to_owned(), plugin);
        Ok(())
    }

    /// One tick of a watcher, in a fresh store built from its grants.
    pub async fn tick(&self, name: &str) -> Result<crate::bindings::Report, String> {
        let spec = &self.loaded.manifest.watch[name];
        let plugin = &self.plugins[&spec.plugin];
        let who = format!(
            "watcher {name} (plugin {} {} from plugins.{})",
            plugin.info.name, plugin.info.version, spec.plugin
        );
        let grants = self.grants[&watcher_grants(name)].clone();
        let ctx = Context {
            surface: name.to_owned(),
            step: 0,
            config: spec.config.to_string(),
            outputs: Vec::new(),
        };
        let caller = Caller {
            surface: format!("watch.{name}"),
            step: 0,
            plugin_key: watch_state_key(name),
            plugin: plugin.info.name.clone(),
            version: plugin.info.version.clone(),
        };
        let (result, effects) = self
            .runtime
            .call(plugin, Phase::Tick, ctx, caller, grants, self.services())
            .await;
        let mut report = result.map_err(|e| format!("{who}: {e}"))?;
        if !effects.moved.is_empty() {
            let rerouted = self
                .reroute(&effects.moved)
                .await
                .map_err(|e| format!("{who} moved {}, then {e}", effects.moved.join(", ")))?;
            report.summary.push_str(&rerouted);
        }
        Ok(report)
    }

    /// Rule 2 after a watcher moved services: every surface holding one runs
    /// its steps' apply and verify as after a deploy that recreated exactly
    /// those services and built nothing, so nginx resolves them again the
    /// way the surface's strategy does it. Returns a sentence for the tick's
    /// summary.
    async fn reroute(&self, moved: &[String]) -> Result<String, String> {
        let mut done = Vec::new();
        for (name, surface) in &self.loaded.manifest.surface {
            let recreated: Vec<String> = moved
                .iter()
                .filter(|m| surface.services.contains(m))
                .cloned()
                .collect();
            if recreated.is_empty() || surface.step.is_empty() {
                continue;
            }
            tracing::info!(
                "[{name}] rerouting after a watcher moved {}",
                recreated.join(", ")
            );
            let mut outputs = host_outputs("", &recreated.join(","), "", "", "");
            let mut report = SurfaceReport::new(name, "");
            self.run_steps(name, false, true, &mut outputs, &mut report)
                .await
                .map_err(|e| format!("surface {name} could not reroute: {}", e.message()))?;
            done.push(name.as_str());
        }
        Ok(match done.is_empty() {
            true => String::new(),
            false => format!("; rerouted {}", done.join(", ")),
        })
    }

    fn services(&self) -> HostServices {
        HostServices {
            docker: self.docker.clone(),
            state_dir: Some(self.loaded.state_dir()),
        }
    }

    /// The engine this run talks to, for its report.
    fn engine_report(&self) -> Option<EngineReport> {
        let docker = self.docker.as_ref()?;
        Some(EngineReport::of(docker.endpoint(), docker.remote_host()))
    }

    /// What a deploy would do, asking each plugin's `plan` with every
    /// mutating import refused. Touches nothing.
    pub async fn plan(&self, surfaces: &[String]) -> RunReport {
        self.run("plan", surfaces, true).await
    }

    pub async fn deploy(&self, surfaces: &[String]) -> RunReport {
        self.run("deploy", surfaces, false).await
    }

    /// Undo the last deploy of a surface: put its services back on the
    /// images they ran before (as recorded in the journal), then every step's
    /// `rollback`, last step first (e.g. nginx reloads, a static site
    /// switches back to its previous release).
    pub async fn rollback(&self, surface: &str) -> RunReport {
        let start = Instant::now();
        let mut report = SurfaceReport::new(surface, "ok");
        let services = &self.loaded.manifest.surface[surface].services;
        let mut outputs = Vec::new();
        let mut handed = Vec::new();
        if !services.is_empty() {
            let restored = match self.loaded.manifest.project.engine {
                EngineKind::Swarm => self.restore_stack(surface, services, &mut report).await,
                EngineKind::Compose => self.restore_services(surface, services, &mut report).await,
            };
            match restored {
                Ok(restored) => {
                    outputs = host_outputs(
                        "",
                        &restored.host.join(","),
                        &restored.step.join(","),
                        "",
                        "",
                    );
                    handed = restored.step;
                    if self.loaded.manifest.project.engine == EngineKind::Swarm {
                        outputs.push(self.stable_output(surface).await);
                    }
                }
                Err(message) => {
                    tracing::error!("[{surface}] {message}");
                    report.outcome = "failed".into();
                    report.error = Some(message);
                }
            }
        }
        let steps = &self.loaded.manifest.surface[surface].step;
        let steps = if report.error.is_none() {
            &steps[..]
        } else {
            &[]
        };
        for (index, step) in steps.iter().enumerate().rev() {
            let mut step_report = self.step_report(index, step);
            if let Err(message) = self
                .start_front_doors(surface, index, &mut step_report)
                .await
            {
                report.steps.push(step_report);
                report.outcome = "failed".into();
                report.error = Some(message);
                break;
            }
            let result = self
                .call_step(surface, index, step, Phase::Rollback, &outputs, false)
                .await;
            let (call, error) = match result {
                Ok((call, new_outputs)) => {
                    step_report
                        .outputs
                        .extend(new_outputs.into_iter().map(|o| (o.key, o.value)));
                    (call, None)
                }
                Err((call, message)) => (call, Some(message.message().to_owned())),
            };
            step_report.calls.push(call);
            report.steps.push(step_report);
            if let Some(message) = error {
                tracing::error!("[{surface}] {message}");
                report.outcome = "failed".into();
                report.error = Some(message);
                break;
            }
        }
        if report.error.is_none()
            && let Err(message) = self.prove_running(surface, &handed, &mut report).await
        {
            report.outcome = "failed".into();
            report.error = Some(message);
        }
        self.blame_engine(&mut report.error).await;
        report.duration_ms = start.elapsed().as_millis() as u64;
        RunReport {
            command: "rollback".into(),
            project: self.loaded.manifest.project.name.clone(),
            ok: report.error.is_none(),
            refused: false,
            error: report.error.clone(),
            builds: Vec::new(),
            surfaces: vec![report],
            duration_ms: start.elapsed().as_millis() as u64,
            engine: self.engine_report(),
        }
    }

    async fn run(&self, command: &str, surfaces: &[String], dry: bool) -> RunReport {
        let start = Instant::now();
        let mut report = RunReport {
            command: command.to_owned(),
            project: self.loaded.manifest.project.name.clone(),
            ok: true,
            refused: false,
            builds: Vec::new(),
            surfaces: Vec::new(),
            error: None,
            duration_ms: 0,
            engine: self.engine_report(),
        };
        let images = match dry {
            true => build::Images::default(),
            false => {
                // Surface builds and image builds are independent: side by
                // side, and a failure of either stops the deploy before
                // anything changes.
                let (built, (images, builds)) =
                    tokio::join!(self.build_surfaces(surfaces), self.build_all(surfaces));
                report.builds = builds;
                if let Err(failed) = built {
                    return build_failed(report, surfaces, failed, start);
                }
                match images {
                    Ok(images) => images,
                    Err(failed) => return build_failed(report, surfaces, failed, start),
                }
            }
        };
        for name in surfaces {
            if !report.ok {
                report.surfaces.push(SurfaceReport::new(name, "skipped"));
                continue;
            }
            tracing::info!("[{name}] {}", if dry { "planning" } else { "deploying" });
            if !dry {
                // A deploy supersedes a rollback a crash cut short.
                crate::journal::PendingRollback::clear(&self.loaded.state_dir(), name);
            }
            let surface = self.run_surface(name, dry, &images).await;
            if let Some(e) = &surface.error {
                report.ok = false;
                report.refused = surface.outcome == "refused";
                report.error = Some(e.clone());
            }
            report.surfaces.push(surface);
        }
        self.blame_engine(&mut report.error).await;
        report.duration_ms = start.elapsed().as_millis() as u64;
        report
    }

    /// A failed run's error, ending with the engine's state when the engine
    /// no longer answers: what to do next.
    async fn blame_engine(&self, error: &mut Option<String>) {
        let (Some(message), Some(docker)) = (error.as_mut(), &self.docker) else {
            return;
        };
        if let Err(cause) = docker.answers().await {
            let engine = docker.endpoint();
            message.push_str(&format!(
                "; the Docker engine at {} (from {}) does not answer ({cause}): once it does, rerun; the next deploy repairs what this one left",
                engine.url, engine.source
            ));
        }
    }

    async fn run_surface(&self, name: &str, dry: bool, images: &build::Images) -> SurfaceReport {
        let start = Instant::now();
        let mut report = SurfaceReport::new(name, "");
        let result = self.surface_inner(name, dry, images, &mut report).await;
        report.outcome = match (&result, dry) {
            (Ok(()), true) => "planned",
            (Ok(()), false) => "ok",
            (Err(Stop::Refused(_)), _) => "refused",
            (Err(Stop::Failed(_)), _) => "failed",
        }
        .into();
        if let Err(e) = result {
            tracing::error!("[{name}] {}", e.message());
            report.error = Some(e.message().to_owned());
        }
        report.duration_ms = start.elapsed().as_millis() as u64;
        report
    }

    async fn surface_inner(
        &self,
        name: &str,
        dry: bool,
        images: &build::Images,
        report: &mut SurfaceReport,
    ) -> Result<(), Stop> {
        let surface = &self.loaded.manifest.surface[name];
        if surface.site_image.is_some() && !dry {
            self.ship_site_surface(name, images, report).await?;
            return self.verify_surface(name, report).await;
        }
        let step_replaces = self.step_replaces(name);
        let swarm = self.loaded.manifest.project.engine == EngineKind::Swarm;
        let mut outputs = match (surface.services.is_empty(), swarm) {
            (true, _) => Vec::new(),
            (false, true) => self.converge_stack(name, dry, images, report).await?,
            (false, false) => self.converge_services(name, dry, images, report).await?,
        };
        let touched = !dry && !list_output(&outputs, "recreated").is_empty();
        if !dry && !swarm {
            self.reroute_unrecorded(name, &mut outputs, report);
        }
        if dry && !self.plan_build(name) {
            return Ok(());
        }
        self.run_steps(name, dry, touched, &mut outputs, report)
            .await?;
        let to_replace = list_output(&outputs, "replace");
        if step_replaces && !to_replace.is_empty() && !dry {
            self.prove_running(name, &to_replace, report).await?;
        }
        if !dry && !swarm {
            self.restart_dependents(name, report).await?;
        }
        match dry {
            true => Ok(()),
            false => self.verify_surface(name, report).await,
        }
    }

    /// Restart the running services that `depends_on` a service this run
    /// created or replaced with `restart: true`, as compose v2 does after
    /// it recreates the dependency; one the run replaced itself is new.
    async fn restart_dependents(&self, name: &str, report: &SurfaceReport) -> Result<(), Stop> {
        let changed: Vec<&str> = report
            .services
            .iter()
            .filter(|s| matches!(s.action, Some(Verb::Replace | Verb::Create)))
            .map(|s| s.service.as_str())
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let docker = self.docker_for(name)?;
        for (dependent, def) in &self.loaded.compose.services {
            let restarts = changed.iter().find(|d| def.restarts_with(d));
            let Some(dependency) = restarts.filter(|_| !changed.contains(&dependent.as_str()))
            else {
                continue;
            };
            tracing::info!(
                "[{name}] restarting {dependent}: it depends on {dependency} with restart: true"
            );
            docker
                .restart(dependent)
                .await
                .map_err(|e| service_failed(name, dependent, "restart", e))?;
        }
        Ok(())
    }

    /// The surface's `[verify]` check through the front door, if it has one.
    async fn verify_surface(&self, name: &str, report: &mut SurfaceReport) -> Result<(), Stop> {
        if let Some(check) = &self.loaded.manifest.surface[name].verify {
            let result = self.check(check).await;
            let ok = result.ok;
            let message = format!(
                "surface {name}: verification of {} failed: {}",
                check.url, result.message
            );
            report.verify = Some(result);
            if !ok {
                return Err(Stop::Failed(message));
            }
        }
        Ok(())
    }

    /// A step's outputs, for the steps after it, without those whose key
    /// is the host's: a later step reads the latest output of a key, and a
    /// step's `replace` must not become the host's. The step's report
    /// keeps them all.
    fn passed_on(&self, surface: &str, index: usize, outputs: Vec<Output>) -> Vec<Output> {
        let (hosts, own): (Vec<Output>, Vec<Output>) = outputs
            .into_iter()
            .partition(|o| HOST_OUTPUTS.contains(&o.key.as_str()));
        if !hosts.is_empty() {
            let step = &self.loaded.manifest.surface[surface].step[index];
            let keys: Vec<&str> = hosts.iter().map(|o| o.key.as_str()).collect();
            tracing::warn!(
                "[{surface}] step {index} (plugin {}): its outputs {} are not passed to the later steps, \
                 which get the host's under those keys ({}); ask the plugin's author to rename them",
                step.plugin,
                keys.join(", "),
                HOST_OUTPUTS.join(", ")
            );
        }
        own
    }

    /// Services left alone now that run on a container the journal does not
    /// know (a run cut off after it replaced them, or a change by hand) are
    /// handed to the steps as `recreated` too: nginx may still hold their
    /// old addresses, and a reload costs little where a stale one is a 502.
    fn reroute_unrecorded(&self, name: &str, outputs: &mut [Output], report: &SurfaceReport) {
        let Ok((entries, _)) = crate::journal::read(&self.loaded.state_dir()) else {
            return;
        };
        let unrecorded: Vec<&str> = report
            .services
            .iter()
            .filter(|s| s.action == Some(Verb::Skip))
            .filter(|s| {
                let (Some(image), Some(spec)) = (&s.image_built, &s.spec_after) else {
                    return false;
                };
                !crate::journal::left_as_recorded(&entries, name, &s.service, image, spec)
            })
            .map(|s| s.service.as_str())
            .collect();
        let recreated = outputs.iter_mut().find(|o| o.key == "recreated");
        let (Some(recreated), false) = (recreated, unrecorded.is_empty()) else {
            return;
        };
        tracing::info!(
            "[{name}] {}: on containers no recorded run left; what routes to them resolves again",
            unrecorded.join(", ")
        );
        let mut all = list_output(std::slice::from_ref(recreated), "recreated");
        all.extend(unrecorded.iter().map(|s| (*s).to_owned()));
        recreated.value = all.join(",");
    }

    /// Build, run the release command, and converge the surface's services
    /// (or, for `plan`, decide only). Returns the outputs the steps start
    /// from: `built`, `recreated`, `replace` and `order`.
    async fn converge_services(
        &self,
        name: &str,
        dry: bool,
        images: &build::Images,
        report: &mut SurfaceReport,
    ) -> Result<Vec<Output>, Stop> {
        let services = &self.loaded.manifest.surface[name].services;
        let step_replaces = self.step_replaces(name);
        let (acted, decisions) = if dry {
            self.plan_services(name, services, report).await?;
            (planned(report, step_replaces).0, None)
        } else {
            self.record_images(name, services, images, report).await?;
            self.keep_previous_images(name, report).await;
            let decisions = self.decide(name, services, false, report).await?;
            self.release(name, report).await?;
            let done = self.converge(name, &decisions, step_replaces, report).await;
            let ready = match done.failed {
                Some(why) => Err(why),
                None => self.prove_running(name, &done.acted, report).await,
            };
            self.settle_parked(name, &done.parked, ready, report)
                .await?;
            (done.acted, Some(decisions))
        };
        let to_replace = planned(report, step_replaces).1;
        let order = decisions
            .as_deref()
            .map(converge::order_output)
            .unwrap_or_default();
        Ok(host_outputs(
            &services.join(","),
            &acted.join(","),
            &to_replace.join(","),
            &previous_images(report),
            &order,
        ))
    }

    /// Each step's apply and verify (for `plan`: its plan), in order; at the
    /// first failure, the applied steps roll back. A step's refusal stops the
    /// deploy as refused when nothing had changed yet (`touched` is false).
    async fn run_steps(
        &self,
        name: &str,
        dry: bool,
        touched: bool,
        outputs: &mut Vec<Output>,
        report: &mut SurfaceReport,
    ) -> Result<(), Stop> {
        let phases: &[Phase] = match dry {
            true => &[Phase::Plan],
            false => &[Phase::Apply, Phase::Verify],
        };
        let steps: Vec<usize> = (0..self.loaded.manifest.surface[name].step.len()).collect();
        let pass = Pass {
            steps: &steps,
            phases,
            touched,
        };
        self.run_phases(name, &pass, outputs, report, &mut Vec::new())
            .await
    }

    /// The pass's phases of each of its steps, in order, adding to `applied`
    /// the steps whose apply ran; at the first failure, those roll back. A
    /// surface whose steps apply and verify in separate passes keeps one
    /// `applied`.
    async fn run_phases(
        &self,
        name: &str,
        pass: &Pass<'_>,
        outputs: &mut Vec<Output>,
        report: &mut SurfaceReport,
        applied: &mut Vec<usize>,
    ) -> Result<(), Stop> {
        let Pass {
            steps,
            phases,
            touched,
        } = *pass;
        let dry = phases == [Phase::Plan];
        for &index in steps {
            let step = &self.loaded.manifest.surface[name].step[index];
            if report.steps.iter().all(|s| s.index != index) {
                report.steps.push(self.step_report(index, step));
                let step_report = report.steps.last_mut().expect("pushed above");
                if !dry && let Err(m) = self.start_front_doors(name, index, step_report).await {
                    self.roll_back(name, applied, outputs, report).await;
                    return Err(Stop::Failed(m));
                }
            }
            for &phase in phases {
                let result = self.call_step(name, index, step, phase, outputs, dry).await;
                let step_report = report
                    .steps
                    .iter_mut()
                    .find(|s| s.index == index)
                    .expect("pushed above");
                match result {
                    Ok((call, new_outputs)) => {
                        step_report.calls.push(call);
                        step_report
                            .outputs
                            .extend(new_outputs.iter().map(|o| (o.key.clone(), o.value.clone())));
                        outputs.extend(self.passed_on(name, index, new_outputs));
                        if phase == Phase::Apply {
                            applied.push(index);
                        }
                    }
                    Err((call, stop)) => {
                        step_report.calls.push(call);
                        self.roll_back(name, applied, outputs, report).await;
                        let stop = match dry {
                            true => stop,
                            false => self.after_failed_step(name, index, stop, report).await,
                        };
                        return Err(match stop {
                            Stop::Refused(m) if touched || !applied.is_empty() => Stop::Failed(
                                format!("{m} (after this deploy had already changed services)"),
                            ),
                            other => other,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The surface's release command on the image just built, before any
    /// container is replaced. A failure stops the deploy with the old
    /// containers still serving.
    async fn release(&self, surface: &str, report: &mut SurfaceReport) -> Result<(), Stop> {
        let Some(release) = &self.loaded.manifest.surface[surface].release else {
            return Ok(());
        };
        let docker = self.docker_for(surface)?;
        let service = &release.service;
        let fail = |e| service_failed(surface, service, "release command", e);
        let target = docker.desired(service).await.map_err(fail)?;
        let argv = release.command.join(" ");
        tracing::info!("[{surface}] release: running `{argv}` on {service}'s new image");
        let task = crate::progress::start(format!("{surface}: release {argv}"));
        let (t, started) = (Instant::now(), crate::journal::now());
        let ran = docker
            .run_once(
                &target,
                &release.command,
                Duration::from_secs(release.timeout_secs),
            )
            .await;
        task.end(matches!(ran, Ok((0, _))));
        let mut entry = crate::report::ReleaseReport {
            service: service.clone(),
            command: release.command.clone(),
            exit_code: None,
            started,
            finished: crate::journal::now(),
            duration_ms: t.elapsed().as_millis() as u64,
        };
        let outcome = ran.map_err(fail);
        if let Ok((code, _)) = &outcome {
            entry.exit_code = Some(*code);
        }
        report.release = Some(entry);
        let (code, logs) = outcome?;
        for line in logs.lines() {
            tracing::info!("[{surface}] release: {line}");
        }
        if code != 0 {
            return Err(Stop::Failed(format!(
                "surface {surface}: the release command `{argv}` on {service} exited {code}; nothing was replaced and the old containers keep serving"
            )));
        }
        Ok(())
    }

    /// A step that replaces containers itself (start-first) takes over the
    /// replacements; the host still builds, creates, and proves the result.
    fn step_replaces(&self, surface: &str) -> bool {
        self.loaded.manifest.surface[surface]
            .step
            .iter()
            .any(|s| self.plugins[&s.plugin].info.replaces_services)
    }

    fn docker_for(&self, surface: &str) -> Result<&Docker, String> {
        self.docker
            .as_deref()
            .ok_or_else(|| format!("surface {surface}: its services need a Docker engine"))
    }

    /// Keep the images this deploy replaces, so `slipway rollback` can
    /// bring them back. Losing one costs a rollback, not this deploy.
    async fn keep_previous_images(&self, surface: &str, report: &SurfaceReport) {
        let (Some(docker), keep) = (&self.docker, self.loaded.manifest.project.keep_images) else {
            return;
        };
        // Services on one image (eight on the seed's backend) share its tag.
        let mut kept = std::collections::HashSet::new();
        for svc in &report.services {
            let (Some(before), Some(built)) = (&svc.image_before, &svc.image_built) else {
                continue;
            };
            if before == built {
                continue;
            }
            let kept_it = match docker.image_tag(&svc.service) {
                Ok(tag) if !kept.insert((tag.clone(), before.clone())) => Ok(()),
                Ok(tag) => docker.keep_previous(&tag, before, keep).await,
                Err(e) => Err(e),
            };
            if let Err(e) = kept_it {
                tracing::warn!(
                    "[{surface}] cannot keep the previous image of {}: {e:#}; a rollback may not find it",
                    svc.service
                );
            }
        }
    }

    fn step_report(&self, index: usize, step: &StepSpec) -> StepReport {
        let plugin = &self.plugins[&step.plugin];
        StepReport {
            index,
            plugin: step.plugin.clone(),
            plugin_name: plugin.info.name.clone(),
            plugin_version: plugin.info.version.clone(),
            sha256: plugin.sha256.clone(),
            calls: Vec::new(),
            outputs: Default::default(),
            started: Vec::new(),
        }
    }

    async fn call_step(
        &self,
        surface: &str,
        index: usize,
        step: &StepSpec,
        phase: Phase,
        outputs: &[Output],
        dry: bool,
    ) -> Result<(CallReport, Vec<Output>), (CallReport, Stop)> {
        let plugin = &self.plugins[&step.plugin];
        let who = format!(
            "surface {surface}, step {index} (plugin {} {} from plugins.{}), {}",
            plugin.info.name,
            plugin.info.version,
            step.plugin,
            phase.name()
        );
        let t = Instant::now();
        let grants = &self.grants[&(surface.to_owned(), index)];
        let grants = if dry {
            grants.planning()
        } else {
            grants.clone()
        };
        let ctx = Context {
            surface: surface.to_owned(),
            step: index as u32,
            config: step.config.to_string(),
            outputs: outputs.to_vec(),
        };
        let caller = Caller {
            surface: surface.to_owned(),
            step: index,
            plugin_key: step.plugin.clone(),
            plugin: plugin.info.name.clone(),
            version: plugin.info.version.clone(),
        };
        let task = crate::progress::start(format!(
            "{surface}: step {index} {} {}",
            plugin.info.name,
            phase.name()
        ));
        let (result, effects) = self
            .runtime
            .call(plugin, phase, ctx, caller, grants, self.services())
            .await;
        task.end(result.is_ok());
        match result {
            Ok(r) => {
                tracing::info!(
                    "[{surface}] step {index} {} {}: {}",
                    plugin.info.name,
                    phase.name(),
                    r.summary
                );
                Ok((call_report(phase, true, r.summary, t), r.outputs))
            }
            Err(e) => {
                let message = format!("{who}: {e}");
                let call = call_report(phase, false, e.to_string(), t);
                let refused = matches!(&e, CallError::Failed(m) if m.starts_with(REFUSED));
                let changed = match (effects.mutated, &effects.wrote) {
                    (true, _) => Some("changing containers".to_owned()),
                    (false, Some(wrote)) => Some(format!("writing {wrote}")),
                    (false, None) => None,
                };
                match (refused, changed) {
                    (true, None) => Err((call, Stop::Refused(message))),
                    (true, Some(changed)) => Err((
                        call,
                        Stop::Failed(format!(
                            "{message} (the plugin refused after {changed}, so this counts as a failure)"
                        )),
                    )),
                    (false, _) => Err((call, Stop::Failed(message))),
                }
            }
        }
    }

    /// Undo the applied steps of a failed surface, newest first. Best effort:
    /// a rollback failure is reported, not raised.
    async fn roll_back(
        &self,
        surface: &str,
        applied: &[usize],
        outputs: &[Output],
        report: &mut SurfaceReport,
    ) {
        let steps = &self.loaded.manifest.surface[surface].step;
        // The replacements were this deploy's; a rollback must not redo them.
        let mut outputs = outputs.to_vec();
        outputs.push(Output {
            key: "replace".into(),
            value: String::new(),
        });
        let outputs = &outputs[..];
        for &index in applied.iter().rev() {
            let result = self
                .call_step(
                    surface,
                    index,
                    &steps[index],
                    Phase::Rollback,
                    outputs,
                    false,
                )
                .await;
            let call = match result {
                Ok((call, _)) => call,
                Err((call, message)) => {
                    tracing::error!("[{surface}] {}", message.message());
                    call
                }
            };
            if let Some(step) = report.steps.iter_mut().find(|s| s.index == index) {
                step.calls.push(call);
            }
        }
    }

    /// The surface's front-door check, retried until its timeout.
    async fn check(&self, check: &HttpCheck) -> CheckReport {
        let interpolated = interpolate(&check.url)
            .and_then(|url| Ok((url, check.expect.as_deref().map(interpolate).transpose()?)));
        let (url, expect) = match interpolated {
            Ok(pair) => pair,
            Err(e) => {
                return CheckReport {
                    url: check.url.clone(),
                    ok: false,
                    status: None,
                    attempts: 0,
                    message: e,
                };
            }
        };
        let (start, timeout) = (Instant::now(), Duration::from_secs(check.timeout_secs));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let response =
                crate::probe::http(self.docker.as_deref(), &url, None, Duration::from_secs(5))
                    .await;
            let (status, message) = match response {
                Ok(r) => {
                    let body = String::from_utf8_lossy(&r.body);
                    let body_ok = expect.as_deref().is_none_or(|e| body.contains(e));
                    if r.status == check.status && body_ok {
                        let message = format!("answered {}: {}", r.status, first_line(&body));
                        tracing::info!("{url} {message}");
                        return CheckReport {
                            url: url.clone(),
                            ok: true,
                            status: Some(r.status),
                            attempts,
                            message,
                        };
                    }
                    let wanted = match &expect {
                        Some(e) => format!("{} with `{e}` in the body", check.status),
                        None => check.status.to_string(),
                    };
                    (
                        Some(r.status),
                        format!(
                            "answered {}: `{}`, expected {wanted}",
                            r.status,
                            first_line(&body)
                        ),
                    )
                }
                Err(e) => (None, format!("{e:#}")),
            };
            if start.elapsed() >= timeout {
                return CheckReport {
                    url: url.clone(),
                    ok: false,
                    status,
                    attempts,
                    message: format!(
                        "{message} (after {attempts} attempts in {}s)",
                        check.timeout_secs
                    ),
                };
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Which steps a run of `run_phases` calls, and in which phases.
#[derive(Clone, Copy)]
struct Pass<'a> {
    /// Step indices, in the order they run.
    steps: &'a [usize],
    phases: &'a [Phase],
    /// The deploy already changed services: a refusal now counts as a
    /// failure.
    touched: bool,
}

/// The run's report when a build failed: nothing ran; the surface holding
/// the build failed, the others were skipped.
fn build_failed(
    mut report: RunReport,
    surfaces: &[String],
    failed: build::BuildFailed,
    start: Instant,
) -> RunReport {
    tracing::error!("[{}] {}", failed.surface, failed.message);
    for name in surfaces {
        let mut surface = SurfaceReport::new(name, "skipped");
        if *name == failed.surface {
            surface.outcome = "failed".into();
            surface.error = Some(failed.message.clone());
        }
        report.surfaces.push(surface);
    }
    report.ok = false;
    report.error = Some(failed.message);
    report.duration_ms = start.elapsed().as_millis() as u64;
    report
}

/// The plugin-state name of a watcher: state belongs to the watcher, so two
/// watchers running one plugin keep separate memories.
pub fn watch_state_key(watcher: &str) -> String {
    format!("watch-{watcher}")
}

fn watcher_grants(watcher: &str) -> GrantsOf {
    (format!("watch.{watcher}"), 0)
}

/// From the decisions: the services the host creates or replaces, and
/// those a step that replaces services (`step_replaces`) is handed: all
/// replacements but the fixed stop-first ones, which the host does side by
/// side before the steps run.
fn planned(report: &SurfaceReport, step_replaces: bool) -> (Vec<String>, Vec<String>) {
    let (mut host, mut step) = (Vec::new(), Vec::new());
    for svc in &report.services {
        match svc.action {
            Some(Verb::Replace) if step_replaces && !svc.stop_first => {
                step.push(svc.service.clone())
            }
            Some(Verb::Create | Verb::Replace) => host.push(svc.service.clone()),
            _ => {}
        }
    }
    (host, step)
}

/// Refuse an exec grant written as a prefix of a command the plugin
/// declares (the form grants once had): it allows only itself, and the
/// step's exec would fail halfway through a deploy. A grant of a command
/// the plugin does not declare at all is let be: the same grants serve
/// whichever strategy's .wasm the step loads.
fn refuse_prefix_grants(plugin: &Plugin, grants: &Grants, key: &str) -> Result<(), AgentError> {
    for (i, grant) in grants.docker.services.iter().enumerate() {
        for (j, granted) in grant.exec.iter().flatten().enumerate() {
            let longer: Vec<String> = plugin
                .exec
                .iter()
                .filter(|declared| granted.is_prefix_of(declared))
                .map(ToString::to_string)
                .collect();
            if longer.is_empty() || plugin.exec.contains(granted) {
                continue;
            }
            return Err(AgentError::Usage(format!(
                "{key}.grants.docker[{i}].exec[{j}]: {granted} allows that command alone, every argument \
                 matched, not the longer ones plugin {} ({} {}) declares: grant {} instead",
                plugin.key,
                plugin.info.name,
                plugin.info.version,
                longer.join(", ")
            )));
        }
    }
    Ok(())
}

/// The outputs the host hands the steps (`context.outputs` in the WIT):
/// a step's output with one of these keys is not passed on.
const HOST_OUTPUTS: [&str; 6] = [
    "built",
    "recreated",
    "replace",
    "previous",
    "order",
    "stable",
];

/// What the host hands the steps: `built`, `recreated`, `replace`,
/// `previous` and `order` (see `context.outputs` in the WIT).
fn host_outputs(
    built: &str,
    recreated: &str,
    replace: &str,
    previous: &str,
    order: &str,
) -> Vec<Output> {
    [
        ("built", built),
        ("recreated", recreated),
        ("replace", replace),
        ("previous", previous),
        ("order", order),
    ]
    .into_iter()
    .map(|(key, value)| Output {
        key: key.into(),
        value: value.into(),
    })
    .collect()
}

/// `service=image-id` for each service whose container ran another image
/// before this deploy: a step can still read that build (`image-archive`).
fn previous_images(report: &SurfaceReport) -> String {
    let replaced = report.services.iter().filter_map(|svc| {
        let before = svc.image_before.as_deref()?;
        (svc.image_built.as_deref() != Some(before)).then(|| format!("{}={before}", svc.service))
    });
    replaced.collect::<Vec<_>>().join(",")
}

/// A comma-separated output as a list, as the SDK reads it.
fn list_output(outputs: &[Output], key: &str) -> Vec<String> {
    outputs
        .iter()
        .rev()
        .find(|o| o.key == key)
        .map(|o| {
            o.value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn check_role(key: &str, plugin: &Plugin, role: Role) -> Result<(), AgentError> {
    if plugin.role == role {
        return Ok(());
    }
    Err(AgentError::Usage(format!(
        "plugins.{key}: {} {} is built for the `{}` world, but it is used as a {}",
        plugin.info.name,
        plugin.info.version,
        plugin.role.world(),
        match role {
            Role::Step => "surface step",
            Role::Watcher => "watcher",
        }
    )))
}

fn service_failed(surface: &str, service: &str, what: &str, e: anyhow::Error) -> String {
    let e = crate::docker::explain(e);
    format!("surface {surface}, service {service}: {what} failed: {e:#}")
}

fn first_line(body: &str) -> &str {
    let line = body.lines().next().unwrap_or_default().trim();
    line.char_indices()
        .nth(200)
        .map_or(line, |(i, _)| &line[..i])
}

fn call_report(phase: Phase, ok: bool, message: String, start: Instant) -> CallReport {
    CallReport {
        phase: phase.name().to_owned(),
        ok,
        message,
        duration_ms: start.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    /// Every key the host hands the steps is one a step may not return.
    #[test]
    fn the_host_outputs_are_reserved() {
        for output in super::host_outputs("", "", "", "", "") {
            let key = output.key.as_str();
            assert!(super::HOST_OUTPUTS.contains(&key), "{key}");
        }
    }
}
