//! A Swarm manager, as the swarm backend needs it: push what was built,
//! hand the stack to `docker stack deploy` (the compose-to-service
//! translation Swarm's users already run), and read back services and
//! tasks. Deciding when an update is done lives in `deploy::swarm`.

use super::Docker;
use anyhow::{Context, Result, anyhow, bail};
use bollard::query_parameters::{
    InspectServiceOptions, ListNodesOptions, ListTasksOptions, PushImageOptions,
    UpdateServiceOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// A service as the manager holds it.
pub struct SwarmService {
    /// The image its spec names (`repo:tag@sha256:…`).
    pub image: String,
    /// `UpdateStatus.State` (`updating`, `completed`, `paused`,
    /// `rollback_started`, …); empty when the service was never updated.
    pub update_state: String,
    pub update_message: String,
    /// Reached through a virtual IP (Swarm's default `endpoint_mode`): its
    /// address stays the same when its tasks are replaced. With `dnsrr`
    /// its name resolves to the tasks' own addresses.
    pub vip: bool,
    /// Wanted tasks for a replicated service; None for a global one.
    pub replicas: Option<u64>,
    /// The whole spec, as the engine gives it: two specs that differ mean
    /// an update, and where they differ says what changed.
    pub spec: serde_json::Value,
}

/// One task of a service, current or past.
pub struct SwarmTask {
    pub id: String,
    /// What the orchestrator wants of it: `running` for a current task.
    pub desired: String,
    /// The address of the node it runs on.
    pub node: String,
    pub image: String,
    /// `running`, `starting`, `failed`, …
    pub state: String,
    pub error: String,
}

impl Docker {
    /// Tag the built image as `repo:tag`, push it, and return the reference
    /// that pins it: `repo@sha256:…`, the digest the registry stored.
    pub async fn push(&self, image_id: &str, repo: &str, tag: &str) -> Result<String> {
        self.tag(image_id, &format!("{repo}:{tag}")).await?;
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            platform: None,
        };
        let mut stream = self.client.push_image(repo, Some(options), None);
        while let Some(item) = stream.next().await {
            let info = item.with_context(|| format!("push of {repo}:{tag} failed"))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                bail!("push of {repo}:{tag} failed: {e}");
            }
        }
        let image = self.inspect_image(&format!("{repo}:{tag}")).await?;
        let prefix = format!("{repo}@");
        image
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .find(|d| d.starts_with(&prefix))
            .ok_or_else(|| anyhow!("the engine pushed {repo}:{tag} but records no digest for it"))
    }

    /// Whether the engine is a Swarm manager, and if not, what it is.
    pub async fn swarm_manager(&self) -> Result<(), String> {
        let info = self.client.info().await.map_err(|e| e.to_string())?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available == Some(true) {
            return Ok(());
        }
        let state = swarm
            .local_node_state
            .map_or("inactive".to_owned(), |s| s.to_string());
        Err(format!(
            "the engine at {} is not a Swarm manager (its swarm state is {state}): point DOCKER_HOST at a manager, or run `docker swarm init` there",
            self.endpoint.url
        ))
    }

    pub async fn swarm_service(&self, name: &str) -> Result<Option<SwarmService>> {
        let service = match self
            .client
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(s) => s,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let image_of = |spec: Option<&bollard::models::ServiceSpec>| {
            spec.and_then(|s| s.task_template.as_ref())
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.image.clone())
        };
        let status = service.update_status.clone().unwrap_or_default();
        let endpoint_mode = service
            .spec
            .as_ref()
            .and_then(|s| s.endpoint_spec.as_ref())
            .and_then(|e| e.mode);
        let vip = endpoint_mode != Some(bollard::models::EndpointSpecModeEnum::DNSRR);
        Ok(Some(SwarmService {
            image: image_of(service.spec.as_ref()).unwrap_or_default(),
            update_state: status.state.map(|s| s.to_string()).unwrap_or_default(),
            update_message: status.message.unwrap_or_default(),
            vip,
            spec: serde_json::to_value(&service.spec).unwrap_or_default(),
            replicas: service
                .spec
                .and_then(|s| s.mode)
                .and_then(|m| m.replicated)
                .map(|r| r.replicas.unwrap_or(1).max(0) as u64),
        }))
    }

    /// A service's tasks, the ones shut down included (they carry the
    /// errors), with the address of the node each is on.
    pub async fn swarm_tasks(&self, service: &str) -> Result<Vec<SwarmTask>> {
        let nodes: HashMap<String, String> = self
            .client
            .list_nodes(None::<ListNodesOptions>)
            .await?
            .into_iter()
            .filter_map(|n| Some((n.id?, n.status?.addr?)))
            .collect();
        let filters = HashMap::from([("service".to_owned(), vec![service.to_owned()])]);
        let tasks = self
            .client
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await?;
        Ok(tasks
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                let node = t.node_id.unwrap_or_default();
                SwarmTask {
                    id: t.id.unwrap_or_default(),
                    desired: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                    node: nodes.get(&node).cloned().unwrap_or(node),
                    image: t
                        .spec
                        .and_then(|s| s.container_spec)
                        .and_then(|c| c.image)
                        .unwrap_or_default(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    error: status.err.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Wait until every task Swarm wants of the service `name` runs, on
    /// whichever node: a task with a healthcheck counts as running only once
    /// it is healthy. Readiness on a swarm is the orchestrator's, not one
    /// engine's containers. While an update rolls, one running task is
    /// enough: the deploy waits for the update itself, and a step that
    /// routes to the tasks between batches must not wait for the next one
    /// (a task let go is stopped 2 s later, and routing to it then hangs).
    pub async fn wait_tasks_running(&self, name: &str, timeout: Duration) -> Result<()> {
        let start = std::time::Instant::now();
        loop {
            let service = self.swarm_service(name).await?;
            let wanted = service.as_ref().and_then(|s| s.replicas);
            let rolling = service.as_ref().is_some_and(|s| {
                matches!(s.update_state.as_str(), "updating" | "rollback_started")
            });
            let tasks: Vec<SwarmTask> = self
                .swarm_tasks(name)
                .await?
                .into_iter()
                .filter(|t| t.desired == "running")
                .collect();
            let running = tasks.iter().filter(|t| t.state == "running").count();
            let enough = wanted.map_or(running > 0, |w| running as u64 >= w);
            if (enough && running == tasks.len()) || (rolling && running > 0) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                bail!(
                    "swarm service {name} was not ready after {timeout:?}: {running} of {} tasks running",
                    wanted.map_or(tasks.len(), |w| w as usize)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Swarm's own rollback to the service's previous spec, as
    /// `docker service rollback` asks for it.
    pub async fn rollback_service(&self, name: &str) -> Result<()> {
        let service = self
            .client
            .inspect_service(name, None::<InspectServiceOptions>)
            .await?;
        let version = service.version.and_then(|v| v.index).unwrap_or_default();
        let spec = service.spec.unwrap_or_default();
        let options = UpdateServiceOptions {
            version: version as i32,
            rollback: Some("previous".to_owned()),
            ..Default::default()
        };
        self.client
            .update_service(name, spec, options, None)
            .await
            .with_context(|| format!("cannot roll {name} back"))?;
        Ok(())
    }

    /// `docker stack deploy` of the given compose files onto this engine.
    /// The CLI reaches the engine the way this agent did: through the same
    /// DOCKER_HOST, context and TLS settings, which it reads from the
    /// environment too. `env` adds variables for interpolation.
    pub async fn stack_deploy(
        &self,
        stack: &str,
        files: &[&Path],
        env: &[(String, String)],
    ) -> Result<()> {
        let mut command = tokio::process::Command::new("docker");
        command.arg("stack").arg("deploy");
        for file in files {
            command.arg("--compose-file").arg(file);
        }
        command
            .args(["--resolve-image", "never", stack])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let output = command.output().await.map_err(|e| {
            anyhow!(
                "cannot run `docker stack deploy` ({e}): install the docker CLI on this machine"
            )
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!(
                "`docker stack deploy {stack}` failed ({}): {}",
                output.status,
                stderr.trim()
            );
        }
        Ok(())
    }
}
