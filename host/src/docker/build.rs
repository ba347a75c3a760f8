//! Building a deploy's images (rule 1's "the images just built"). Services
//! whose compose `build:` is the same (context, Dockerfile, args, target)
//! share one build, tagged as compose tags each of them. The build runs
//! under BuildKit where the engine has it, else under the classic builder,
//! and streams its steps to the progress line.

use super::{Docker, PROJECT_LABEL, SERVICE_LABEL, tail};
use crate::compose::{BuildDef, ComposeProject};
use crate::progress::Task;
use anyhow::{Context as _, Result, anyhow, bail};
use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

/// The builder that ran a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    BuildKit,
    Classic,
}

impl Builder {
    pub fn name(self) -> &'static str {
        match self {
            Builder::BuildKit => "buildkit",
            Builder::Classic => "classic",
        }
    }
}

/// What the engine's builder is known to be, learnt on the first build:
/// one failed BuildKit session is enough to stop asking.
#[derive(Default)]
pub(super) struct BuilderChoice(AtomicU8);

const UNKNOWN: u8 = 0;
const BUILDKIT: u8 = 1;
const CLASSIC: u8 = 2;

impl BuilderChoice {
    /// BuildKit unless `DOCKER_BUILDKIT=0` asks for the classic builder, as
    /// it does of the docker CLI, or the engine turned out not to have it.
    fn get(&self) -> Builder {
        let off = std::env::var("DOCKER_BUILDKIT").is_ok_and(|v| v == "0" || v == "false");
        match (off, self.0.load(Ordering::Relaxed)) {
            (true, _) | (_, CLASSIC) => Builder::Classic,
            _ => Builder::BuildKit,
        }
    }

    fn set(&self, builder: Builder) {
        let value = match builder {
            Builder::BuildKit => BUILDKIT,
            Builder::Classic => CLASSIC,
        };
        let _ = self
            .0
            .compare_exchange(UNKNOWN, value, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// An image built for a deploy.
#[derive(Debug, Clone)]
pub struct Built {
    pub image_id: String,
    pub builder: Builder,
}

/// The services that share each distinct build, in first-seen order.
/// Services without `build:` (they run a pulled image) are left out.
pub fn shared_builds(compose: &ComposeProject, services: &[String]) -> Vec<Vec<String>> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for service in services {
        let Some(build) = compose.service(service).and_then(|s| s.build.as_ref()) else {
            continue;
        };
        let key = build_key(build);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) if members.contains(service) => {}
            Some((_, members)) => members.push(service.clone()),
            None => groups.push((key, vec![service.clone()])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// Two builds with the same key produce the same image.
fn build_key(build: &BuildDef) -> String {
    let mut args: Vec<_> = build.args.iter().collect();
    args.sort();
    format!(
        "{:?}",
        (
            &build.context,
            &build.dockerfile,
            args,
            &build.target,
            &build.platform
        )
    )
}

/// Whether a build's stream broke off, rather than the build failing.
fn broke_off(e: &anyhow::Error) -> bool {
    use bollard::errors::Error as B;
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<B>(),
            Some(B::IOError { .. } | B::HyperResponseError { .. })
        )
    })
}

/// Why a build failed: the build itself, or the engine could not run a
/// BuildKit session at all (so the classic builder should try).
enum Failure {
    Build(anyhow::Error),
    NoBuildKit(String),
}

impl Docker {
    /// The builder the next build will use.
    pub fn builder(&self) -> Builder {
        self.builder.get()
    }

    /// Build the image of `services`, which share one build definition,
    /// once, honouring `.dockerignore`, and tag it as compose tags each of
    /// them. Returns the image ID and the builder that ran.
    pub async fn build(&self, services: &[String], task: &Task) -> Result<Built> {
        let first = services
            .first()
            .ok_or_else(|| anyhow!("a build needs a service"))?;
        let build = self
            .compose
            .service(first)
            .and_then(|s| s.build.clone())
            .ok_or_else(|| {
                anyhow!(
                    "service `{first}` has no `build:` in the compose file; it runs a pulled image"
                )
            })?;
        let mut tags = Vec::new();
        for service in services {
            tags.push(self.image_tag(service)?);
        }
        let (context, dockerfile) = (build.context.clone(), build.dockerfile.clone());
        let tar = tokio::task::spawn_blocking(move || context_tar(&context, &dockerfile))
            .await
            .context("tar task panicked")??;
        let mut builder = self.builder.get();
        let outcome = match self
            .run_build(builder, &build, first, &tags[0], &tar, task)
            .await
        {
            Err(Failure::NoBuildKit(why)) => {
                tracing::warn!(
                    "the engine cannot run a BuildKit build ({why}); building with the classic builder"
                );
                self.builder.set(Builder::Classic);
                builder = Builder::Classic;
                self.run_build(builder, &build, first, &tags[0], &tar, task)
                    .await
            }
            // The engine's answer broke off mid-stream (seen here as "bytes
            // remaining on stream" under load): the build itself did not
            // fail, and building again is cheap from its cache.
            Err(Failure::Build(e)) if broke_off(&e) => {
                tracing::warn!("{e:#}; building `{}` again", tags[0]);
                self.run_build(builder, &build, first, &tags[0], &tar, task)
                    .await
            }
            other => other,
        };
        match outcome {
            Ok(()) => self.builder.set(builder),
            Err(Failure::Build(e)) => return Err(e),
            Err(Failure::NoBuildKit(why)) => bail!("building `{}` failed: {why}", tags[0]),
        }
        let image_id = self.image_id(&tags[0]).await?;
        for tag in &tags[1..] {
            self.tag(&image_id, tag).await?;
        }
        Ok(Built { image_id, builder })
    }

