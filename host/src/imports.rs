//! The host side of the WIT imports. Every function checks the step's grants
//! first; a refusal is returned to the plugin as `err`, never a trap.

use crate::bindings::slipway::plugin::{docker, log, probe, state, types};
use crate::docker::{ContainerInfo, Docker};
use crate::grants::{DockerOp, http_target};
use crate::sandbox::Sandbox;
use std::time::Duration;

impl Sandbox {
    fn docker(&mut self, op: DockerOp, service: &str) -> Result<&Docker, String> {
        self.grants.check_docker(op, service)?;
        self.effects.record(op, service);
        self.services
            .docker
            .as_deref()
            .ok_or_else(|| "no Docker engine is connected to this run".to_owned())
    }
}

fn err(e: anyhow::Error) -> String {
    format!("{e:#}")
}

impl From<ContainerInfo> for docker::Container {
    fn from(c: ContainerInfo) -> Self {
        docker::Container {
            id: c.id,
            name: c.name,
            service: c.service,
            image_id: c.image_id,
            state: c.state,
            health: c.health,
            networks: c
                .networks
                .into_iter()
                .map(|n| docker::NetworkAttachment {
                    network: n.network,
                    ip_address: n.ip_address,
                    aliases: n.aliases,
                })
                .collect(),
        }
    }
}

impl types::Host for Sandbox {}

impl docker::Host for Sandbox {
    async fn inspect(&mut self, service: String) -> Result<Vec<docker::Container>, String> {
        let d = self.docker(DockerOp::Inspect, &service)?;
        let containers = d.containers(&service).await.map_err(err)?;
        Ok(containers.into_iter().map(Into::into).collect())
    }

    async fn build(&mut self, service: String) -> Result<String, String> {
        let d = self.docker(DockerOp::Build, &service)?;
        d.build(&service).await.map_err(err)
    }

    async fn recreate(&mut self, service: String) -> Result<docker::Container, String> {
        let d = self.docker(DockerOp::Recreate, &service)?;
        d.recreate(&service).await.map(Into::into).map_err(err)
    }

    async fn start_replacement(&mut self, service: String) -> Result<docker::Container, String> {
        let d = self.docker(DockerOp::StartReplacement, &service)?;
        d.start_replacement(&service)
            .await
            .map(Into::into)
            .map_err(err)
    }

    async fn retire(&mut self, service: String, keep: String) -> Result<(), String> {
        let d = self.docker(DockerOp::Retire, &service)?;
        d.retire(&service, &keep).await.map_err(err)
    }

    async fn discard(&mut self, service: String, container: String) -> Result<(), String> {
        let d = self.docker(DockerOp::Discard, &service)?;
        d.discard(&service, &container).await.map_err(err)
    }

    async fn restart(&mut self, service: String) -> Result<(), String> {
        let d = self.docker(DockerOp::Restart, &service)?;
        d.restart(&service).await.map_err(err)
    }

    async fn signal(&mut self, service: String, signal: String) -> Result<(), String> {
        let d = self.docker(DockerOp::Signal, &service)?;
        d.signal(&service, &signal).await.map_err(err)
    }

    async fn exec(
        &mut self,
        service: String,
        command: Vec<String>,
    ) -> Result<docker::ExecOutput, String> {
        self.grants.check_exec(&service, &command)?;
        let d = self.docker(DockerOp::Exec, &service)?;
        let out = d.exec(&service, &command).await.map_err(err)?;
        Ok(docker::ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn wait_ready(&mut self, service: String, timeout_ms: u32) -> Result<(), String> {
        let d = self.docker(DockerOp::WaitReady, &service)?;
        d.wait_ready(
            &service,
            Duration::from_millis(timeout_ms.into()),
            Duration::ZERO,
        )
        .await
        .map_err(err)
    }
}

impl probe::Host for Sandbox {
    async fn http_get(
        &mut self,
        url: String,
        timeout_ms: u32,
    ) -> Result<probe::HttpResponse, String> {
        self.http(url, None, timeout_ms).await
    }

    async fn http_post(
        &mut self,
        url: String,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> Result<probe::HttpResponse, String> {
        if self.grants.read_only {
            return Err("HTTP POST is refused during `slipway plan`, which changes nothing".into());
        }
        self.http(url, Some(body), timeout_ms).await
    }

    async fn tcp_connect(
        &mut self,
        host: String,
        port: u16,
        timeout_ms: u32,
    ) -> Result<(), String> {
        self.grants.check_probe(&host, port)?;
        let timeout = Duration::from_millis(timeout_ms.into());
        crate::probe::tcp_connect(self.services.docker.as_deref(), &host, port, timeout)
            .await
            .map_err(err)
    }

    async fn resolve(&mut self, host: String) -> Result<Vec<String>, String> {
        self.grants.check_resolve(&host)?;
        let addrs = crate::probe::resolve(self.services.docker.as_deref(), &host)
            .await
            .map_err(err)?;
        Ok(addrs.into_iter().map(|a| a.to_string()).collect())
    }
}

impl Sandbox {
    async fn http(
        &mut self,
        url: String,
        body: Option<Vec<u8>>,
        timeout_ms: u32,
    ) -> Result<probe::HttpResponse, String> {
        let target = http_target(&url)?;
        self.grants.check_probe(&target.host, target.port)?;
        let timeout = Duration::from_millis(timeout_ms.into());
        let r = crate::probe::http(self.services.docker.as_deref(), &url, body, timeout)
            .await
            .map_err(err)?;
        Ok(probe::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }
}

impl log::Host for Sandbox {
    async fn log(&mut self, level: log::Level, message: String) {
        let who = &self.caller;
        match level {
            log::Level::Debug => tracing::debug!("{who}: {message}"),
            log::Level::Info => tracing::info!("{who}: {message}"),
            log::Level::Warn => tracing::warn!("{who}: {message}"),
            log::Level::Error => tracing::error!("{who}: {message}"),
        }
    }
}

impl state::Host for Sandbox {
    async fn get(&mut self, key: String) -> Option<String> {
        self.state.get(&key)
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), String> {
        if !self.state.set(key.clone(), value) {
            return Err(format!(
                "state value for `{key}` refused: over the size limit"
            ));
        }
        self.persist_state();
        Ok(())
    }

    async fn delete(&mut self, key: String) {
        self.state.delete(&key);
        self.persist_state();
    }
}

impl Sandbox {
    /// Each write reaches the disk before the plugin goes on, so what a
    /// plugin recorded (e.g. the include files it is about to pin) survives
    /// the agent being killed mid-call. A plan's writes are never kept.
    fn persist_state(&mut self) {
        if self.grants.read_only {
            return;
        }
        if let Err(e) = self.state.save() {
            tracing::warn!("{}: cannot save plugin state: {e:#}", self.caller);
        }
    }
}
