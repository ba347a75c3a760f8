//! The services a step works through but its surface does not deploy:
//! nginx, for the nginx step. A deploy needs them running, as `docker
//! compose up` leaves them. One whose container has stopped (it crashed,
//! was killed, or the engine restarted without it) is started again before
//! the step runs, and once more when the step fails, so the deploy never
//! ends with the front door down; the step's report names what was started.

use super::{Agent, Stop};
use crate::report::{StepReport, SurfaceReport};
use std::time::Duration;

/// How long a restarted front door may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Agent {
    /// The services step `index` of `surface` is granted that the surface
    /// does not deploy.
    fn front_doors(&self, surface: &str, index: usize) -> Vec<String> {
        let deployed = &self.loaded.manifest.surface[surface].services;
        self.grants[&(surface.to_owned(), index)]
            .docker
            .services
            .iter()
            .map(|grant| grant.service.clone())
            .filter(|service| !deployed.contains(service))
            .collect()
    }

    /// Start each front door of the step whose container has stopped, and
    /// note it in `step`. Returns what it started, e.g. `nginx (was
    /// exited)`.
    pub(super) async fn start_front_doors(
        &self,
        surface: &str,
        index: usize,
        step: &mut StepReport,
    ) -> Result<Vec<String>, String> {
        let doors = self.front_doors(surface, index);
        if doors.is_empty() {
            // A static site's step needs no engine at all.
            return Ok(Vec::new());
        }
        let docker = self.docker_for(surface)?;
        let mut started = Vec::new();
        for service in doors {
            let start = docker.start_stopped(&service).await.map_err(|e| {
                format!(
                    "surface {surface}, step {index}: `{service}` has stopped and cannot be started: {e:#}; \
                     start it (`docker compose up -d {service}`) and rerun"
                )
            })?;
            if let Some((container, state)) = start {
                tracing::warn!("[{surface}] {service} ({container}) was {state}; started it");
                // Started is not serving: the step's reload and the users'
                // requests need it accepting connections.
                docker
                    .wait_ready(&service, READY_TIMEOUT, Duration::ZERO)
                    .await
                    .map_err(|e| {
                        format!(
                            "surface {surface}, step {index}: `{service}` had stopped; slipway started it, \
                             but {e:#}; check its logs (`docker logs {container}`) and rerun"
                        )
                    })?;
                started.push(format!("{service} (was {state})"));
            }
        }
        step.started.extend(started.iter().cloned());
        Ok(started)
    }

    /// A failed step may have failed because its front door stopped under
    /// it: start it again, so users are served, and say so in the error.
    pub(super) async fn after_failed_step(
        &self,
        surface: &str,
        index: usize,
        stop: Stop,
        report: &mut SurfaceReport,
    ) -> Stop {
        let step = report
            .steps
            .last_mut()
            .expect("the failed step is reported");
        let note = match self.start_front_doors(surface, index, step).await {
            Ok(started) if started.is_empty() => return stop,
            Ok(started) => format!(
                "{} had stopped during the deploy; slipway started it again, so users are served by what runs now",
                started.join(", ")
            ),
            Err(e) => e,
        };
        match stop {
            Stop::Refused(m) => Stop::Refused(format!("{m}; {note}")),
            Stop::Failed(m) => Stop::Failed(format!("{m}; {note}")),
        }
    }
}
