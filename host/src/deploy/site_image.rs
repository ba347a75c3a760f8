//! Rule 4 on a swarm (docs/swarm.md): the nginx tasks that serve a static
//! site run on other nodes than the directory a step publishes releases
//! into, so the live release ships as an image, the service's compose image
//! plus the release at `site_image.path`, pinned by digest like any build.
//!
//! While Swarm rolls the tasks, some serve the old index and some the new,
//! and a page from one may ask another for an asset. So a new release goes
//! out in two updates: first the served release with the new release's
//! added files next to it (the *stage*), then the new release, which holds
//! the old hashed assets its steps carried over. Every task then has every
//! file that any page a task serves refers to.
//!
//! What a service serves is read back from its image's tag,
//! `site-<release>[-over-<served>]-on-<base>`: the running spec decides,
//! and a deploy cut off after the stage finishes the job when rerun.

use super::{Agent, Pass, Stop, build::Images, host_outputs};
use crate::docker::{Docker, SwarmService};
use crate::manifest::SiteImage;
use crate::report::SurfaceReport;
use crate::runtime::Phase;
use crate::text::short_id;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one site image holds, as its tag spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shipped {
    /// The release whose files are all there.
    release: String,
    /// For a stage: the release whose pages it serves, the new release's
    /// added files next to them.
    over: Option<String>,
    /// The base image's short ID: a new server is a new image too.
    base: String,
}

impl Shipped {
    fn tag(&self) -> String {
        match &self.over {
            Some(over) => format!("site-{}-over-{over}-on-{}", self.release, self.base),
            None => format!("site-{}-on-{}", self.release, self.base),
        }
    }

    /// The site image a service's image reference (`repo:tag@sha256:…`)
    /// names, if it is one.
    fn of(reference: &str) -> Option<Shipped> {
        let name = reference.split('@').next()?;
        let (_, tag) = name.rsplit_once(':').filter(|(_, t)| !t.contains('/'))?;
        let (held, base) = tag.strip_prefix("site-")?.rsplit_once("-on-")?;
        let (release, over) = match held.split_once("-over-") {
            Some((release, over)) => (release, Some(over.to_owned())),
            None => (held, None),
        };
        Some(Shipped {
            release: release.to_owned(),
            over,
            base: base.to_owned(),
        })
    }

    /// The release whose pages the image serves.
    fn pages(&self) -> &str {
        self.over.as_deref().unwrap_or(&self.release)
    }
}

impl Agent {
    /// A site surface's deploy: the steps that publish into the site's
    /// directory apply, the live release ships to the service, the other
    /// steps apply (nginx now reaches the new tasks), and all verify. A
    /// failed update or verify rolls the applied steps back; after a failed
    /// verify, what they put back ships again.
    pub(super) async fn ship_site_surface(
        &self,
        name: &str,
        images: &Images,
        report: &mut SurfaceReport,
    ) -> Result<(), Stop> {
        let surface = &self.loaded.manifest.surface[name];
        let site = surface.site_image.as_ref().expect("a site surface");
        let (publish, rest): (Vec<usize>, Vec<usize>) =
            (0..surface.step.len()).partition(|&i| site.published_by(&surface.step[i]));
        let all: Vec<usize> = (0..surface.step.len()).collect();
        let mut outputs = host_outputs(&surface.services.join(","), "", "", "", "");
        let mut applied = Vec::new();
        let apply = |steps, touched| Pass {
            steps,
            phases: &[Phase::Apply],
            touched,
        };
        self.run_phases(
            name,
            &apply(&publish, false),
            &mut outputs,
            report,
            &mut applied,
        )
        .await?;
        match self.converge_stack(name, false, images, report).await {
            Ok(host) => outputs.extend(host),
            Err(stop) => {
                self.roll_back(name, &applied, &outputs, report).await;
                return Err(stop);
            }
        }
        let mut finished = self
            .run_phases(
                name,
                &apply(&rest, true),
                &mut outputs,
                report,
                &mut applied,
            )
            .await;
        if finished.is_ok() {
            let verify = Pass {
                steps: &all,
                phases: &[Phase::Verify],
                touched: true,
            };
            finished = self
                .run_phases(name, &verify, &mut outputs, report, &mut applied)
                .await;
        }
        let Err(stop) = finished else {
            return Ok(());
        };
        let mut scratch = SurfaceReport::new(name, "");
        let back = match self.converge_stack(name, false, images, &mut scratch).await {
            Ok(_) => format!("{} serves the release the steps put back", site.service),
            Err(e) => format!(
                "shipping the release the steps put back failed: {}",
                e.message()
            ),
        };
        Err(Stop::Failed(format!("{}; {back}", stop.message())))
    }

