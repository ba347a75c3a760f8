//! A command run to its end in a container of its own: a surface's build
//! (`surface.<name>.build` with an `image`), so a machine without the
//! build's toolchain still deploys. The directory is mounted at `/src` and
//! the command runs there as the directory's owner, so what it writes stays
//! the user's. The container carries slipway's label alone, not compose's
//! (compose would list it as a service of the project), and is removed
//! however the run ends; one that a killed run left is removed first.

use super::Docker;
use anyhow::{Context as _, Result, bail};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions, LogsOptions};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// Marks a build's container: `<project>.<surface>`.
const BUILD_LABEL: &str = "dev.slipway.build";

/// A command to run in a container.
pub struct Run<'a> {
    /// What the container is for, e.g. the surface: in its name and label.
    pub purpose: &'a str,
    pub image: &'a str,
    pub command: &'a [String],
    /// Mounted at `/src`, the working directory.
    pub dir: &'a Path,
    pub timeout: Duration,
}

impl Docker {
    /// Run to its end, each line of its output handed to `line` as it
    /// comes; returns the exit code. The image is pulled when missing.
    pub async fn run_to_end(&self, run: &Run<'_>, mut line: impl FnMut(String)) -> Result<i64> {
        let label = format!("{}.{}", self.compose.name, run.purpose);
        self.remove_labelled(&label).await?;
        if self.tagged_ago(run.image).await.is_none() {
            line(format!("pulling {}", run.image));
            self.pull(run.image, None)
                .await
                .with_context(|| format!("cannot pull `{}`", run.image))?;
        }
        let name = format!("{label}.build_{}", super::epoch_millis());
        let id = self.create_run(run, &name, &label).await?;
        let ended = async {
            self.client
                .start_container(&id, None)
                .await
                .with_context(|| format!("cannot start {name}"))?;
            self.follow(&id, &mut line).await;
            self.exit_code(&id).await
        };
        let ended = tokio::time::timeout(run.timeout, ended).await;
        let removed = self.remove(&id, &name).await;
        let code = match ended {
            Ok(code) => code?,
            Err(_) => bail!("it ran past {:?} and was killed", run.timeout),
        };
        removed?;
        Ok(code)
    }

    async fn create_run(&self, run: &Run<'_>, name: &str, label: &str) -> Result<String> {
        let dir = run
            .dir
            .canonicalize()
            .with_context(|| format!("cannot find {}", run.dir.display()))?;
        let owner = std::fs::metadata(&dir)
            .map(|m| format!("{}:{}", m.uid(), m.gid()))
            .with_context(|| format!("cannot read {}", dir.display()))?;
        let body = ContainerCreateBody {
            image: Some(run.image.to_owned()),
            cmd: Some(run.command.to_vec()),
            working_dir: Some("/src".into()),
            user: Some(owner),
            // The owner has no home in the image; npm and its kind need one.
            env: Some(vec!["HOME=/tmp".into()]),
            labels: Some(HashMap::from([(BUILD_LABEL.to_owned(), label.to_owned())])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/src", dir.display())]),
                // A kill reaches the command, not a shell that ignores it.
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("cannot create {name} from `{}`", run.image))?;
        Ok(created.id)
    }

    /// Hand each line of the container's output to `line` until it ends.
    async fn follow(&self, id: &str, line: &mut impl FnMut(String)) {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut stream = self.client.logs(id, Some(options));
        let mut partial = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(end) = partial.find('\n') {
                line(partial[..end].trim_end_matches('\r').to_owned());
                partial.drain(..=end);
            }
        }
        if !partial.is_empty() {
            line(partial);
        }
    }

    /// Remove the containers a killed run of the same build left.
    async fn remove_labelled(&self, label: &str) -> Result<()> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{BUILD_LABEL}={label}")])]);
        let left = self
            .client
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .context("cannot list the build containers")?;
        for c in left {
            let id = c.id.unwrap_or_default();
            tracing::warn!("removing the build container {id} a killed run left");
            self.remove(&id, &id).await?;
        }
        Ok(())
    }
}
