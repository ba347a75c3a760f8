//! A deploy's builds, before any surface runs: every distinct build of the
//! selected surfaces once, independent ones concurrently (bounded by the
//! cores). A failed build stops the deploy before anything is replaced.

use super::{Agent, service_failed};
use crate::docker::shared_builds;
use crate::report::{BuildReport, ServiceReport, SurfaceReport};
use std::collections::HashMap;
use std::time::Instant;

/// The image each built service runs, and how long its build took.
#[derive(Default)]
pub(super) struct Images(HashMap<String, (String, u64)>);

impl Images {
    /// The image built for a service in this deploy, if it builds.
    pub(super) fn image(&self, service: &str) -> Option<&str> {
        self.0.get(service).map(|(image, _)| image.as_str())
    }
}

/// A build that failed: the first surface holding its services, and why.
pub(super) struct BuildFailed {
    pub surface: String,
    pub message: String,
}

impl Agent {
    /// Build what the surfaces' services build. Returns the images and one
    /// report per build, in the order the builds were listed.
    pub(super) async fn build_all(
        &self,
        surfaces: &[String],
    ) -> (Result<Images, BuildFailed>, Vec<BuildReport>) {
        let mut services: Vec<String> = Vec::new();
        for name in surfaces {
            services.extend(self.loaded.manifest.surface[name].services.iter().cloned());
        }
        if let Err(failed) = self.pull_all(surfaces).await {
            return (Err(failed), Vec::new());
        }
        let groups = shared_builds(&self.loaded.compose, &services);
        if groups.is_empty() {
            return (Ok(Images::default()), Vec::new());
        }
        let owner = |service: &str| {
            surfaces
                .iter()
                .find(|s| {
                    self.loaded.manifest.surface[*s]
                        .services
                        .iter()
                        .any(|x| x == service)
                })
                .cloned()
                .unwrap_or_default()
        };
        let docker = match self.docker_for(&owner(&groups[0][0])) {
            Ok(d) => d,
            Err(message) => {
                let surface = owner(&groups[0][0]);
                return (Err(BuildFailed { surface, message }), Vec::new());
            }
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let permits = tokio::sync::Semaphore::new(cores);
        let builds = groups.iter().map(|members| async {
            let _permit = permits.acquire().await.ok();
            let label = match members.len() {
                1 => format!("build {}", members[0]),
                n => format!("build {} (shared by {n} services)", members[0]),
            };
            let task = crate::progress::start(label);
            let (t, started) = (Instant::now(), crate::journal::now());
            let built = docker.build(members, &task).await;
            task.end(built.is_ok());
            let report = BuildReport {
                services: members.clone(),
                image: built.as_ref().ok().map(|b| b.image_id.clone()),
                builder: built
                    .as_ref()
                    .map_or(docker.builder(), |b| b.builder)
                    .name()
                    .to_owned(),
                ok: built.is_ok(),
                started,
                finished: crate::journal::now(),
                duration_ms: t.elapsed().as_millis() as u64,
            };
            (built, report)
        });
        let results = futures_util::future::join_all(builds).await;
        let mut images = Images::default();
        let mut failed = None;
        let mut reports = Vec::new();
        for (members, (built, report)) in groups.iter().zip(results) {
            match built {
                Ok(b) => {
                    tracing::info!(
                        "built {} with {} for {}",
                        crate::text::short_id(&b.image_id),
                        b.builder.name(),
                        members.join(", ")
                    );
                    for service in members {
                        images
                            .0
                            .insert(service.clone(), (b.image_id.clone(), report.duration_ms));
                    }
                }
                Err(e) if failed.is_none() => {
                    let surface = owner(&members[0]);
                    let message = format!(
                        "{}; nothing was deployed, and the running containers keep serving",
                        service_failed(&surface, &members[0], "build", e)
                    );
                    failed = Some(BuildFailed { surface, message });
                }
                Err(e) => tracing::error!("build of {} failed: {e:#}", members.join(", ")),
            }
            reports.push(report);
        }
        (failed.map_or(Ok(images), Err), reports)
    }

    /// Pull the images of the surfaces' services that do not build, as
    /// their `pull_policy` asks, concurrently within a surface.
    async fn pull_all(&self, surfaces: &[String]) -> Result<(), BuildFailed> {
        for surface in surfaces {
            let failed = |message| BuildFailed {
                surface: surface.clone(),
                message,
            };
            let services = &self.loaded.manifest.surface[surface].services;
            if services.is_empty() {
                continue;
            }
            let docker = self.docker_for(surface).map_err(failed)?;
            let pulls = services.iter().map(|service| docker.pull_if_due(service));
            let results = futures_util::future::join_all(pulls).await;
            for (service, result) in services.iter().zip(results) {
                match result {
                    Ok(Some(why)) => tracing::info!("[{surface}] pulled {service}'s image: {why}"),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(failed(format!(
                            "{}; nothing was deployed, and the running containers keep serving",
                            service_failed(surface, service, "pull", e)
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Each service's images before and after, in the surface's report:
    /// built by [`Agent::build_all`], or the image its tag points at for a
    /// service that runs a pulled image.
    pub(super) async fn record_images(
        &self,
        surface: &str,
        services: &[String],
        images: &Images,
        report: &mut SurfaceReport,
    ) -> Result<(), String> {
        let docker = self.docker_for(surface)?;
        let running = services.iter().map(|service| async move {
            let containers = docker.containers(service).await.ok();
            containers.and_then(|c| c.first().map(|c| c.image_id.clone()))
        });
        let before = futures_util::future::join_all(running).await;
        for (service, image_before) in services.iter().zip(before) {
            let mut svc = ServiceReport {
                service: service.clone(),
                image_before,
                ..Default::default()
            };
            let image = match images.0.get(service) {
                Some((image, build_ms)) => {
                    svc.build_ms = *build_ms;
                    Ok(image.clone())
                }
                None => {
                    let t = Instant::now();
                    let resolved = match docker.image_tag(service) {
                        Ok(tag) => docker.image_id(&tag).await,
                        Err(e) => Err(e),
                    };
                    svc.build_ms = t.elapsed().as_millis() as u64;
                    resolved.map_err(|e| service_failed(surface, service, "image", e))
                }
            };
            svc.image_built = image.as_ref().ok().cloned();
            report.services.push(svc);
            image?;
        }
        Ok(())
    }
}