    /// Ship the site's live release to its service: roll the stage out
    /// first when a release it replaces still serves, then return the
    /// reference of the release's own image, for the stack deploy to pin.
    /// Returns None when the service already serves it on this base.
    pub(super) async fn ship_site(
        &self,
        docker: &Docker,
        surface: &str,
        images: &Images,
        running: Option<&SwarmService>,
        report: &mut SurfaceReport,
    ) -> Result<Option<String>, Stop> {
        let site = self.loaded.manifest.surface[surface]
            .site_image
            .as_ref()
            .expect("ship_site runs for a surface with a site_image");
        let fail = |m: String| Stop::Failed(format!("surface {surface}: site_image: {m}"));
        let root = self.loaded.dir.join(&site.site);
        let live = live_release(&root).map_err(fail)?;
        let base = self.site_base(docker, site, images).await.map_err(fail)?;
        let served = running.and_then(|s| Shipped::of(&s.image));
        let wanted = Shipped {
            release: live.clone(),
            over: None,
            base: short_id(&base).to_owned(),
        };
        if served.as_ref() == Some(&wanted) {
            tracing::info!("[{surface}] {}: serves release {live}", site.service);
            return Ok(None);
        }
        let pages = served.as_ref().map(|s| s.pages().to_owned());
        let stage = match pages {
            Some(pages) if pages != live && root.join("releases").join(&pages).is_dir() => {
                Some(Shipped {
                    over: Some(pages),
                    ..wanted.clone()
                })
            }
            Some(pages) if pages != live => {
                tracing::warn!(
                    "[{surface}] {}: the served release {pages} is no longer under {}; shipping {live} in one update",
                    site.service,
                    root.display()
                );
                None
            }
            _ => None,
        };
        if let Some(stage) = stage.filter(|s| served.as_ref() != Some(s)) {
            let files = stage_files(&root, &stage, &site.path).map_err(fail)?;
            let reference = self
                .commit_site(docker, surface, site, &base, &stage, files)
                .await?;
            tracing::info!(
                "[{surface}] {}: stage: release {live}'s new files next to {}",
                site.service,
                stage.pages()
            );
            self.roll_one(docker, surface, &site.service, &reference, images, report)
                .await?;
        }
        let files = release_files(&root, &live, &site.path).map_err(fail)?;
        self.commit_site(docker, surface, site, &base, &wanted, files)
            .await
            .map(Some)
    }

    /// The image the release is added to: the one this run built for the
    /// service, or its compose image, as the manager has it.
    async fn site_base(
        &self,
        docker: &Docker,
        site: &SiteImage,
        images: &Images,
    ) -> Result<String, String> {
        if let Some(built) = images.image(&site.service) {
            return Ok(built.to_owned());
        }
        let def = &self.loaded.compose.services[&site.service];
        let image = def.image.as_deref().ok_or_else(|| {
            format!(
                "service {} has neither a build nor an image to add the release to",
                site.service
            )
        })?;
        docker.image_id(image).await.map_err(|e| {
            format!("{e:#}; the manager needs {image} to add the release to: pull it there")
        })
    }

    /// Commit the files onto the base as the shipped image's tag and push
    /// it; returns `repo:tag@sha256:…`.
    async fn commit_site(
        &self,
        docker: &Docker,
        surface: &str,
        site: &SiteImage,
        base: &str,
        shipped: &Shipped,
        files: crate::docker::Files,
    ) -> Result<String, Stop> {
        let project = &self.loaded.manifest.project;
        let registry = project.registry.as_deref().unwrap_or_default();
        let repo = format!("{registry}/{}/{}", project.name, site.service);
        let tag = shipped.tag();
        let count = files.len();
        let name = format!("slipway-site-{}-{}", project.name, site.service);
        let image = docker
            .commit_files(base, files, &name, (&repo, &tag))
            .await
            .map_err(|e| {
                Stop::Failed(format!(
                    "surface {surface}: site_image: cannot add the release to {}: {e:#}; nothing was updated",
                    short_id(base)
                ))
            })?;
        tracing::info!("[{surface}] {}: {repo}:{tag}, {count} files", site.service);
        let pushed = self
            .push(docker, surface, &site.service, &image, &tag)
            .await?;
        let digest = pushed.rsplit_once('@').map_or("", |(_, d)| d);
        Ok(format!("{repo}:{tag}@{digest}"))
    }
}

