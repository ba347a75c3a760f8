//! The Docker engine, through bollard. Containers are found by compose's
//! labels (`com.docker.compose.project` / `.service`), never by shelling out
//! to compose; only the config-hash label they are given comes from the
//! installed compose v2 (`compose::config_hash`).

use crate::compose::{ComposeProject, ComposeV2};
use crate::desired::{COMPOSE_VERSION, ContainerSpec};
use crate::text::short_id;
use anyhow::{Context as _, Result, anyhow, bail};
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, ImageInspect, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectNetworkOptions, KillContainerOptions, ListContainersOptions,
    ListImagesOptions, RemoveContainerOptions, RemoveImageOptions, RenameContainerOptions,
    RestartContainerOptions, StopContainerOptions, TagImageOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

mod archive;
mod build;
mod engine;
mod layer;
mod pull;
mod run;
mod swarm;
pub use build::{Builder, Built, shared_builds};
pub use engine::{Endpoint, explain};
pub use layer::Files;
pub use run::Run;
pub use swarm::{SwarmService, SwarmTask};

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
const VERSION_LABEL: &str = "com.docker.compose.version";
const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";
/// The local image ID compose v2 compares to decide a recreate.
const IMAGE_LABEL: &str = "com.docker.compose.image";
/// On a swarm task's container: the stack `docker stack deploy` made it for.
const STACK_LABEL: &str = "com.docker.stack.namespace";
/// On a swarm task's container: its service, `<stack>_<compose service>`.
const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.name";
/// The hash of the spec a container was created from.
pub const SPEC_LABEL: &str = "dev.slipway.spec-hash";
/// On a release command's one-off container: the service it runs for.
const RELEASE_LABEL: &str = "dev.slipway.release";

/// No Docker engine answered. The CLI maps this to its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("no Docker engine answered at {endpoint}: {cause}; start dockerd or set DOCKER_HOST")]
pub struct Unreachable {
    pub endpoint: String,
    pub cause: String,
}

/// One network a container is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub ip_address: String,
    pub aliases: Vec<String>,
}

/// What slipway reads of a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub service: String,
    pub image_id: String,
    pub state: String,
    pub health: Option<String>,
    pub networks: Vec<Attachment>,
    /// Exposed TCP ports, for readiness probes.
    pub tcp_ports: Vec<u16>,
    /// The spec-hash label; `None` for a container slipway did not create.
    pub spec_hash: Option<String>,
    /// Compose v2's config-hash label.
    pub config_hash: Option<String>,
    /// Made as compose v1 makes containers (its version label is 1.x).
    pub compose_v1: bool,
    /// Creation time, RFC 3339.
    pub created: String,
    pub restart_count: i64,
    pub has_healthcheck: bool,
}

/// A service's desired container: its spec and the image ID it must run.
#[derive(Debug, Clone)]
pub struct Target {
    pub spec: crate::desired::ContainerSpec,
    pub image_id: String,
    /// Compose v2's config-hash of the service, when compose v2 is installed.
    pub config_hash: Option<String>,
}

impl Target {
    /// What reconcile compares the service's containers with.
    pub fn desired(&self) -> crate::reconcile::Desired {
        crate::reconcile::Desired {
            name: self.spec.name.clone(),
            spec_hash: self.spec.hash(),
            image_id: self.image_id.clone(),
            config_hash: self.config_hash.clone(),
        }
    }

    /// Labels set at create that are not part of the spec's hash: slipway's
    /// spec hash, and what compose v2 compares to decide a recreate (its
    /// config-hash and the image ID), so that `docker compose up` leaves the
    /// container alone and `ps`, `logs`, `exec` and `down` see it.
    fn create_labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![
            (SPEC_LABEL.to_owned(), self.spec.hash()),
            (IMAGE_LABEL.to_owned(), self.image_id.clone()),
        ];
        labels.extend(
            self.config_hash
                .iter()
                .map(|h| (CONFIG_HASH_LABEL.to_owned(), h.clone())),
        );
        labels
    }
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

pub struct Docker {
    client: bollard::Docker,
    endpoint: Endpoint,
    /// The engine's host when it is another machine: readiness and probes
    /// then go through published ports there, or run inside the container.
    remote: Option<IpAddr>,
    compose: ComposeProject,
    /// The project is a stack on a Swarm this engine manages: a service's
    /// containers are its tasks on this node, and readiness is Swarm's.
    swarm: bool,
    /// Containers stopped by a stop-first replacement and kept, until their
    /// successor is ready, to be put back if it never is. They are not the
    /// service's containers meanwhile: readiness, inspect and reconcile
    /// ignore them. (A killed agent forgets them; the next deploy finds
    /// them as leftovers.)
    parked: std::sync::Mutex<std::collections::HashSet<String>>,
    builder: build::BuilderChoice,
    /// Held while networks and volumes are created: services created side
    /// by side must not race to create the same network.
    resources: tokio::sync::Mutex<()>,
    compose_v2: tokio::sync::OnceCell<ComposeV2>,
}

/// A container a stop-first replacement stopped and moved out of the way.
#[derive(Debug, Clone)]
pub struct Parked {
    pub service: String,
    pub id: String,
    /// Its name before it was moved.
    pub name: String,
    /// The container that replaced it.
    pub successor: String,
}

impl Docker {
    /// Connect to the engine the environment names (`DOCKER_HOST`, a docker
    /// context, or the local socket) and negotiate the API version with it.
    pub async fn connect(compose: ComposeProject) -> Result<Docker> {
        let endpoint = Endpoint::from_env().map_err(|cause| Unreachable {
            endpoint: "the engine the environment names".into(),
            cause,
        })?;
        let unreachable = |cause: String| Unreachable {
            endpoint: format!("{} (from {})", endpoint.url, endpoint.source),
            cause,
        };
        let client = endpoint.client().map_err(unreachable)?;
        let client = tokio::time::timeout(Duration::from_secs(10), client.negotiate_version())
            .await
            .map_err(|_| unreachable("timed out after 10s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Docker {
            client,
            remote: endpoint.remote_host(),
            endpoint,
            compose,
            swarm: false,
            parked: Default::default(),
            builder: Default::default(),
            resources: Default::default(),
            compose_v2: Default::default(),
        })
    }

