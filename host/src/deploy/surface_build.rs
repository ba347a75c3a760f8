//! A surface's own build (`surface.<name>.build`): the command that writes
//! what its steps publish (`npm run build` for a static site), run before
//! any surface changes anything, as compose builds are, and beside them. It is skipped when
//! nothing it reads changed since its last successful run, and a failure
//! stops the deploy with the build's last lines.
//!
//! What it reads: every file under `dir`, by path and content, except the
//! output, `.git`, `node_modules` (its lockfile is read), what `.gitignore`
//! files under `dir` ignore, and the manifest's `exclude` patterns.

use super::Agent;
use super::build::BuildFailed;
use crate::manifest::SurfaceBuild;
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// The last lines of a build's output a failure quotes.
const TAIL: usize = 20;

impl Agent {
    /// Run the builds of `surfaces` that declare one, side by side, each
    /// unless its inputs are those of its last successful run. The first
    /// failure, in the surfaces' order, is the one reported.
    pub(super) async fn build_surfaces(&self, surfaces: &[String]) -> Result<(), BuildFailed> {
        let builds = surfaces.iter().map(|surface| self.build_surface(surface));
        futures_util::future::join_all(builds)
            .await
            .into_iter()
            .collect()
    }

    async fn build_surface(&self, surface: &String) -> Result<(), BuildFailed> {
        let Some(build) = &self.loaded.manifest.surface[surface].build else {
            return Ok(());
        };
        let fail = |message: String| BuildFailed {
            surface: surface.clone(),
            message: format!("surface {surface}: build: {message}"),
        };
        let (digest, unchanged) = self.inputs(surface, build).map_err(fail)?;
        if unchanged {
            tracing::info!(
                "[{surface}] build skipped: nothing under {} changed since its last successful run",
                build.dir.display()
            );
            return Ok(());
        }
        let dir = self.loaded.dir.join(&build.dir);
        self.run_build(surface, build, &dir).await.map_err(fail)?;
        if !self.loaded.dir.join(&build.output).is_dir() {
            return Err(fail(format!(
                "`{}` succeeded but wrote no {}; set `output` to the directory it writes",
                build.command.join(" "),
                build.output.display()
            )));
        }
        let record = self.build_record(surface);
        save_digest(&record, &digest).map_err(|e| {
            fail(format!(
                "cannot record its inputs in {}: {e}",
                record.display()
            ))
        })
    }
}

/// The build's output, line by line: to the log and the progress line, its
/// last lines kept for an error.
struct Output<'a> {
    surface: &'a str,
    task: crate::progress::Task,
    tail: VecDeque<String>,
}

impl Output<'_> {
    fn line(&mut self, line: String) {
        tracing::info!("[{}] build: {line}", self.surface);
        self.task.say(&line);
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Ends the progress line; for a failure, says how it failed.
    fn end(self, argv: &str, ended: Result<Result<(), String>, String>) -> Result<(), String> {
        self.task.end(matches!(ended, Ok(Ok(()))));
        let how = match ended {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(how)) => format!("failed ({how})"),
            Err(why) => return Err(format!("`{argv}`: {why}")),
        };
        let last: Vec<String> = self.tail.into_iter().collect();
        Err(format!(
            "`{argv}` {how}; nothing was deployed. Its last lines:\n  {}",
            last.join("\n  ")
        ))
    }
}

impl Agent {
    /// Run the build, on this machine or in a container of its image.
    async fn run_build(
        &self,
        surface: &str,
        build: &SurfaceBuild,
        dir: &Path,
    ) -> Result<(), String> {
        let argv = build.command.join(" ");
        let mut output = Output {
            surface,
            task: crate::progress::start(format!("{surface}: build {argv}")),
            tail: VecDeque::with_capacity(TAIL),
        };
        let limit = Duration::from_secs(build.timeout_secs);
        let ended = match &build.image {
            None => run_here(build, dir, limit, &mut output).await,
            Some(image) => {
                let docker = self.docker_for(surface)?;
                let run = crate::docker::Run {
                    purpose: surface,
                    image,
                    command: &build.command,
                    dir,
                    timeout: limit,
                };
                let code = docker.run_to_end(&run, |l| output.line(l)).await;
                code.map(|code| {
                    (code == 0)
                        .then_some(())
                        .ok_or(format!("exited with {code}"))
                })
                .map_err(|e| format!("{e:#}"))
            }
        };
        output.end(&argv, ended)
    }
}

impl Agent {
    /// For `plan`: say whether the surface's build would run, and whether
    /// its steps can be planned: not before the build's output exists.
    pub(super) fn plan_build(&self, surface: &str) -> bool {
        let Some(build) = &self.loaded.manifest.surface[surface].build else {
            return true;
        };
        match self.inputs(surface, build) {
            Ok((_, true)) => {
                tracing::info!("[{surface}] build would be skipped: nothing it reads changed");
            }
            Ok((_, false)) => {
                tracing::info!("[{surface}] build would run: `{}`", build.command.join(" "));
            }
            Err(e) => tracing::warn!("[{surface}] build would fail: {e}"),
        }
        if self.loaded.dir.join(&build.output).is_dir() {
            return true;
        }
        tracing::info!(
            "[{surface}] its steps are planned once the build has written {}: `slipway deploy {surface}` builds first",
            build.output.display()
        );
        false
    }