    async fn run_build(
        &self,
        builder: Builder,
        build: &BuildDef,
        service: &str,
        tag: &str,
        tar: &[u8],
        task: &Task,
    ) -> Result<(), Failure> {
        let mut options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(tag.to_owned()),
            rm: true,
            forcerm: true,
            buildargs: Some(build.args.clone()),
            target: build.target.clone().unwrap_or_default(),
            platform: build.platform.clone().unwrap_or_default(),
            labels: Some(HashMap::from([
                (PROJECT_LABEL.to_owned(), self.compose.name.clone()),
                (SERVICE_LABEL.to_owned(), service.to_owned()),
            ])),
            ..Default::default()
        };
        if builder == Builder::BuildKit {
            options.version = BuilderVersion::BuilderBuildKit;
            options.session = Some(format!("slipway-{}-{}", std::process::id(), tag));
        }
        let body = bollard::body_full(tar.to_vec().into());
        let mut stream = self.client.build_image(options, None, Some(body));
        let mut log = String::new();
        let mut heard_buildkit = false;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(Failure::Build(anyhow!(
                        "building `{tag}` failed: {error}\n{}",
                        tail(&log, 20)
                    )));
                }
                // Nothing of a BuildKit build came back: the engine has no
                // BuildKit, or no session could be set up.
                Err(e) if builder == Builder::BuildKit && !heard_buildkit => {
                    return Err(Failure::NoBuildKit(e.to_string()));
                }
                Err(e) => {
                    return Err(Failure::Build(
                        anyhow!(e).context(format!("building `{tag}` failed")),
                    ));
                }
            };
            heard_buildkit |= matches!(info.aux, Some(BuildInfoAux::BuildKit(_)));
            for line in output_lines(&info) {
                tracing::debug!("build {service}: {line}");
                task.say(&line);
                log.push_str(&line);
                log.push('\n');
            }
        }
        Ok(())
    }
}

/// The human-readable lines of one message of a build's stream: the
/// classic builder's `stream`, BuildKit's steps as they start and their
/// output.
fn output_lines(info: &BuildInfo) -> Vec<String> {
    let mut lines: Vec<String> = info
        .stream
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(BuildInfoAux::BuildKit(status)) = &info.aux {
        for vertex in &status.vertexes {
            if vertex.started.is_some() && vertex.completed.is_none() {
                lines.push(vertex.name.clone());
            }
            if !vertex.error.is_empty() {
                lines.push(format!("{}: {}", vertex.name, vertex.error));
            }
        }
        for entry in &status.logs {
            let text = String::from_utf8_lossy(&entry.msg);
            lines.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned),
            );
        }
    }
    lines
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

    fn project(yaml: &str) -> (tempfile::TempDir, ComposeProject) {
        let dir = tempfile::tempdir().unwrap();
        for context in ["backend", "web"] {
            std::fs::create_dir_all(dir.path().join(context)).unwrap();
        }
        std::fs::write(dir.path().join("docker-compose.yml"), yaml).unwrap();
        let files = [dir.path().join("docker-compose.yml")];
        let project =
            ComposeProject::load(&files, "p", &crate::compose::LoadOptions::default()).unwrap();
        (dir, project)
    }

    #[test]
    fn services_with_the_same_build_share_one() {
        let (_dir, compose) = project(
            "x-python: &python\n  build: ./backend\n  image: p/backend\n\
             services:\n  api:\n    <<: *python\n    command: [api]\n  bot:\n    <<: *python\n\
             \x20 beat:\n    build: {context: ./backend}\n\
             \x20 tuned:\n    build: {context: ./backend, args: {MODE: fast}}\n\
             \x20 web:\n    build: ./web\n  redis:\n    image: redis\n",
        );
        let all: Vec<String> = ["api", "bot", "beat", "tuned", "web", "redis", "api"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            shared_builds(&compose, &all),
            vec![
                vec!["api".to_owned(), "bot".into(), "beat".into()],
                vec!["tuned".to_owned()],
                vec!["web".to_owned()],
            ]
        );
    }

    #[test]
    fn a_builder_once_known_is_kept() {
        let choice = BuilderChoice::default();
        choice.set(Builder::Classic);
        assert_eq!(choice.get(), Builder::Classic);
        // Once known, the engine's builder does not change within a run.
        choice.set(Builder::BuildKit);
        assert_eq!(choice.get(), Builder::Classic);
    }
}