/// The release `<root>/current` points to (`releases/<id>`, as the SDK's
/// `release` module lays a site out).
fn live_release(root: &Path) -> Result<String, String> {
    let current = root.join("current");
    let target = std::fs::read_link(&current).map_err(|e| {
        format!(
            "cannot read {} ({e}): no step published a release there",
            current.display()
        )
    })?;
    let target = target.to_string_lossy();
    let id = target
        .strip_prefix("releases/")
        .filter(|id| !id.is_empty() && id.len() <= 48)
        .filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric() || "_.".contains(c) || c == '-'))
        .ok_or_else(|| {
            format!(
                "{} points to `{target}`, not to releases/<id> with an id of at most 48 letters, digits, `-`, `_` and `.`",
                current.display()
            )
        })?;
    Ok(id.to_owned())
}

/// Every file of one release, at its path in the image.
fn release_files(root: &Path, id: &str, path: &str) -> Result<crate::docker::Files, String> {
    let files = walk(&root.join("releases").join(id))?;
    Ok(in_image(path, files))
}

/// The served release's files, and the new release's files it lacks.
fn stage_files(root: &Path, stage: &Shipped, path: &str) -> Result<crate::docker::Files, String> {
    let releases = root.join("releases");
    let mut files = walk(&releases.join(stage.pages()))?;
    for (rel, from) in walk(&releases.join(&stage.release))? {
        files.entry(rel).or_insert(from);
    }
    Ok(in_image(path, files))
}

fn in_image(path: &str, files: BTreeMap<String, PathBuf>) -> crate::docker::Files {
    let path = path.trim_end_matches('/');
    files
        .into_iter()
        .map(|(rel, from)| (format!("{path}/{rel}"), from))
        .collect()
}

/// The files and symlinks under `dir`, by `/`-separated relative path.
fn walk(dir: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        let entries =
            std::fs::read_dir(&at).map_err(|e| format!("cannot list {}: {e}", at.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", at.display()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // Not followed: a symlink is shipped as one.
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let rel = rel.to_string_lossy().replace('\\', "/");
            files.insert(rel, path);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_image_tag_reads_back_as_what_it_holds() {
        let stage = Shipped {
            release: "20261205T220000Z-abcdef012345".into(),
            over: Some("20261204T100000Z-0123456789ab".into()),
            base: "c733478d9ec2".into(),
        };
        let live = Shipped {
            over: None,
            ..stage.clone()
        };
        for shipped in [&stage, &live] {
            let reference = format!("10.0.0.1:5000/p/website:{}@sha256:beef", shipped.tag());
            assert_eq!(Shipped::of(&reference).as_ref(), Some(shipped));
        }
        assert_eq!(stage.pages(), "20261204T100000Z-0123456789ab");
        assert_eq!(live.pages(), "20261205T220000Z-abcdef012345");
        assert!(
            stage.tag().len() <= 128,
            "a Docker tag is at most 128 characters"
        );
        for other in [
            "10.0.0.1:5000/p/website@sha256:beef",
            "slipway-test/nginx:latest",
            "10.0.0.1:5000/p/website:1.2@sha256:beef",
        ] {
            assert_eq!(Shipped::of(other), None, "{other}");
        }
    }

    #[test]
    fn a_stage_serves_the_old_pages_with_every_new_file_next_to_them() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = root.path().join("releases").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("old/index.html", "old");
        write("old/_astro/a.css", "a");
        write("new/index.html", "new");
        write("new/_astro/a.css", "a");
        write("new/_astro/b.css", "b");
        let stage = Shipped {
            release: "new".into(),
            over: Some("old".into()),
            base: "base".into(),
        };
        let files = stage_files(root.path(), &stage, "/srv/site/").unwrap();
        let shown: Vec<(String, String)> = files
            .iter()
            .map(|(at, from)| (at.clone(), std::fs::read_to_string(from).unwrap()))
            .collect();
        assert_eq!(
            shown,
            [
                ("/srv/site/_astro/a.css".into(), "a".into()),
                ("/srv/site/_astro/b.css".into(), "b".into()),
                ("/srv/site/index.html".into(), "old".into()),
            ]
        );
    }

    #[test]
    fn the_live_release_is_read_from_current_and_its_id_must_make_a_tag() {
        let root = tempfile::tempdir().unwrap();
        let current = root.path().join("current");
        assert!(
            live_release(root.path())
                .unwrap_err()
                .contains("no step published")
        );
        std::os::unix::fs::symlink("releases/20261205T220000Z-abc", &current).unwrap();
        assert_eq!(live_release(root.path()).unwrap(), "20261205T220000Z-abc");
        for bad in ["elsewhere/x", "releases/a b", "releases/"] {
            std::fs::remove_file(&current).unwrap();
            std::os::unix::fs::symlink(bad, &current).unwrap();
            assert!(live_release(root.path()).is_err(), "{bad}");
        }
    }
}