    /// `Err(why)` when the engine does not answer a ping within 3 s.
    pub async fn answers(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(3), self.client.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 3s".into()),
        }
    }

    /// The engine this talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The engine's host, when it is not this machine.
    pub fn remote_host(&self) -> Option<IpAddr> {
        self.remote
    }

    /// The project is a stack on the Swarm this engine manages.
    pub fn for_stack(mut self) -> Docker {
        self.swarm = true;
        self
    }

    /// Whether the project is a stack on a Swarm (see `for_stack`).
    pub fn on_swarm(&self) -> bool {
        self.swarm
    }

    /// Label filters for the project's containers that carry `label=value`.
    /// On a swarm the project is a stack and a service's containers are its
    /// tasks' (those on this node: an engine lists only its own).
    fn label_filters(&self, label: &str, value: &str) -> Vec<String> {
        let project = &self.compose.name;
        match (self.swarm, label) {
            (false, _) => vec![
                format!("{PROJECT_LABEL}={project}"),
                format!("{label}={value}"),
            ],
            (true, SERVICE_LABEL) => vec![
                format!("{STACK_LABEL}={project}"),
                format!("{SWARM_SERVICE_LABEL}={project}_{value}"),
            ],
            (true, _) => vec![
                format!("{STACK_LABEL}={project}"),
                format!("{label}={value}"),
            ],
        }
    }

    /// The project's containers, running or not, that carry `label=value`.
    async fn labelled(&self, label: &str, value: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([("label".to_owned(), self.label_filters(label, value))]);
        self.client
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .with_context(|| format!("cannot list the containers labelled {label}={value}"))
    }

    /// IDs of the service's containers (not one-off `run` containers).
    async fn container_ids(&self, service: &str) -> Result<Vec<String>> {
        let list = self.labelled(SERVICE_LABEL, service).await?;
        let parked = self.parked_ids().clone();
        let mut ids: Vec<(String, String)> = list
            .into_iter()
            .filter(|c| c.id.as_ref().is_none_or(|id| !parked.contains(id)))
            .filter(|c| {
                let labels = c.labels.as_ref();
                labels.and_then(|l| l.get(ONEOFF_LABEL)).map(String::as_str) != Some("True")
            })
            .filter_map(|c| Some((c.names?.first()?.clone(), c.id?)))
            .collect();
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    async fn inspect_raw(&self, id: &str) -> Result<ContainerInspectResponse> {
        self.client
            .inspect_container(id, None)
            .await
            .with_context(|| format!("cannot inspect container {}", short_id(id)))
    }

    /// The service's containers.
    pub async fn containers(&self, service: &str) -> Result<Vec<ContainerInfo>> {
        let mut out = Vec::new();
        for id in self.container_ids(service).await? {
            out.push(container_info(service, &self.inspect_raw(&id).await?));
        }
        Ok(out)
    }

    async fn running(&self, service: &str) -> Result<Vec<ContainerInfo>> {
        let running: Vec<ContainerInfo> = self
            .containers(service)
            .await?
            .into_iter()
            .filter(|c| c.state == "running")
            .collect();
        if running.is_empty() && self.swarm {
            bail!(
                "no task of service `{service}` runs on the node of the engine at {}: exec and signal reach only that node's containers; place the service there (e.g. deploy.placement.constraints: [node.role == manager])",
                self.endpoint.url
            );
        }
        if running.is_empty() {
            bail!(
                "service `{service}` has no running container in compose project `{}`",
                self.compose.name
            );
        }
        Ok(running)
    }

    /// Start the service's stopped container, as `docker compose up` would,
    /// when none of its containers runs or is being restarted by the
    /// engine. Returns the container and the state it was in; `None` when
    /// one runs, or when there is no container to start.
    pub async fn start_stopped(&self, service: &str) -> Result<Option<(String, String)>> {
        let containers = self.containers(service).await?;
        if containers
            .iter()
            .any(|c| matches!(c.state.as_str(), "running" | "restarting"))
        {
            return Ok(None);
        }
        let Some(stopped) = containers.first() else {
            return Ok(None);
        };
        self.start(&stopped.id)
            .await
            .with_context(|| format!("cannot start {}", stopped.name))?;
        Ok(Some((stopped.name.clone(), stopped.state.clone())))
    }

    /// The image tag compose v2 uses for the service: `image:`, or
    /// `<project>-<service>` for a build.
    pub fn image_tag(&self, service: &str) -> Result<String> {
        let def = self.compose.service(service).ok_or_else(|| {
            anyhow!(
                "`{service}` is not a service of {}",
                self.compose.files_display()
            )
        })?;
        Ok(def.image_tag(&self.compose.name))
    }

    /// What the installed compose v2 says of the project, read once. Without
    /// it (or on a swarm, where `docker stack deploy` makes the containers),
    /// containers get no config-hash label: compose v2 does not see them.
    async fn compose_v2(&self) -> &ComposeV2 {
        self.compose_v2
            .get_or_init(|| async {
                if self.swarm {
                    return ComposeV2::default();
                }
                let project = self.compose.clone();
                let read = tokio::task::spawn_blocking(move || ComposeV2::read(&project)).await;
                match read.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(v2) => v2,
                    Err(why) => {
                        tracing::warn!(
                            "{why}. Without Compose v2, containers get no \
                             com.docker.compose.config-hash label, and `docker compose ps`, \
                             `logs`, `exec` and `down` do not see them"
                        );
                        ComposeV2::default()
                    }
                }
            })
            .await
    }

    pub async fn image_id(&self, reference: &str) -> Result<String> {
        Ok(self.inspect_image(reference).await?.id.unwrap_or_default())
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInspect> {
        self.client
            .inspect_image(reference)
            .await
            .with_context(|| format!("cannot inspect image `{reference}`"))
    }

    /// Point `reference` (e.g. the service's compose tag) at `image`.
    pub async fn tag(&self, image: &str, reference: &str) -> Result<()> {
        let (repo, tag) = split_reference(reference);
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.client
            .tag_image(image, Some(options))
            .await
            .with_context(|| format!("cannot tag image {image} as {reference}"))
    }

    /// Keep `image`, which a deploy just replaced on the services tagged
    /// `reference`, under `<repo>:slipway-<UTC time>` so a rollback can
    /// bring it back, and untag all but the newest `keep` such images.
    /// Docker deletes an untagged image once no container uses it.
    pub async fn keep_previous(&self, reference: &str, image: &str, keep: usize) -> Result<()> {
        let (repo, _) = split_reference(reference);
        let stamp: String = crate::journal::now()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        self.tag(image, &format!("{repo}:slipway-{stamp}")).await?;
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "reference".to_owned(),
                vec![format!("{repo}:slipway-*")],
            )])),
            ..Default::default()
        };
        let mut kept: Vec<String> = self
            .client
            .list_images(Some(options))
            .await
            .context("cannot list images")?
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .filter(|t| t.starts_with(&format!("{repo}:slipway-")))
            .collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        for old in kept.iter().skip(keep) {
            let removed = self
                .client
                .remove_image(old, None::<RemoveImageOptions>, None)
                .await;
            if let Err(e) = removed {
                tracing::debug!("keeping {old}: {e}");
            }
        }
        Ok(())
    }

    /// What the service should run now: its spec from the compose model
    /// and the image its tag points at (just built, or resolved).
    pub async fn desired(&self, service: &str) -> Result<Target> {
        self.target(service, true).await
    }

    /// Like [`Docker::desired`], for `plan`: before a build, the image may
    /// not exist yet, and its ID is then empty.
    pub async fn desired_unbuilt(&self, service: &str) -> Result<Target> {
        self.target(service, false).await
    }

    async fn target(&self, service: &str, built: bool) -> Result<Target> {
        let tag = self.image_tag(service)?;
        let image_id = match built {
            true => self.image_id(&tag).await?,
            false => self.image_id(&tag).await.unwrap_or_default(),
        };
        let spec = crate::desired::desired(&self.compose, service, &tag)?;
        let config_hash = self.compose_v2().await.hashes.get(service).cloned();
        Ok(Target {
            spec,
            image_id,
            config_hash,
        })
    }

    /// `docker compose up -d --force-recreate --no-deps <service>`: replace
    /// the service's container, stop-first, with one built from the compose
    /// model on the service's current image. Leftovers of an interrupted
    /// run (a second container, one parked under another name) are removed
    /// first, as a deploy removes them.
    pub async fn recreate(&self, service: &str) -> Result<ContainerInfo> {
        let target = self.desired(service).await?;
        let existing = self.containers(service).await?;
        let action = crate::reconcile::reconcile(
            &target.desired(),
            &crate::observed::existing(&existing),
            true,
            |_| None,
        );
        for (leftover, why) in &action.discard {
            tracing::warn!("{service}: removing {why}");
            self.discard(service, &leftover.id).await?;
        }
        match action
            .keep
            .and_then(|k| existing.into_iter().find(|c| c.id == k.id))
        {
            Some(keep) => self.replace(&keep, &target).await,
            None => self.create(&target, &target.spec.name, None).await,
        }
    }

    /// Create and start the service's container from `target`, named
    /// `name` (the spec's own name, or a temporary one for start-first).
    /// With `replacing`, the old container's anonymous volumes are kept, as
    /// compose keeps them.
    pub async fn create(
        &self,
        target: &Target,
        name: &str,
        replacing: Option<&ContainerInspectResponse>,
    ) -> Result<ContainerInfo> {
        self.ensure_resources(&target.spec).await?;
        let spec = match replacing {
            Some(old) => {
                let image = self.inspect_image(&target.image_id).await?;
                let image_volumes: Vec<String> =
                    image.config.and_then(|c| c.volumes).unwrap_or_default();
                target
                    .spec
                    .with_anonymous_volumes(&volume_mounts(old), &image_volumes)
            }
            None => target.spec.clone(),
        };
        let id = self
            .create_and_start(name, &spec, &target.create_labels())
            .await?;
        Ok(container_info(&spec.service, &self.inspect_raw(&id).await?))
    }

    /// Stop-first, as compose does: stop the old container, move it out of
    /// the way under `<short id>_<name>`, create and start the new one, then
    /// remove the old one. If the new one cannot start, the old one is put
    /// back and restarted.
    pub async fn replace(&self, old: &ContainerInfo, target: &Target) -> Result<ContainerInfo> {
        let (new, parked) = self.replace_parked(old, target).await?;
        self.drop_parked(&parked).await?;
        Ok(new)
    }

    /// [`Docker::replace`], keeping the old container stopped and parked
    /// until [`Docker::drop_parked`] or [`Docker::unpark`].
    pub async fn replace_parked(
        &self,
        old: &ContainerInfo,
        target: &Target,
    ) -> Result<(ContainerInfo, Parked)> {
        let raw = self.inspect_raw(&old.id).await?;
        self.stop(&old.id, &raw).await?;
        let tmp_name = format!("{}_{}", short_id(&old.id), old.name);
        self.client
            .rename_container(&old.id, RenameContainerOptions { name: tmp_name })
            .await
            .with_context(|| format!("cannot rename {} out of the way", old.name))?;
        self.parked_ids().insert(old.id.clone());
        let created = self.create(target, &target.spec.name, Some(&raw)).await;
        let new = match created {
            Ok(c) => c,
            Err(e) => {
                self.parked_ids().remove(&old.id);
                let outcome = match self.restore(&old.id, &old.name).await {
                    Ok(()) => "the old container was restarted".to_owned(),
                    Err(why) => {
                        tracing::error!("{why:#}");
                        format!("{why:#}; the next deploy finds it as a leftover")
                    }
                };
                return Err(e.context(format!("recreating {} failed; {outcome}", old.name)));
            }
        };
        let parked = Parked {
            service: old.service.clone(),
            id: old.id.clone(),
            name: old.name.clone(),
            successor: new.id.clone(),
        };
        Ok((new, parked))
    }

    /// The successor is ready: remove the parked container.
    pub async fn drop_parked(&self, parked: &Parked) -> Result<()> {
        self.parked_ids().remove(&parked.id);
        self.remove(&parked.id, &parked.name).await
    }

    /// The successor never became ready: remove it, and start the parked
    /// container again under its own name.
    pub async fn unpark(&self, parked: &Parked) -> Result<()> {
        self.remove(&parked.successor, &parked.name).await?;
        self.parked_ids().remove(&parked.id);
        self.rename(&parked.id, &parked.name).await?;
        self.start(&parked.id).await
    }

    fn parked_ids(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        // A poisoned lock only means another task panicked mid-insert; the
        // set itself is still a set.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start-first: a new container for the service next to the running
    /// one, from the compose model on the service's current image. The old
    /// container keeps serving until [`Docker::retire`].
    pub async fn start_replacement(&self, service: &str) -> Result<ContainerInfo> {
        let existing = self.containers(service).await?;
        let Some(old) = existing.first() else {
            bail!(
                "service `{service}` has no container in compose project `{}` to replace; deploy it once first",
                self.compose.name
            );
        };
        let target = self.desired(service).await?;
        let name = format!("{}_next_{}", target.spec.name, epoch_millis());
        let old = self.inspect_raw(&old.id).await?;
        self.create(&target, &name, Some(&old)).await
    }

    /// The networks and named volumes a spec uses, created as compose
    /// creates them when missing. External ones must exist already.
    async fn ensure_resources(&self, spec: &crate::desired::ContainerSpec) -> Result<()> {
        let _one_at_a_time = self.resources.lock().await;
        for network in spec.network_names() {
            self.ensure_network(&network).await?;
        }
        for volume in spec.volume_names() {
            self.ensure_volume(&volume).await?;
        }
        Ok(())
    }

    async fn ensure_network(&self, name: &str) -> Result<()> {
        if self
            .client
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let Some((key, def)) = self.compose.networks.iter().find(|(_, n)| n.name == name) else {
            return Ok(());
        };
        if def.external {
            bail!(
                "network `{name}` is external in {} but does not exist; create it first (docker network create {name})",
                self.compose.files_display()
            );
        }
        let labels = self.resource_labels(&def.labels, "network", key);
        let ipam = (!def.ipam.is_empty()).then(|| Ipam {
            config: Some(
                def.ipam
                    .iter()
                    .map(|p| IpamConfig {
                        subnet: p.subnet.clone(),
                        gateway: p.gateway.clone(),
                        ip_range: p.ip_range.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: def.driver.clone(),
            internal: Some(def.internal),
            attachable: Some(def.attachable),
            enable_ipv6: Some(def.enable_ipv6),
            options: Some(def.driver_opts.clone().into_iter().collect()),
            labels: Some(labels),
            ipam,
            ..Default::default()
        };
        self.client
            .create_network(request)
            .await
            .with_context(|| format!("cannot create network {name}"))?;
        tracing::info!("created network {name}");
        Ok(())
    }

    /// The labels compose puts on the networks and volumes it creates, so
    /// that `docker-compose` treats them as its own.
    fn resource_labels(
        &self,
        own: &indexmap::IndexMap<String, String>,
        kind: &str,
        key: &str,
    ) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = own.clone().into_iter().collect();
        labels.insert(PROJECT_LABEL.into(), self.compose.name.clone());
        labels.insert(format!("com.docker.compose.{kind}"), key.to_owned());
        labels.insert(VERSION_LABEL.into(), COMPOSE_VERSION.into());
        labels
    }

    async fn ensure_volume(&self, name: &str) -> Result<()> {
        if self.client.inspect_volume(name).await.is_ok() {
            return Ok(());
        }
        let Some((key, def)) = self.compose.volumes.iter().find(|(_, v)| v.name == name) else {
            return Ok(());
        };
        if def.external {
            bail!(
                "volume `{name}` is external in {} but does not exist; create it first (docker volume create {name})",
                self.compose.files_display()
            );
        }
        let labels = self.resource_labels(&def.labels, "volume", key);
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: def.driver.clone(),
            driver_opts: Some(def.driver_opts.clone().into_iter().collect()),
            labels: Some(labels),
            ..Default::default()
        };
        self.client
            .create_volume(request)
            .await
            .with_context(|| format!("cannot create volume {name}"))?;
        Ok(())
    }

    /// Stop (SIGTERM, bounded by each container's stop timeout) and remove
    /// every container of the service except `keep`, then give `keep` the
    /// name the first of them had.
    pub async fn retire(&self, service: &str, keep: &str) -> Result<()> {
        let ids = self.container_ids(service).await?;
        let keep = self.own_container(service, &ids, keep)?;
        for id in ids.iter().filter(|id| **id != keep) {
            let old = self.inspect_raw(id).await?;
            self.stop_and_remove(id, &old).await?;
        }
        let name = self.desired(service).await?.spec.name;
        if name_of(&self.inspect_raw(&keep).await?) != name {
            self.rename(&keep, &name).await?;
        }
        Ok(())
    }

    /// Stop and remove one container of the service.
    pub async fn discard(&self, service: &str, container: &str) -> Result<()> {
        let ids = self.container_ids(service).await?;
        let id = self.own_container(service, &ids, container)?;
        let old = self.inspect_raw(&id).await?;
        self.stop_and_remove(&id, &old).await
    }

    /// The full ID of `container` if it belongs to the service; a plugin can
    /// only name containers of services it was granted.
    fn own_container(&self, service: &str, ids: &[String], container: &str) -> Result<String> {
        ids.iter()
            .find(|id| container.len() >= 12 && id.starts_with(container))
            .cloned()
            .ok_or_else(|| anyhow!("{container} is not a container of service `{service}`"))
    }

    /// SIGTERM, then SIGKILL after the container's own stop timeout.
    async fn stop(&self, id: &str, c: &ContainerInspectResponse) -> Result<()> {
        let name = c.name.clone().unwrap_or_default();
        let timeout = c.config.as_ref().and_then(|c| c.stop_timeout).unwrap_or(10);
        self.client
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(timeout as i32),
                    signal: None,
                }),
            )
            .await
            .with_context(|| format!("cannot stop {name}"))
    }

    async fn stop_and_remove(&self, id: &str, c: &ContainerInspectResponse) -> Result<()> {
        self.stop(id, c).await?;
        self.remove(id, &name_of(c)).await
    }

    /// Remove a container (its anonymous volumes stay, for its successor).
    pub async fn remove(&self, id: &str, name: &str) -> Result<()> {
        let removed = self
            .client
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        match removed {
            Ok(()) => Ok(()),
            // Gone already: what the removal wanted.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // A run killed while the engine removed it leaves the removal
            // going on in the engine: wait for it to end.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => self.gone(id, name).await,
            Err(e) => Err(e).with_context(|| format!("cannot remove {name}")),
        }
    }

    /// Wait, up to a minute, until the container no longer exists.
    async fn gone(&self, id: &str, name: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.client.inspect_container(id, None).await {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("cannot remove {name}")),
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        bail!("cannot remove {name}: the engine has been removing it for a minute; retry the run")
    }

    /// Rename a container, e.g. an adopted replacement to its service's name.
    pub async fn rename(&self, id: &str, name: &str) -> Result<()> {
        self.client
            .rename_container(
                id,
                RenameContainerOptions {
                    name: name.to_owned(),
                },
            )
            .await
            .with_context(|| format!("cannot rename {} to {name}", short_id(id)))
    }

    /// Start a created or stopped container.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.client
            .start_container(id, None)
            .await
            .with_context(|| format!("cannot start {}", short_id(id)))
    }

    /// A release command (`docker compose run --rm --no-deps`): a one-off
    /// container from `target` running `command`, with the service's
    /// environment, volumes and networks, but none of its aliases, fixed
    /// addresses, published ports, restart policy or healthcheck, so nothing
    /// routes to it and it cannot clash with the running container. A
    /// leftover from a killed run is removed first. Returns the exit code
    /// and the output's last lines; `timeout` kills it.
    pub async fn run_once(
        &self,
        target: &Target,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i64, String)> {
        let service = &target.spec.service;
        self.remove_release_leftovers(service).await?;
        let mut spec = target.spec.clone();
        spec.command = Some(command.to_vec());
        spec.healthcheck = None;
        spec.restart = None;
        spec.ports.clear();
        for n in &mut spec.networks {
            n.aliases.clear();
            n.ipv4_address = None;
            n.ipv6_address = None;
        }
        self.ensure_resources(&spec).await?;
        let labels = [
            (ONEOFF_LABEL.to_owned(), "True".to_owned()),
            (RELEASE_LABEL.to_owned(), service.clone()),
        ];
        let name = format!("{}_release_{}", spec.name, epoch_millis());
        let id = self.create_and_start(&name, &spec, &labels).await?;
        let waited = tokio::time::timeout(timeout, self.exit_code(&id)).await;
        let logs = self.last_logs(&id, 40).await;
        let removed = self.remove(&id, &name).await;
        let code = match waited {
            Ok(code) => code?,
            Err(_) => bail!(
                "the release command ran past {timeout:?} and was killed\n{}",
                indent(&logs)
            ),
        };
        removed?;
        Ok((code, logs))
    }

    async fn exit_code(&self, id: &str) -> Result<i64> {
        let mut wait = self.client.wait_container(id, None);
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(anyhow!(e).context("cannot wait for the release command")),
            None => bail!("the engine ended the wait without an exit code"),
        }
    }

    async fn remove_release_leftovers(&self, service: &str) -> Result<()> {
        for c in self.labelled(RELEASE_LABEL, service).await? {
            let id = c.id.unwrap_or_default();
            tracing::warn!(
                "removing the release container {} a killed run left",
                short_id(&id)
            );
            self.remove(&id, &id).await?;
        }
        Ok(())
    }

    /// The container's last log lines, for an error message.
    pub async fn last_logs(&self, id: &str, lines: usize) -> String {
        use bollard::query_parameters::LogsOptions;
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.client.logs(id, Some(options));
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out.trim_end().to_owned()
    }

    /// Create `spec` as `name` with `labels` added, connect its other
    /// networks, copy in its secrets and configs from values, and start it,
    /// in compose v2's order; a failure removes what was created.
    async fn create_and_start(
        &self,
        name: &str,
        spec: &ContainerSpec,
        labels: &[(String, String)],
    ) -> Result<String> {
        let (body, extra_networks) = spec.create_body(labels);
        let created = self
            .client
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_owned()),
                    platform: spec.platform.clone().unwrap_or_default(),
                }),
                body,
            )
            .await
            .with_context(|| format!("cannot create the new {name}"))?;
        let id = created.id;
        let result: Result<()> = async {
            for (network, endpoint) in &extra_networks {
                self.client
                    .connect_network(
                        network,
                        NetworkConnectRequest {
                            container: id.clone(),
                            endpoint_config: Some(endpoint.clone()),
                        },
                    )
                    .await
                    .with_context(|| {
                        format!("cannot attach the new {name} to network {network}")
                    })?;
            }
            for file in &spec.copied {
                self.copy_in(&id, file)
                    .await
                    .with_context(|| format!("cannot copy {} into the new {name}", file.target))?;
            }
            self.client
                .start_container(&id, None)
                .await
                .with_context(|| format!("cannot start the new {name}"))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = self
                .client
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            return Err(e);
        }
        Ok(id)
    }

    /// Copy a secret's or config's value into a created container, as
    /// compose v2's `copyFileToContainer` does: a one-file tar at `/`, the
    /// owner kept when the service set one.
    async fn copy_in(&self, id: &str, file: &crate::desired::CopiedFile) -> Result<()> {
        let value = file.value.as_deref().ok_or_else(|| {
            anyhow!("its value is not known (slipway keeps no secret or config value)")
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(value.len() as u64);
        header.set_mode(file.mode);
        header.set_uid(file.uid);
        header.set_gid(file.gid);
        header.set_mtime((epoch_millis() / 1000) as u64);
        let mut archive = tar::Builder::new(Vec::new());
        archive.append_data(
            &mut header,
            file.target.trim_start_matches('/'),
            value.as_bytes(),
        )?;
        let options = UploadToContainerOptions {
            path: "/".to_owned(),
            copy_uidgid: file.owned().then(|| "1".to_owned()),
            ..Default::default()
        };
        self.client
            .upload_to_container(
                id,
                Some(options),
                bollard::body_full(archive.into_inner()?.into()),
            )
            .await?;
        Ok(())
    }

    /// Put a moved-away container back under its name and start it; `Err`
    /// says why it could not be.
    async fn restore(&self, old_id: &str, name: &str) -> Result<()> {
        let renamed = self
            .client
            .rename_container(
                old_id,
                RenameContainerOptions {
                    name: name.to_owned(),
                },
            )
            .await;
        let started = self.client.start_container(old_id, None).await;
        renamed
            .map_err(anyhow::Error::from)
            .and(started.map_err(anyhow::Error::from))
            .with_context(|| format!("could not put back the old {name} ({})", short_id(old_id)))
    }

    /// Restart in place: the same container, the same image.
    pub async fn restart(&self, service: &str) -> Result<()> {
        for c in self.running(service).await? {
            self.client
                .restart_container(&c.id, None::<RestartContainerOptions>)
                .await
                .with_context(|| format!("cannot restart {}", c.name))?;
        }
        Ok(())
    }

    pub async fn signal(&self, service: &str, signal: &str) -> Result<()> {
        for c in self.running(service).await? {
            self.client
                .kill_container(
                    &c.id,
                    Some(KillContainerOptions {
                        signal: signal.to_owned(),
                    }),
                )
                .await
                .with_context(|| format!("cannot send {signal} to {}", c.name))?;
        }
        Ok(())
    }

    /// Run a command in the service's first running container.
    pub async fn exec(&self, service: &str, command: &[String]) -> Result<ExecOutput> {
        let exec = self.create_exec(service, command).await?;
        self.run_exec(&exec).await
    }

    /// An exec of `command` in the service's first running container,
    /// created, not started: one a caller may have to stop (see
    /// [`Docker::kill_exec`]) must know it before it runs.
    pub async fn create_exec(&self, service: &str, command: &[String]) -> Result<Exec> {
        let container = self.running(service).await?.remove(0);
        self.create_exec_in(&container.id, &container.name, command)
            .await
    }

    async fn exec_in(&self, id: &str, name: &str, command: &[String]) -> Result<ExecOutput> {
        let exec = self.create_exec_in(id, name, command).await?;
        self.run_exec(&exec).await
    }

    async fn create_exec_in(&self, id: &str, name: &str, command: &[String]) -> Result<Exec> {
        use bollard::exec::CreateExecOptions;
        let exec = self
            .client
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("cannot exec in {name}"))?;
        Ok(Exec {
            id: exec.id,
            container: id.to_owned(),
            name: name.to_owned(),
            command: command.join(" "),
        })
    }

    /// Start `exec` and run it to its end.
    pub async fn run_exec(&self, exec: &Exec) -> Result<ExecOutput> {
        use bollard::exec::StartExecResults;
        let (mut stdout, mut stderr) = (Capped::default(), Capped::default());
        if let StartExecResults::Attached { mut output, .. } =
            self.client.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = output.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => stderr.push(&message),
                    other => stdout.push(&other.into_bytes()),
                }
            }
        }
        let inspect = self.client.inspect_exec(&exec.id).await?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code.unwrap_or(-1),
            stdout: stdout.text(),
            stderr: stderr.text(),
        })
    }

    /// Kill `exec` if it still runs. The engine has no call for that, so
    /// its process is killed by PID, which only an engine on this machine
    /// shares with slipway; the PID must still belong to the exec's
    /// container. Returns whether it was killed.
    pub async fn kill_exec(&self, exec: &Exec) -> Result<bool> {
        use rustix::process::{Pid, Signal, kill_process};
        let inspect = self.client.inspect_exec(&exec.id).await?;
        let (Some(true), Some(pid)) = (inspect.running, inspect.pid) else {
            return Ok(false);
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let pid = i32::try_from(pid).ok().and_then(Pid::from_raw);
        match pid {
            Some(pid) if cgroup.contains(&exec.container) => {
                kill_process(pid, Signal::KILL).with_context(|| format!("cannot kill {exec}"))?;
                Ok(true)
            }
            _ => bail!(
                "{exec} still runs, as a process of another machine's engine; it ends when its command does"
            ),
        }
    }

    /// Wait until every container of the service is ready: healthy when it
    /// has a healthcheck, otherwise accepting TCP connections on each exposed
    /// port. A container that exits, restarts or turns unhealthy fails at
    /// once, with its last log lines.
    ///
    /// A container with neither a healthcheck nor a port (a worker, a beat,
    /// a polling bot) is ready once it has kept running, with an unchanged
    /// restart count, for `settle`: a crash loop fails here rather than
    /// shipping green.
    pub async fn wait_ready(
        &self,
        service: &str,
        timeout: Duration,
        settle: Duration,
    ) -> Result<()> {
        if self.swarm {
            let name = format!("{}_{service}", self.compose.name);
            return self.wait_tasks_running(&name, timeout).await;
        }
        // Elapsed time against the limit: no `Instant + Duration` to overflow.
        let (start, limit) = (Instant::now(), timeout.max(settle));
        let mut settling: Option<(String, i64, Instant)> = None;
        loop {
            let waiting = match self.readiness(service).await? {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(why, id) => {
                    let logs = self.last_logs(&id, 10).await;
                    bail!(
                        "service `{service}` will not become ready: {why}\n{}",
                        indent(&logs)
                    );
                }
                Readiness::Settle(id, restarts) => match &settling {
                    Some((sid, r, since)) if *sid == id && *r != restarts => {
                        let logs = self.last_logs(&id, 10).await;
                        bail!(
                            "service `{service}` restarted {} time(s) within {:.1}s of starting\n{}",
                            restarts - r,
                            since.elapsed().as_secs_f64(),
                            indent(&logs)
                        );
                    }
                    Some((sid, _, since)) if *sid == id => {
                        if since.elapsed() >= settle {
                            return Ok(());
                        }
                        format!(
                            "it has run {:.1}s of its {settle:?} settle window",
                            since.elapsed().as_secs_f64()
                        )
                    }
                    _ => {
                        settling = Some((id, restarts, Instant::now()));
                        "its settle window started".to_owned()
                    }
                },
                Readiness::Waiting(why) => why,
            };
            if start.elapsed() >= limit {
                bail!("service `{service}` was not ready after {timeout:?}: {waiting}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn readiness(&self, service: &str) -> Result<Readiness> {
        let ids = self.container_ids(service).await?;
        if ids.is_empty() {
            return Ok(Readiness::Waiting("it has no container".into()));
        }
        let mut settle = None;
        for id in ids {
            let raw = self.inspect_raw(&id).await?;
            let c = container_info(service, &raw);
            let state = raw.state.as_ref();
            match c.state.as_str() {
                "running" => {}
                "exited" | "dead" | "restarting" => {
                    let code = state.and_then(|s| s.exit_code).unwrap_or_default();
                    return Ok(Readiness::Failed(
                        format!("{} exited with code {code} ({})", c.name, c.state),
                        id,
                    ));
                }
                other => return Ok(Readiness::Waiting(format!("{} is {other}", c.name))),
            }
            match c.health.as_deref() {
                Some("healthy") => continue,
                Some("unhealthy") => {
                    let log = state
                        .and_then(|s| s.health.as_ref())
                        .and_then(|h| h.log.as_ref())
                        .and_then(|l| l.last())
                        .and_then(|r| r.output.clone())
                        .unwrap_or_default();
                    return Ok(Readiness::Failed(
                        format!("{} is unhealthy: {}", c.name, log.trim()),
                        id,
                    ));
                }
                Some(other) => {
                    return Ok(Readiness::Waiting(format!("{} health is {other}", c.name)));
                }
                None => {}
            }
            if c.tcp_ports.is_empty() {
                if !c.has_healthcheck {
                    settle = Some(Readiness::Settle(c.id.clone(), c.restart_count));
                }
                continue;
            }
            let Some(ip) = c
                .networks
                .iter()
                .find_map(|n| n.ip_address.parse::<IpAddr>().ok())
            else {
                return Ok(Readiness::Waiting(format!(
                    "{} has no IP address yet",
                    c.name
                )));
            };
            for port in &c.tcp_ports {
                match self.accepts(&raw, &c, ip, *port).await {
                    Accepts::Yes => {}
                    Accepts::No(why) => return Ok(Readiness::Waiting(why)),
                    Accepts::Unknowable(why) => return Ok(Readiness::Failed(why, id)),
                }
            }
        }
        Ok(settle.unwrap_or(Readiness::Ready))
    }

    /// Whether the container accepts TCP connections on `port`, asked from
    /// where that can be known: its own address when the engine runs here;
    /// with a remote engine, its published port on the engine's host, or
    /// else from inside the container.
    async fn accepts(
        &self,
        raw: &ContainerInspectResponse,
        c: &ContainerInfo,
        ip: IpAddr,
        port: u16,
    ) -> Accepts {
        let target = match self.remote {
            None => SocketAddr::new(ip, port),
            Some(host) => match published(raw, port, host) {
                Some(addr) => addr,
                None => return self.accepts_inside(c, ip, port).await,
            },
        };
        let connect = tokio::net::TcpStream::connect(target);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(_)) => Accepts::Yes,
            _ => Accepts::No(format!(
                "{} does not accept connections on {target}",
                c.name
            )),
        }
    }

    /// Connect to the container's own address from inside it, with the
    /// first of python3, bash or nc its image has.
    async fn accepts_inside(&self, c: &ContainerInfo, ip: IpAddr, port: u16) -> Accepts {
        let command: Vec<String> = [
            "sh",
            "-c",
            INSIDE_PROBE,
            "probe",
            &ip.to_string(),
            &port.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let asked =
            tokio::time::timeout(INSIDE_PROBE_LIMIT, self.exec_in(&c.id, &c.name, &command));
        let Ok(outcome) = asked.await else {
            return Accepts::No(format!(
                "{} did not answer on {ip}:{port} within {INSIDE_PROBE_LIMIT:?} (asked from inside it)",
                c.name
            ));
        };
        match outcome {
            Ok(out) if out.exit_code == 0 => {
                tracing::debug!(
                    "{} accepts connections on {ip}:{port} (asked from inside it)",
                    c.name
                );
                Accepts::Yes
            }
            Ok(out) if out.exit_code != NO_PROBE_TOOL => Accepts::No(format!(
                "{} does not accept connections on {ip}:{port} (asked from inside it)",
                c.name
            )),
            outcome => Accepts::Unknowable(format!(
                "{} cannot be asked whether it accepts connections on port {port}: the engine at {} is another machine, so its address is not reachable from here; the port is not published on that machine, and {}. Give the service a healthcheck in the compose file, or publish the port",
                c.name,
                self.endpoint.url,
                match outcome {
                    Ok(_) => "the image has no python3, bash or nc to ask from inside".to_owned(),
                    Err(e) => format!("running sh in it failed ({e:#})"),
                }
            )),
        }
    }

    /// The published address of a running container of `service` for its
    /// `port`, on the remote engine's host.
    pub async fn published_address(&self, service: &str, port: u16) -> Result<Option<SocketAddr>> {
        let Some(host) = self.remote else {
            return Ok(None);
        };
        for id in self.container_ids(service).await? {
            if let Some(addr) = published(&self.inspect_raw(&id).await?, port, host) {
                return Ok(Some(addr));
            }
        }
        Ok(None)
    }

    /// Whether `name` is a service of the compose project.
    pub fn is_service(&self, name: &str) -> bool {
        self.compose.service(name).is_some()
    }

    /// The address probes use for a compose service name: its first running
    /// container's first IP.
    pub async fn service_address(&self, service: &str) -> Result<Option<IpAddr>> {
        if self.compose.service(service).is_none() {
            return Ok(None);
        }
        let running = self.running(service).await?;
        Ok(running
            .iter()
            .flat_map(|c| &c.networks)
            .find_map(|n| n.ip_address.parse().ok()))
    }
}

/// Exit code of [`INSIDE_PROBE`] when the image has none of its tools.
const NO_PROBE_TOOL: i64 = 127;

/// `sh -c` script, arguments IP and port: connect with whatever the image
/// has. nc goes last and without `-z`, which busybox's lacks: it connects,
/// sends nothing and ends when the server closes.
const INSIDE_PROBE: &str = r#"
if command -v python3 >/dev/null 2>&1; then
  exec python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' "$1" "$2"
fi
if command -v bash >/dev/null 2>&1; then exec bash -c ': </dev/tcp/$0/$1' "$1" "$2"; fi
if command -v nc >/dev/null 2>&1; then exec nc -w 1 "$1" "$2" </dev/null >/dev/null 2>&1; fi
exit 127
"#;

/// How long one probe from inside a container may take.
const INSIDE_PROBE_LIMIT: Duration = Duration::from_secs(3);

/// Where a published `port` answers on the engine's host `host`. A binding
/// to loopback answers only there.
fn published(raw: &ContainerInspectResponse, port: u16, host: IpAddr) -> Option<SocketAddr> {
    let ports = raw.network_settings.as_ref()?.ports.as_ref()?;
    let bindings = ports.get(&format!("{port}/tcp"))?.as_ref()?;
    bindings.iter().find_map(|b| {
        let host_port: u16 = b.host_port.as_deref()?.parse().ok()?;
        let ip = match b.host_ip.as_deref().unwrap_or_default() {
            "" | "0.0.0.0" | "::" => host,
            ip => ip.parse::<IpAddr>().ok().filter(|ip| !ip.is_loopback())?,
        };
        Some(SocketAddr::new(ip, host_port))
    })
}

enum Accepts {
    Yes,
    No(String),
    /// Nothing here can tell: the deploy cannot wait for it.
    Unknowable(String),
}

enum Readiness {
    Ready,
    /// Running, with no healthcheck or port to ask: (container, restarts).
    Settle(String, i64),
    Waiting(String),
    /// Why, and the container whose logs explain it.
    Failed(String, String),
}

fn indent(text: &str) -> String {
    let lines: Vec<String> = text.lines().map(|l| format!("  | {l}")).collect();
    lines.join("\n")
}

/// A container's name without Docker's leading `/`.
fn name_of(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `repo[:tag]` as (repo, tag); a registry port is not a tag.
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// An exec this engine created: what [`Docker::run_exec`] starts and
/// [`Docker::kill_exec`] stops.
#[derive(Debug, Clone)]
pub struct Exec {
    id: String,
    /// The container's full ID, as its processes' cgroups name it.
    container: String,
    name: String,
    command: String,
}

/// `` `sleep 600` in x-box-1 ``, for the log.
impl std::fmt::Display for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` in {}", self.command, self.name)
    }
}

/// The most of an exec's stdout, and of its stderr, the agent keeps: more
/// than twice `nginx -T` of a 35,000-line config (1.4 MB), and little
/// enough that the copy the plugin receives costs the agent less than
/// 16 MiB, however much the command prints.
const MAX_EXEC_OUTPUT: usize = 4 << 20;

/// An exec's stream, kept up to [`MAX_EXEC_OUTPUT`]; the rest is read (so
/// the command runs to its end) and dropped, and the text says so.
#[derive(Default)]
struct Capped {
    kept: Vec<u8>,
    dropped: u64,
}

impl Capped {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_EXEC_OUTPUT - self.kept.len();
        let (keep, drop) = bytes.split_at(bytes.len().min(room));
        self.kept.extend_from_slice(keep);
        self.dropped += drop.len() as u64;
    }

    fn text(self) -> String {
        let mut text = String::from_utf8(self.kept)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n[slipway: {} more bytes dropped past the {} MiB cap]",
                self.dropped,
                MAX_EXEC_OUTPUT >> 20
            ));
        }
        text
    }
}

fn epoch_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

pub fn container_info(service: &str, c: &ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.as_ref();
    let status = state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none");
    let mut networks: Vec<Attachment> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(network, ep)| Attachment {
            network,
            ip_address: ep.ip_address.unwrap_or_default(),
            aliases: ep.aliases.unwrap_or_default(),
        })
        .collect();
    networks.sort_by(|a, b| a.network.cmp(&b.network));
    let tcp_ports = c
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.strip_suffix("/tcp").unwrap_or(p).parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let config = c.config.as_ref();
    let label = |key: &str| {
        config
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(key))
            .cloned()
    };
    let spec_hash = label(SPEC_LABEL);
    let config_hash = label(CONFIG_HASH_LABEL);
    let compose_v1 = label(VERSION_LABEL).is_some_and(|v| v.starts_with("1."));
    let has_healthcheck = config
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| t.first().map(String::as_str) != Some("NONE"));
    ContainerInfo {
        spec_hash,
        config_hash,
        compose_v1,
        // Docker's own format, to the nanosecond, so that it sorts by time.
        created: c
            .created
            .map(|t| humantime::format_rfc3339_nanos(t.into()).to_string())
            .unwrap_or_default(),
        restart_count: c.restart_count.unwrap_or_default(),
        has_healthcheck,
        id: c.id.clone().unwrap_or_default(),
        name: c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        service: service.to_owned(),
        image_id: c.image.clone().unwrap_or_default(),
        state: status,
        health,
        networks,
        tcp_ports,
    }
}

/// A container's volume mounts as (destination, volume name).
fn volume_mounts(c: &ContainerInspectResponse) -> Vec<(String, String)> {
    c.mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_ref().map(|t| t.to_string()).as_deref() == Some("volume"))
        .filter_map(|m| Some((m.destination.clone()?, m.name.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_is_kept_up_to_its_cap_and_says_what_it_dropped() {
        let mut out = Capped::default();
        out.push(b"first line\n");
        assert_eq!(out.text(), "first line\n");
        let mut out = Capped::default();
        let chunk = vec![b'y'; 1 << 20];
        for _ in 0..5 {
            out.push(&chunk);
        }
        let text = out.text();
        assert!(text.starts_with("yyyy"));
        assert!(text.len() < MAX_EXEC_OUTPUT + 100, "{}", text.len());
        assert!(text.ends_with("[slipway: 1048576 more bytes dropped past the 4 MiB cap]"));
    }

    fn with_ports(bindings: &[(&str, &str)]) -> ContainerInspectResponse {
        let bindings = bindings
            .iter()
            .map(|(ip, port)| bollard::models::PortBinding {
                host_ip: Some(ip.to_string()),
                host_port: Some(port.to_string()),
            })
            .collect();
        ContainerInspectResponse {
            network_settings: Some(bollard::models::NetworkSettings {
                ports: Some(HashMap::from([("80/tcp".to_owned(), Some(bindings))])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_published_port_answers_on_the_engines_machine_unless_bound_to_loopback() {
        let engine: IpAddr = "10.0.0.5".parse().unwrap();
        let at = |b: &[(&str, &str)], port| published(&with_ports(b), port, engine);
        assert_eq!(
            at(&[("0.0.0.0", "8080")], 80),
            Some("10.0.0.5:8080".parse().unwrap())
        );
        assert_eq!(
            at(&[("", "8080")], 80),
            Some("10.0.0.5:8080".parse().unwrap())
        );
        assert_eq!(
            at(&[("10.0.0.9", "81")], 80),
            Some("10.0.0.9:81".parse().unwrap())
        );
        assert_eq!(at(&[("127.0.0.1", "8080")], 80), None);
        assert_eq!(
            at(&[("127.0.0.1", "8080"), ("::", "8081")], 80),
            Some("10.0.0.5:8081".parse().unwrap())
        );
        assert_eq!(at(&[("0.0.0.0", "8080")], 81), None);
        assert_eq!(at(&[("0.0.0.0", "")], 80), None);
    }

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(split_reference("proj_api"), ("proj_api", "latest"));
        assert_eq!(split_reference("proj_api:v2"), ("proj_api", "v2"));
        assert_eq!(split_reference("reg:5000/api"), ("reg:5000/api", "latest"));
        assert_eq!(split_reference("reg:5000/api:v2"), ("reg:5000/api", "v2"));
    }
}