    /// Where the surface's last successful build is recorded.
    fn build_record(&self, surface: &str) -> PathBuf {
        self.loaded
            .state_dir()
            .join("builds")
            .join(format!("{surface}.json"))
    }

    /// The digest of the build's inputs, and whether they are those of its
    /// last successful run, whose output is still there.
    fn inputs(&self, surface: &str, build: &SurfaceBuild) -> Result<(String, bool), String> {
        let output = self.loaded.dir.join(&build.output);
        let digest = inputs_digest(&self.loaded.dir.join(&build.dir), &output, &build.exclude)?;
        let last = last_digest(&self.build_record(surface));
        let unchanged = output.is_dir() && last.as_deref() == Some(digest.as_str());
        Ok((digest, unchanged))
    }
}

/// Run the build on this machine. The outer error is one of running it at
/// all; the inner, how it failed.
async fn run_here(
    build: &SurfaceBuild,
    dir: &Path,
    limit: Duration,
    output: &mut Output<'_>,
) -> Result<Result<(), String>, String> {
    let mut command = tokio::process::Command::new(&build.command[0]);
    command
        .args(&build.command[1..])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run it in {}: {e}", dir.display()))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    for stream in [out.map(boxed), err.map(boxed)].into_iter().flatten() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let streamed = async {
        while let Some(line) = lines.recv().await {
            output.line(line);
        }
        child.wait().await
    };
    match tokio::time::timeout(limit, streamed).await {
        Ok(Ok(status)) if status.success() => Ok(Ok(())),
        Ok(Ok(status)) => Ok(Err(status.to_string())),
        Ok(Err(e)) => Err(format!("could not be waited for: {e}")),
        Err(_) => Ok(Err(format!(
            "ran past {limit:?} and was killed; raise timeout_secs if it needs longer"
        ))),
    }
}

fn boxed(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(stream)
}

/// The XXH3-128 of every input's path and content, in path order.
pub fn inputs_digest(dir: &Path, output: &Path, exclude: &[String]) -> Result<String, String> {
    use ignore::overrides::OverrideBuilder;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let mut rules = OverrideBuilder::new(dir);
    let skipped = ["!.git/", "!node_modules/"];
    let mut patterns: Vec<String> = skipped.iter().map(|s| s.to_string()).collect();
    patterns.extend(exclude.iter().map(|p| format!("!{p}")));
    for pattern in &patterns {
        rules
            .add(pattern)
            .map_err(|e| format!("bad exclude pattern `{pattern}`: {e}"))?;
    }
    let rules = rules.build().map_err(|e| e.to_string())?;
    let output = output.canonicalize().ok();
    let walker = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .git_ignore(true)
        .require_git(false)
        .hidden(false)
        .overrides(rules)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |e| output.is_none() || e.path().canonicalize().ok() != output)
        .build();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 64 * 1024];
    for entry in walker {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update(b"\0");
        let mut file = std::fs::File::open(entry.path())
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hasher.update(b"\0");
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

fn last_digest(record: &Path) -> Option<String> {
    let text = std::fs::read_to_string(record).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["inputs"].as_str().map(str::to_owned)
}

fn save_digest(record: &Path, digest: &str) -> std::io::Result<()> {
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::json!({ "inputs": digest, "at": crate::journal::now() });
    crate::state::write_atomic(record, json.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) -> std::path::PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn inputs_are_the_sources_not_the_output_dependencies_or_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "src/pages/index.astro", "<h1>hi</h1>");
        write(root, "package-lock.json", "{}");
        write(root, ".gitignore", "*.log\n");
        let output = root.join("dist");
        let digest = || inputs_digest(root, &output, &["drafts/".into()]).unwrap();
        let first = digest();
        // Neither the output, dependencies, git, ignored nor excluded files.
        write(root, "dist/index.html", "built");
        write(root, "node_modules/astro/index.js", "x");
        write(root, ".git/HEAD", "ref");
        write(root, "debug.log", "noise");
        write(root, "drafts/next.md", "wip");
        assert_eq!(digest(), first);
        // Every source, by content and by name.
        write(root, "src/pages/index.astro", "<h1>hello</h1>");
        let edited = digest();
        assert_ne!(edited, first);
        std::fs::rename(
            root.join("src/pages/index.astro"),
            root.join("src/pages/home.astro"),
        )
        .unwrap();
        assert_ne!(digest(), edited);
        write(root, "package-lock.json", "{\"v\":2}");
        assert_ne!(digest(), edited);
        assert!(inputs_digest(&root.join("missing"), &output, &[]).is_err());
        assert!(inputs_digest(root, &output, &["[".into()]).is_err());
    }
}
