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
//! file that any page a task serves refers to. With `last` (a service
//! worker), the release but those files goes out in between: a new worker's
//! install reads what it caches from any task, and every task then serves
//! the new bundle.
//!
//! What a service serves is read back from its image's tag,
//! `site-<release>[-over-|-hold-<served>]-on-<base>`: the running spec
//! decides, and a deploy cut off between updates resumes when rerun.

use super::{Agent, Pass, Stop, build::Images, host_outputs};
use crate::bindings::Output;
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
    /// The release being shipped.
    release: String,
    held: Held,
    /// The base image's short ID: a new server is a new image too.
    base: String,
}

/// How much of the release a site image serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    /// All of it.
    Live,
    /// The stage: this served release, with the release's added files
    /// (but its `last` ones) next to it.
    Over(String),
    /// All of it but the `last` files, which are still this release's.
    Holding(String),
}

impl Shipped {
    fn tag(&self) -> String {
        let (release, base) = (&self.release, &self.base);
        match &self.held {
            Held::Live => format!("site-{release}-on-{base}"),
            Held::Over(pages) => format!("site-{release}-over-{pages}-on-{base}"),
            Held::Holding(last) => format!("site-{release}-hold-{last}-on-{base}"),
        }
    }

    /// The site image a service's image reference (`repo:tag@sha256:…`)
    /// names, if it is one.
    fn of(reference: &str) -> Option<Shipped> {
        let name = reference.split('@').next()?;
        let (_, tag) = name.rsplit_once(':').filter(|(_, t)| !t.contains('/'))?;
        let (held, base) = tag.strip_prefix("site-")?.rsplit_once("-on-")?;
        let (release, held) = if let Some((release, pages)) = held.split_once("-over-") {
            (release, Held::Over(pages.to_owned()))
        } else if let Some((release, last)) = held.split_once("-hold-") {
            (release, Held::Holding(last.to_owned()))
        } else {
            (held, Held::Live)
        };
        Some(Shipped {
            release: release.to_owned(),
            held,
            base: base.to_owned(),
        })
    }

    /// The release whose pages the image serves.
    fn pages(&self) -> &str {
        match &self.held {
            Held::Over(pages) => pages,
            Held::Live | Held::Holding(_) => &self.release,
        }
    }

    /// The release whose `last` files the image serves.
    fn last(&self) -> &str {
        match &self.held {
            Held::Over(last) | Held::Holding(last) => last,
            Held::Live => &self.release,
        }
    }

    fn with(&self, held: Held) -> Shipped {
        Shipped {
            held,
            ..self.clone()
        }
    }
}

/// The updates that ship `wanted` (a live image) to a service that serves
/// `served`, in order, ending with `wanted`; empty when it serves it
/// already. An update that adds nothing, or that a run cut off already
/// made, is left out, and so is one whose served release is gone.
fn updates(
    releases: &Path,
    served: Option<&Shipped>,
    wanted: &Shipped,
    last: &[String],
) -> Result<Vec<Shipped>, String> {
    if served == Some(wanted) {
        return Ok(Vec::new());
    }
    let mut updates = Vec::new();
    let kept = |id: &str| id != wanted.release && releases.join(id).is_dir();
    if let Some(pages) = served.map(Shipped::pages).filter(|p| kept(p)) {
        let stage = wanted.with(Held::Over(pages.to_owned()));
        if served != Some(&stage) && self::stage(releases, &stage, last)?.1 > 0 {
            updates.push(stage);
        }
    }
    if let Some(old) = served.map(Shipped::last).filter(|l| kept(l)) {
        let holding = wanted.with(Held::Holding(old.to_owned()));
        if served != Some(&holding) && lasts_differ(releases, old, &wanted.release, last) {
            updates.push(holding);
        }
    }
    updates.push(wanted.clone());
    Ok(updates)
}

