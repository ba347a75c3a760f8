//! The Docker engine, through bollard. Containers are found by compose's
//! labels (`com.docker.compose.project` / `.service`), never by shelling out
//! to compose.

use crate::compose::ComposeProject;
use anyhow::{Context as _, Result, anyhow, bail};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageInspect,
    NetworkConnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, KillContainerOptions, ListContainersOptions,
    ListImagesOptions, RemoveContainerOptions, RemoveImageOptions, RenameContainerOptions,
    RestartContainerOptions, StopContainerOptions, TagImageOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const PROJECT_LABEL: &str = "com.docker.compose.project";
const SERVICE_LABEL: &str = "com.docker.compose.service";
const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
const VERSION_LABEL: &str = "com.docker.compose.version";

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
#[derive(Debug, Clone)]
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
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

pub struct Docker {
    client: bollard::Docker,
    compose: ComposeProject,
}

impl Docker {
    /// Connect with the usual defaults (`DOCKER_HOST` or the local socket) and
    /// negotiate the API version with the engine.
    pub async fn connect(compose: ComposeProject) -> Result<Docker> {
        let endpoint =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |cause: String| Unreachable {
            endpoint: endpoint.clone(),
            cause,
        };
        let client = bollard::Docker::connect_with_local_defaults()
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(Duration::from_secs(600));
        let client = tokio::time::timeout(Duration::from_secs(10), client.negotiate_version())
            .await
            .map_err(|_| unreachable("timed out after 10s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Docker { client, compose })
    }

    pub fn compose(&self) -> &ComposeProject {
        &self.compose
    }

    /// IDs of the service's containers (not one-off `run` containers).
    async fn container_ids(&self, service: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{PROJECT_LABEL}={}", self.compose.name),
                format!("{SERVICE_LABEL}={service}"),
            ],
        )]);
        let list = self
            .client
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .with_context(|| format!("cannot list containers of service `{service}`"))?;
        let mut ids: Vec<(String, String)> = list
            .into_iter()
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
            .with_context(|| format!("cannot inspect container {}", short(id)))
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
        if running.is_empty() {
            bail!(
                "service `{service}` has no running container in compose project `{}`",
                self.compose.name
            );
        }
        Ok(running)
    }

    /// The image tag compose uses for the service. Compose v1 joins project
    /// and service with `_`, v2 with `-`; existing containers say which.
    pub async fn image_tag(&self, service: &str) -> Result<String> {
        let def = self.compose.service(service).ok_or_else(|| {
            anyhow!(
                "`{service}` is not a service of {}",
                self.compose.file.display()
            )
        })?;
        let legacy = match self.container_ids(service).await?.first() {
            Some(id) => {
                let c = self.inspect_raw(id).await?;
                let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
                labels
                    .get(VERSION_LABEL)
                    .is_some_and(|v| v.starts_with("1."))
            }
            None => false,
        };
        Ok(def.image_tag(&self.compose.name, legacy))
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

    /// Keep `image`, which a deploy of `service` just replaced, under
    /// `<repo>:slipway-<UTC time>` so a rollback can bring it back, and
    /// untag all but the newest `keep` such images. Docker deletes an
    /// untagged image once no container uses it.
    pub async fn keep_previous(&self, service: &str, image: &str, keep: usize) -> Result<()> {
        let reference = self.image_tag(service).await?;
        let (repo, _) = split_reference(&reference);
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

    /// Build the service's image from its compose build context, honouring
    /// `.dockerignore`, tagged as compose tags it. Returns the image ID.
    pub async fn build(&self, service: &str) -> Result<String> {
        let def = self
            .compose
            .service(service)
            .ok_or_else(|| anyhow!("unknown service `{service}`"))?;
        let build = def.build.as_ref().ok_or_else(|| {
            anyhow!(
                "service `{service}` has no `build:` in the compose file; it runs a pulled image"
            )
        })?;
        let tag = self.image_tag(service).await?;
        let context = build.context.clone();
        let dockerfile = build.dockerfile.clone();
        let tar = tokio::task::spawn_blocking(move || context_tar(&context, &dockerfile))
            .await
            .context("tar task panicked")??;
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(build.args.clone()),
            target: build.target.clone().unwrap_or_default(),
            labels: Some(HashMap::from([
                (PROJECT_LABEL.to_owned(), self.compose.name.clone()),
                (SERVICE_LABEL.to_owned(), service.to_owned()),
            ])),
            ..Default::default()
        };
        let mut stream =
            self.client
                .build_image(options, None, Some(bollard::body_full(tar.into())));
        let mut log = String::new();
        while let Some(item) = stream.next().await {
            let info = item.with_context(|| format!("building `{tag}` failed"))?;
            if let Some(line) = &info.stream {
                log.push_str(line);
                tracing::debug!("build {service}: {}", line.trim_end());
            }
            if let Some(detail) = info.error_detail {
                bail!(
                    "building `{tag}` failed: {}\n{}",
                    detail.message.unwrap_or_default(),
                    tail(&log, 20)
                );
            }
        }
        self.image_id(&tag).await
    }

    /// `docker compose up -d --force-recreate --no-deps <service>`: for each
    /// container, stop it, create its replacement from the service's current
    /// image with the same config, labels, networks (with aliases), mounts
    /// and restart policy, start it, then remove the old one. If anything
    /// fails before the new container starts, the old one is put back.
    pub async fn recreate(&self, service: &str) -> Result<ContainerInfo> {
        let ids = self.container_ids(service).await?;
        if ids.is_empty() {
            bail!(
                "service `{service}` has no container in compose project `{}`; bring the stack up once (docker compose up -d) before deploying",
                self.compose.name
            );
        }
        let tag = self.image_tag(service).await?;
        let new_image = self.inspect_image(&tag).await?;
        let mut last = None;
        for id in ids {
            last = Some(self.recreate_one(service, &id, &tag, &new_image).await?);
        }
        Ok(last.expect("at least one container"))
    }

    async fn recreate_one(
        &self,
        service: &str,
        old_id: &str,
        tag: &str,
        new_image: &ImageInspect,
    ) -> Result<ContainerInfo> {
        let old = self.inspect_raw(old_id).await?;
        let old_image = match &old.image {
            Some(id) => self.inspect_image(id).await.ok(),
            None => None,
        };
        let name = name_of(&old);
        let (body, extra_networks) = replacement(&old, old_image.as_ref(), tag, new_image)?;
        self.stop(old_id, &old).await?;
        let tmp_name = format!("{}_{name}", short(old_id));
        self.client
            .rename_container(old_id, RenameContainerOptions { name: tmp_name })
            .await
            .with_context(|| format!("cannot rename {name} out of the way"))?;
        let created = self.create_and_start(&name, body, &extra_networks).await;
        let new_id = match created {
            Ok(id) => id,
            Err(e) => {
                self.restore(old_id, &name).await;
                return Err(e.context(format!(
                    "recreating {name} failed; the old container was restarted"
                )));
            }
        };
        self.client
            .remove_container(
                old_id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .with_context(|| format!("cannot remove the old container of {name}"))?;
        Ok(container_info(service, &self.inspect_raw(&new_id).await?))
    }

    /// Start-first: a new container for the service next to the running
    /// one, from the service's current image, with the same config, labels,
    /// networks and aliases. The old container keeps serving until
    /// [`Docker::retire`].
    pub async fn start_replacement(&self, service: &str) -> Result<ContainerInfo> {
        let ids = self.container_ids(service).await?;
        let Some(template) = ids.first() else {
            bail!(
                "service `{service}` has no container in compose project `{}` to replace; bring the stack up once (docker compose up -d) before deploying",
                self.compose.name
            );
        };
        let tag = self.image_tag(service).await?;
        let new_image = self.inspect_image(&tag).await?;
        let old = self.inspect_raw(template).await?;
        let old_image = match &old.image {
            Some(id) => self.inspect_image(id).await.ok(),
            None => None,
        };
        let (body, extra_networks) = replacement(&old, old_image.as_ref(), &tag, &new_image)?;
        let old_name = old.name.clone().unwrap_or_default();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let name = format!("{}_next_{stamp}", old_name.trim_start_matches('/'));
        let id = self.create_and_start(&name, body, &extra_networks).await?;
        Ok(container_info(service, &self.inspect_raw(&id).await?))
    }

    /// Stop (SIGTERM, bounded by each container's stop timeout) and remove
    /// every container of the service except `keep`, then give `keep` the
    /// name the first of them had.
    pub async fn retire(&self, service: &str, keep: &str) -> Result<()> {
        let ids = self.container_ids(service).await?;
        let keep = self.own_container(service, &ids, keep)?;
        let mut canonical = None;
        for id in ids.iter().filter(|id| **id != keep) {
            let old = self.inspect_raw(id).await?;
            let name = name_of(&old);
            self.stop_and_remove(id, &old).await?;
            canonical.get_or_insert(name);
        }
        if let Some(name) = canonical {
            self.client
                .rename_container(&keep, RenameContainerOptions { name: name.clone() })
                .await
                .with_context(|| format!("cannot rename the replacement to {name}"))?;
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
        let name = c.name.clone().unwrap_or_default();
        self.stop(id, c).await?;
        self.client
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .with_context(|| format!("cannot remove {name}"))
    }

    async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
        extra_networks: &[(String, EndpointSettings)],
    ) -> Result<String> {
        let created = self
            .client
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_owned()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .with_context(|| format!("cannot create the new {name}"))?;
        let id = created.id;
        let result: Result<()> = async {
            for (network, endpoint) in extra_networks {
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

    async fn restore(&self, old_id: &str, name: &str) {
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
        if let Err(e) = renamed
            .map_err(anyhow::Error::from)
            .and(started.map_err(anyhow::Error::from))
        {
            tracing::error!("could not put back the old {name} ({}): {e}", short(old_id));
        }
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
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let container = self.running(service).await?.remove(0);
        let exec = self
            .client
            .create_exec(
                &container.id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("cannot exec in {}", container.name))?;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let StartExecResults::Attached { mut output, .. } =
            self.client.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = output.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        let inspect = self.client.inspect_exec(&exec.id).await?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code.unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    /// Wait until every container of the service is ready: healthy when it
    /// has a healthcheck, otherwise accepting TCP connections on each exposed
    /// port (or merely running when it exposes none). A container that exits
    /// or turns unhealthy fails at once.
    pub async fn wait_ready(&self, service: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let waiting = match self.readiness(service).await? {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(why) => bail!("service `{service}` will not become ready: {why}"),
                Readiness::Waiting(why) => why,
            };
            if Instant::now() >= deadline {
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
        for id in ids {
            let raw = self.inspect_raw(&id).await?;
            let c = container_info(service, &raw);
            let state = raw.state.as_ref();
            match c.state.as_str() {
                "running" => {}
                "exited" | "dead" => {
                    let code = state.and_then(|s| s.exit_code).unwrap_or_default();
                    return Ok(Readiness::Failed(format!(
                        "{} exited with code {code}",
                        c.name
                    )));
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
                    return Ok(Readiness::Failed(format!(
                        "{} is unhealthy: {}",
                        c.name,
                        log.trim()
                    )));
                }
                Some(other) => {
                    return Ok(Readiness::Waiting(format!("{} health is {other}", c.name)));
                }
                None => {}
            }
            let Some(ip) = c
                .networks
                .iter()
                .find_map(|n| n.ip_address.parse::<IpAddr>().ok())
            else {
                if c.tcp_ports.is_empty() {
                    continue;
                }
                return Ok(Readiness::Waiting(format!(
                    "{} has no IP address yet",
                    c.name
                )));
            };
            for port in &c.tcp_ports {
                let connect = tokio::net::TcpStream::connect((ip, *port));
                match tokio::time::timeout(Duration::from_secs(1), connect).await {
                    Ok(Ok(_)) => {}
                    _ => {
                        return Ok(Readiness::Waiting(format!(
                            "{} does not accept connections on {ip}:{port}",
                            c.name
                        )));
                    }
                }
            }
        }
        Ok(Readiness::Ready)
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

enum Readiness {
    Ready,
    Waiting(String),
    Failed(String),
}

/// A container's name without Docker's leading `/`.
fn name_of(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
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
    ContainerInfo {
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

/// The create body for a container that replaces `old` on `new_image`, plus
/// the networks to connect after creation (the API takes one at create).
///
/// The old container's config is kept, except values it only had because the
/// old image set them: those are dropped so the new image's apply, as a
/// fresh `docker compose up` would do.
fn replacement(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageInspect>,
    tag: &str,
    new_image: &ImageInspect,
) -> Result<(ContainerCreateBody, Vec<(String, EndpointSettings)>)> {
    let old_id = old.id.clone().unwrap_or_default();
    let config = old
        .config
        .clone()
        .ok_or_else(|| anyhow!("container {} has no config", short(&old_id)))?;
    let mut body: ContainerCreateBody = serde_json::from_value(serde_json::to_value(&config)?)?;
    let image_defaults = old_image.and_then(|i| i.config.clone()).unwrap_or_default();

    body.image = Some(tag.to_owned());
    if body.hostname.as_deref() == Some(short(&old_id)) {
        body.hostname = None;
    }
    if let Some(env) = &mut body.env {
        let from_image = image_defaults.env.clone().unwrap_or_default();
        env.retain(|e| !from_image.contains(e));
    }
    if body.cmd == image_defaults.cmd {
        body.cmd = None;
    }
    if body.entrypoint == image_defaults.entrypoint {
        body.entrypoint = None;
    }
    if body.healthcheck == image_defaults.healthcheck {
        body.healthcheck = None;
    }
    if body.working_dir == image_defaults.working_dir {
        body.working_dir = None;
    }
    if body.user == image_defaults.user {
        body.user = None;
    }
    if body.stop_signal == image_defaults.stop_signal {
        body.stop_signal = None;
    }
    if let Some(ports) = &mut body.exposed_ports {
        let from_image = image_defaults.exposed_ports.clone().unwrap_or_default();
        ports.retain(|p| !from_image.contains(p));
    }
    if let Some(volumes) = &mut body.volumes {
        let from_image = image_defaults.volumes.clone().unwrap_or_default();
        volumes.retain(|v| !from_image.contains(v));
    }
    if let Some(labels) = &mut body.labels {
        let from_image = image_defaults.labels.clone().unwrap_or_default();
        // Compose's own labels are how slipway finds the container: keep them
        // even when the old image carried the same ones.
        labels.retain(|k, v| k.starts_with("com.docker.compose.") || from_image.get(k) != Some(v));
        if let Some(image_label) = labels.get_mut("com.docker.compose.image") {
            *image_label = new_image.id.clone().unwrap_or_default();
        }
    }

    let mut host_config = old.host_config.clone().unwrap_or_default();
    // Anonymous volumes belong to the service, not the container: carry them
    // over by name, as compose does.
    let binds = host_config.binds.get_or_insert_with(Vec::new);
    for mount in old.mounts.iter().flatten() {
        let (Some("volume"), Some(name), Some(dest)) =
            (mount.typ.as_deref(), &mount.name, &mount.destination)
        else {
            continue;
        };
        let anonymous = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
        let declared = binds
            .iter()
            .any(|b| b.split(':').nth(1) == Some(dest.as_str()))
            || host_config
                .mounts
                .iter()
                .flatten()
                .any(|m| m.target.as_deref() == Some(dest.as_str()));
        if anonymous && !declared {
            binds.push(format!("{name}:{dest}"));
        }
    }
    let network_mode = host_config.network_mode.clone().unwrap_or_default();
    body.host_config = Some(host_config);

    let mut networks: Vec<(String, EndpointSettings)> = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| {
            let aliases = ep.aliases.map(|a| {
                a.into_iter()
                    .filter(|alias| alias != short(&old_id) && *alias != old_id)
                    .collect()
            });
            let settings = EndpointSettings {
                ipam_config: ep.ipam_config,
                links: ep.links,
                aliases,
                driver_opts: ep.driver_opts,
                ..Default::default()
            };
            (name, settings)
        })
        .collect();
    // The network named by network_mode goes in the create call; built-in
    // modes (host, none, container:…) take no endpoint config.
    networks.sort_by_key(|(name, _)| *name != network_mode);
    let shareable = !matches!(network_mode.as_str(), "host" | "none" | "")
        && !network_mode.starts_with("container:");
    if shareable && !networks.is_empty() {
        let (first_name, first) = networks.remove(0);
        body.networking_config = Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(first_name, first)])),
        });
    } else if !shareable && network_mode != "default" && network_mode != "bridge" {
        networks.clear();
    }
    Ok((body, networks))
}

/// The build context as a tar, minus what `.dockerignore` excludes. The
/// patterns are anchored at the context root, as Docker anchors them; the
/// Dockerfile is always sent.
fn context_tar(context: &Path, dockerfile: &str) -> Result<Vec<u8>> {
    use ignore::gitignore::GitignoreBuilder;
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let mut rules = GitignoreBuilder::new(context);
    if let Ok(text) = std::fs::read_to_string(context.join(".dockerignore")) {
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (neg, pattern) = match line.strip_prefix('!') {
                Some(p) => ("!", p),
                None => ("", line),
            };
            let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
            rules
                .add_line(None, &format!("{neg}/{pattern}"))
                .with_context(|| format!("bad .dockerignore pattern `{line}`"))?;
        }
    }
    let rules = rules.build()?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let walker = ignore::WalkBuilder::new(context)
        .standard_filters(false)
        .hidden(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(context)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
        let always = rel == Path::new(dockerfile) || rel == Path::new(".dockerignore");
        if !always && rules.matched_path_or_any_parents(rel, is_dir).is_ignore() {
            continue;
        }
        tar.append_path_with_name(path, rel)
            .with_context(|| format!("cannot add {} to the build context", path.display()))?;
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(split_reference("proj_api"), ("proj_api", "latest"));
        assert_eq!(split_reference("proj_api:v2"), ("proj_api", "v2"));
        assert_eq!(split_reference("reg:5000/api"), ("reg:5000/api", "latest"));
        assert_eq!(split_reference("reg:5000/api:v2"), ("reg:5000/api", "v2"));
    }

    fn names_in(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn dockerignore_is_honoured_and_anchored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for f in [
            "Dockerfile",
            "app.py",
            "secret.env",
            "node_modules/x.js",
            "src/secret.env",
            "logs/a.log",
            "logs/keep.log",
        ] {
            let path = p.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        std::fs::write(
            p.join(".dockerignore"),
            "# comment\nsecret.env\nnode_modules\nlogs/*.log\n!logs/keep.log\nDockerfile\n",
        )
        .unwrap();
        let names = names_in(&context_tar(p, "Dockerfile").unwrap());
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "app.py",
                "logs",
                "logs/keep.log",
                "src",
                "src/secret.env"
            ]
        );
    }

    #[test]
    fn replacement_keeps_config_and_drops_image_defaults() {
        let old: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Id": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Name": "/honeychat_api_1",
            "Image": "sha256:old",
            "Config": {
                "Hostname": "0123456789ab",
                "Env": ["APP_ENV=production", "PATH=/bin"],
                "Cmd": ["/entrypoint.sh"],
                "Image": "honeychat_api",
                "ExposedPorts": {"8000/tcp": {}},
                "Labels": {"com.docker.compose.service": "api", "from.image": "1"},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000}
            },
            "HostConfig": {
                "Binds": ["/srv/config:/config:ro"],
                "NetworkMode": "honeychat_internal",
                "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}
            },
            "Mounts": [
                {"Type": "volume", "Name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "Destination": "/cache"},
                {"Type": "volume", "Name": "honeychat_api-data", "Destination": "/data"}
            ],
            "NetworkSettings": {"Networks": {
                "honeychat_external": {"Aliases": ["api"]},
                "honeychat_internal": {"Aliases": ["0123456789ab", "backend", "api"]}
            }}
        }))
        .unwrap();
        let old_image: ImageInspect = serde_json::from_value(serde_json::json!({
            "Id": "sha256:old",
            "Config": {"Env": ["PATH=/bin"], "Cmd": ["/entrypoint.sh"], "Labels": {"from.image": "1"}}
        }))
        .unwrap();
        let new_image: ImageInspect =
            serde_json::from_value(serde_json::json!({"Id": "sha256:new"})).unwrap();
        let (body, extra) =
            replacement(&old, Some(&old_image), "honeychat_api", &new_image).unwrap();
        assert_eq!(body.image.as_deref(), Some("honeychat_api"));
        assert_eq!(
            body.hostname, None,
            "the old container's generated hostname must not stick"
        );
        assert_eq!(
            body.env.as_deref(),
            Some(&["APP_ENV=production".to_owned()][..])
        );
        assert_eq!(body.cmd, None, "the new image's CMD applies");
        assert!(body.healthcheck.is_some(), "a compose healthcheck is kept");
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(
            labels.get("com.docker.compose.service").map(String::as_str),
            Some("api")
        );
        assert!(!labels.contains_key("from.image"));
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(
            hc.restart_policy
                .as_ref()
                .unwrap()
                .name
                .map(|n| n.to_string())
                .as_deref(),
            Some("unless-stopped")
        );
        let binds = hc.binds.as_ref().unwrap();
        assert!(binds.contains(&"/srv/config:/config:ro".to_owned()));
        assert!(
            binds.iter().any(|b| b.ends_with(":/cache")),
            "anonymous volume carried over: {binds:?}"
        );
        assert!(
            !binds.iter().any(|b| b.ends_with(":/data")),
            "named volumes come from Mounts/Binds as declared"
        );
        let first = body.networking_config.unwrap().endpoints_config.unwrap();
        let internal = &first["honeychat_internal"];
        assert_eq!(
            internal.aliases.as_deref(),
            Some(&["backend".to_owned(), "api".to_owned()][..])
        );
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].0, "honeychat_external");
    }
}