/// The stage: the served release's files, and the release's files it
/// lacks but its `last` ones. Returns the stage and how many it adds.
fn stage(
    releases: &Path,
    stage: &Shipped,
    last: &[String],
) -> Result<(BTreeMap<String, PathBuf>, usize), String> {
    let mut files = walk(&releases.join(stage.pages()))?;
    let served = files.len();
    for (rel, from) in walk(&releases.join(&stage.release))? {
        if !last.contains(&rel) {
            files.entry(rel).or_insert(from);
        }
    }
    let added = files.len() - served;
    Ok((files, added))
}

/// Whether a `last` file's bytes differ from one release to the other.
fn lasts_differ(releases: &Path, a: &str, b: &str, last: &[String]) -> bool {
    last.iter().any(|file| {
        let read = |id: &str| std::fs::read(releases.join(id).join(file)).ok();
        read(a) != read(b)
    })
}

/// Every file one site image holds, by its path in the release.
fn files(
    releases: &Path,
    shipped: &Shipped,
    last: &[String],
) -> Result<BTreeMap<String, PathBuf>, String> {
    match &shipped.held {
        Held::Live => walk(&releases.join(&shipped.release)),
        Held::Over(_) => stage(releases, shipped, last).map(|(files, _)| files),
        Held::Holding(old) => {
            let mut files = walk(&releases.join(&shipped.release))?;
            let before = walk(&releases.join(old))?;
            for file in last {
                match before.get(file) {
                    Some(from) => files.insert(file.clone(), from.clone()),
                    None => files.remove(file),
                };
            }
            Ok(files)
        }
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
        let mut outputs = host_outputs(&surface.services.join(","), "", "", "", "");
        let mut applied = Vec::new();
        let publishing = Pass {
            steps: &publish,
            phases: &[Phase::Apply],
            touched: false,
        };
        self.run_phases(name, &publishing, &mut outputs, report, &mut applied)
            .await?;
        match self.converge_stack(name, false, images, report).await {
            Ok(host) => outputs.extend(host),
            Err(stop) => {
                self.roll_back(name, &applied, &outputs, report).await;
                return Err(stop);
            }
        }
        let finished = self
            .after_shipping(name, &rest, &mut outputs, report, &mut applied)
            .await;
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

    /// Once the release ships: the `rest` of the steps apply, then every
    /// step verifies.
    async fn after_shipping(
        &self,
        name: &str,
        rest: &[usize],
        outputs: &mut Vec<Output>,
        report: &mut SurfaceReport,
        applied: &mut Vec<usize>,
    ) -> Result<(), Stop> {
        let apply = Pass {
            steps: rest,
            phases: &[Phase::Apply],
            touched: true,
        };
        self.run_phases(name, &apply, outputs, report, applied)
            .await?;
        let all: Vec<usize> = (0..self.loaded.manifest.surface[name].step.len()).collect();
        let verify = Pass {
            steps: &all,
            phases: &[Phase::Verify],
            touched: true,
        };
        self.run_phases(name, &verify, outputs, report, applied)
            .await
    }

    /// Ship the site's live release to its service: roll out the updates
    /// that must come first (see `updates`), then return the reference of
    /// the release's own image, for the stack deploy to pin. Returns None
    /// when the service already serves it on this base.
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
            held: Held::Live,
            base: short_id(&base).to_owned(),
        };
        let releases = root.join("releases");
        if let Some(gone) = served
            .as_ref()
            .map(Shipped::pages)
            .filter(|p| *p != live && !releases.join(p).is_dir())
        {
            tracing::warn!(
                "[{surface}] {}: the served release {gone} is no longer under {}; its pages get no stage",
                site.service,
                root.display()
            );
        }
        let mut updates = updates(&releases, served.as_ref(), &wanted, &site.last).map_err(fail)?;
        let Some(wanted) = updates.pop() else {
            tracing::info!("[{surface}] {}: serves release {live}", site.service);
            return Ok(None);
        };
        for update in updates {
            let held = files(&releases, &update, &site.last).map_err(fail)?;
            let reference = self
                .commit_site(docker, surface, site, &base, &update, held)
                .await?;
            let what = match &update.held {
                Held::Over(pages) => {
                    format!("{pages}'s pages, release {live}'s new files next to them")
                }
                _ => format!(
                    "release {live} but {}'s {}",
                    update.last(),
                    site.last.join(", ")
                ),
            };
            tracing::info!("[{surface}] {}: first {what}", site.service);
            self.roll_one(docker, surface, &site.service, &reference, images, report)
                .await?;
        }
        let held = files(&releases, &wanted, &site.last).map_err(fail)?;
        self.commit_site(docker, surface, site, &base, &wanted, held)
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
        files: BTreeMap<String, PathBuf>,
    ) -> Result<String, Stop> {
        let files = in_image(&site.path, files);
        let count = files.len();
        let project = &self.loaded.manifest.project.name;
        let name = format!("slipway-site-{project}-{}", site.service);
        let image = docker
            .commit_files(base, files, &name)
            .await
            .map_err(|e| {
                Stop::Failed(format!(
                    "surface {surface}: site_image: cannot add the release to {}: {e:#}; the service keeps serving what it served",
                    short_id(base)
                ))
            })?;
        let tag = shipped.tag();
        let pushed = self
            .push(docker, surface, &site.service, &image, &tag)
            .await?;
        tracing::info!("[{surface}] {}: {tag}, {count} files", site.service);
        // `repo@sha256:…` as `repo:tag@sha256:…`: the spec then says what
        // the tasks serve.
        Ok(pushed.replacen('@', &format!(":{tag}@"), 1))
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
        .filter(|id| id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
        // The tag's separators: an id holding one would read back wrong.
        .filter(|id| !["-on-", "-over-", "-hold-"].iter().any(|sep| id.contains(sep)))
        .ok_or_else(|| {
            format!(
                "{} points to `{target}`, not to releases/<id> with an id of at most 48 letters, digits, `-`, `_` and `.` (and no `-on-`, `-over-` or `-hold-`)",
                current.display()
            )
        })?;
    Ok(id.to_owned())
}

/// The files at their paths in the image, under `path`.
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

    const OLD: &str = "20261204T100000Z-0123456789ab";
    const NEW: &str = "20261205T220000Z-abcdef012345";

    fn live(release: &str) -> Shipped {
        Shipped {
            release: release.into(),
            held: Held::Live,
            base: "c733478d9ec2".into(),
        }
    }

    #[test]
    fn a_site_image_tag_reads_back_as_what_it_holds() {
        let wanted = live(NEW);
        for shipped in [
            wanted.clone(),
            wanted.with(Held::Over(OLD.into())),
            wanted.with(Held::Holding(OLD.into())),
        ] {
            let reference = format!("10.0.0.1:5000/p/website:{}@sha256:beef", shipped.tag());
            assert_eq!(Shipped::of(&reference).as_ref(), Some(&shipped));
            assert!(
                shipped.tag().len() <= 128,
                "a Docker tag is at most 128 characters"
            );
        }
        let stage = wanted.with(Held::Over(OLD.into()));
        assert_eq!((stage.pages(), stage.last()), (OLD, OLD));
        let holding = wanted.with(Held::Holding(OLD.into()));
        assert_eq!((holding.pages(), holding.last()), (NEW, OLD));
        for other in [
            "10.0.0.1:5000/p/website@sha256:beef",
            "slipway-test/nginx:latest",
            "10.0.0.1:5000/p/website:1.2@sha256:beef",
        ] {
            assert_eq!(Shipped::of(other), None, "{other}");
        }
    }

    /// Two releases: `old` with index, a.css and sw.js v1; `new` with
    /// index, a.css, b.css and sw.js v2.
    fn two_releases() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = root.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        for (file, old, new) in [
            ("index.html", "old", "new"),
            ("_astro/a.css", "a", "a"),
            ("sw.js", "sw1", "sw2"),
        ] {
            write(&format!("{OLD}/{file}"), old);
            write(&format!("{NEW}/{file}"), new);
        }
        write(&format!("{NEW}/_astro/b.css"), "b");
        root
    }

    fn shown(files: &BTreeMap<String, PathBuf>) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(at, from)| (at.clone(), std::fs::read_to_string(from).unwrap()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn a_release_ships_as_stage_then_all_but_the_worker_then_all() {
        let root = two_releases();
        let releases = root.path();
        let last = vec!["sw.js".to_owned()];
        let (old, wanted) = (live(OLD), live(NEW));
        let plan = updates(releases, Some(&old), &wanted, &last).unwrap();
        let stage = wanted.with(Held::Over(OLD.into()));
        let holding = wanted.with(Held::Holding(OLD.into()));
        assert_eq!(plan, [stage.clone(), holding.clone(), wanted.clone()]);
        // The stage: the old pages and worker, the new stylesheet.
        assert_eq!(
            shown(&files(releases, &stage, &last).unwrap()),
            pairs(&[
                ("_astro/a.css", "a"),
                ("_astro/b.css", "b"),
                ("index.html", "old"),
                ("sw.js", "sw1")
            ])
        );
        // Then every new file but the worker.
        assert_eq!(
            shown(&files(releases, &holding, &last).unwrap()),
            pairs(&[
                ("_astro/a.css", "a"),
                ("_astro/b.css", "b"),
                ("index.html", "new"),
                ("sw.js", "sw1")
            ])
        );
        // A run cut off after an update resumes after it.
        assert_eq!(
            updates(releases, Some(&stage), &wanted, &last).unwrap(),
            [holding.clone(), wanted.clone()]
        );
        assert_eq!(
            updates(releases, Some(&holding), &wanted, &last).unwrap(),
            std::slice::from_ref(&wanted)
        );
        assert!(
            updates(releases, Some(&wanted), &wanted, &last)
                .unwrap()
                .is_empty()
        );
        // No `last`: two updates. Nothing served, or a release that is
        // gone: one.
        assert_eq!(
            updates(releases, Some(&old), &wanted, &[]).unwrap(),
            [stage, wanted.clone()]
        );
        for served in [None, Some(live("gone"))] {
            assert_eq!(
                updates(releases, served.as_ref(), &wanted, &last).unwrap(),
                std::slice::from_ref(&wanted)
            );
        }
    }

    #[test]
    fn an_update_that_would_change_nothing_is_left_out() {
        let root = two_releases();
        let releases = root.path();
        // The same worker and no new file: only the release itself.
        std::fs::write(releases.join(NEW).join("sw.js"), "sw1").unwrap();
        std::fs::remove_file(releases.join(NEW).join("_astro/b.css")).unwrap();
        let last = vec!["sw.js".to_owned()];
        assert_eq!(
            updates(releases, Some(&live(OLD)), &live(NEW), &last).unwrap(),
            [live(NEW)]
        );
    }

    #[test]
    fn a_new_worker_waits_for_the_last_update_even_in_the_stage() {
        let root = two_releases();
        let releases = root.path();
        std::fs::remove_file(releases.join(OLD).join("sw.js")).unwrap();
        let last = vec!["sw.js".to_owned()];
        let stage = live(NEW).with(Held::Over(OLD.into()));
        let holding = live(NEW).with(Held::Holding(OLD.into()));
        for held in [&stage, &holding] {
            let files = files(releases, held, &last).unwrap();
            assert!(!files.contains_key("sw.js"), "{held:?}: {files:?}");
        }
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
        for bad in [
            "elsewhere/x",
            "releases/a b",
            "releases/",
            "releases/a-on-b",
        ] {
            std::fs::remove_file(&current).unwrap();
            std::os::unix::fs::symlink(bad, &current).unwrap();
            assert!(live_release(root.path()).is_err(), "{bad}");
        }
    }
}
