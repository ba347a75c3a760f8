//! A surface that builds itself (`surface.<name>.build`): the build runs
//! before anything changes, is skipped while nothing it reads changed, ships
//! an edit, and a failure leaves the live release alone with its last lines
//! in the error. On this machine and in a container.

use crate::harness::{cache_dir, plugin, text};
use std::path::Path;
use std::process::Output;

/// A site whose build copies `src/` into `dist/`, stamping each page, and
/// counts its runs in `runs.log` (excluded from its inputs).
fn project(root: &Path, image: Option<&str>) {
    std::fs::create_dir_all(root.join("website/src")).unwrap();
    std::fs::write(root.join("website/src/index.html"), "<h1>first</h1>\n").unwrap();
    std::fs::write(
        root.join("website/build.sh"),
        "set -e\necho run >> runs.log\nif [ -e FAIL ]; then echo 'error: src/pages/broken.astro: unexpected }' >&2; exit 1; fi\n\
         rm -rf dist && mkdir dist\nfor f in src/*.html; do cat \"$f\" > \"dist/${f#src/}\"; echo '<!-- built -->' >> \"dist/${f#src/}\"; done\necho built \"$(ls dist | wc -l)\" pages\n",
    )
    .unwrap();
    let image = image.map_or(String::new(), |i| format!(", image = \"{i}\""));
    astro_site(
        root,
        "built",
        "",
        &format!(
            "build = {{ command = [\"sh\", \"build.sh\"], dir = \"website\", output = \"website/dist\", exclude = [\"runs.log\"]{image} }}\n"
        ),
    );
}

/// A project of one surface, `website`, that the astro step publishes from
/// `website/dist` into `site`: `plugin_lines` and `surface_lines` are extra
/// lines of `[plugins.astro]` and `[surface.website]` (e.g. its `build`).
pub(crate) fn astro_site(root: &Path, name: &str, plugin_lines: &str, surface_lines: &str) {
    std::fs::create_dir_all(root.join("site")).unwrap();
    std::fs::write(
        root.join("docker-compose.yml"),
        "services:\n  nginx:\n    image: nginx\n",
    )
    .unwrap();
    std::fs::write(
        root.join("slipway.toml"),
        format!(
            "[project]\nname = \"{name}\"\n[plugins.astro]\npath = \"{}\"\n{plugin_lines}[surface.website]\n{surface_lines}\
             [[surface.website.step]]\nplugin = \"astro\"\n\
             grants = {{ fs = [{{ host = \"website/dist\", guest = \"/build\", mode = \"ro\" }}, {{ host = \"site\", guest = \"/site\", mode = \"rw\" }}] }}\n",
            plugin("astro").display()
        ),
    )
    .unwrap();
}

fn deploy(root: &Path) -> Output {
    crate::harness::slipway_command(root, &["deploy", "website"], &[])
        .env("SLIPWAY_CACHE_DIR", cache_dir())
        .output()
        .unwrap()
}

fn runs(root: &Path) -> usize {
    std::fs::read_to_string(root.join("website/runs.log"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn live(root: &Path) -> String {
    std::fs::read_to_string(root.join("site/current/index.html")).unwrap()
}

fn builds_skips_ships_and_fails_safely(image: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    project(root, image);

    // A plan before the first build says it would run, plans no step on an
    // output that is not there yet, and builds nothing.
    let out = crate::harness::slipway_command(root, &["plan", "website"], &[])
        .env("SLIPWAY_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("build would run"), "{}", text(&out));
    assert_eq!(runs(root), 0);
    assert!(!root.join("website/dist").exists());

    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(runs(root), 1);
    assert_eq!(live(root), "<h1>first</h1>\n<!-- built -->\n");
    assert!(
        text(&out).contains("build: built 1 pages"),
        "{}",
        text(&out)
    );

    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(runs(root), 1, "an unchanged source was built again");
    assert!(text(&out).contains("build skipped"), "{}", text(&out));

    std::fs::write(root.join("website/src/index.html"), "<h1>second</h1>\n").unwrap();
    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(runs(root), 2);
    assert_eq!(live(root), "<h1>second</h1>\n<!-- built -->\n");

    let current = std::fs::read_link(root.join("site/current")).unwrap();
    std::fs::write(root.join("website/FAIL"), "").unwrap();
    let out = deploy(root);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = text(&out);
    assert!(
        log.contains("unexpected }"),
        "the build's last lines: {log}"
    );
    assert!(log.contains("nothing was deployed"), "{log}");
    assert_eq!(
        std::fs::read_link(root.join("site/current")).unwrap(),
        current
    );
    assert_eq!(live(root), "<h1>second</h1>\n<!-- built -->\n");
}

#[test]
fn a_surface_builds_itself_skips_an_unchanged_source_and_a_failed_build_deploys_nothing() {
    builds_skips_ships_and_fails_safely(None);
}

/// For CI machines without the toolchain: the same, in a container, which
/// writes as the directory's owner and is gone once the build ends.
#[test]
fn a_surface_builds_in_a_container_of_the_image_it_names() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    project(root, Some("slipway-test/busybox:latest"));
    crate::harness::sh("chown -R 1234:1234 website", root, &[]);
    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let built = std::fs::metadata(root.join("website/dist/index.html")).unwrap();
    assert_eq!((built.uid(), built.gid()), (1234, 1234));
    let left = crate::harness::sh(
        "docker ps -aq --filter label=dev.slipway.build=built.website",
        root,
        &[],
    );
    assert_eq!(left.trim(), "", "a build container was left");
    builds_skips_ships_and_fails_safely(Some("slipway-test/busybox:latest"));
}

/// The example's website surface as the example declares its build (read
/// from examples/honeychat/slipway.toml), on a copy of its Astro project:
/// `npm ci` and `astro build` from the lockfile, then the astro step.
fn example_website(root: &Path) {
    let example = crate::harness::repo_root().join("examples/honeychat");
    crate::harness::sh(
        &format!(
            "cp -r {}/website . && rm -rf website/node_modules website/dist",
            example.display()
        ),
        root,
        &[],
    );
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(example.join("slipway.toml")).unwrap()).unwrap();
    let build = manifest["surface"]["website"]["build"].to_string();
    astro_site(root, "example-site", "", &format!("build = {build}\n"));
}

fn live_page(root: &Path, page: &str) -> String {
    std::fs::read_to_string(root.join("site/current").join(page)).unwrap()
}

#[test]
fn the_example_website_builds_with_astro_skips_an_unchanged_source_ships_an_edit_and_survives_a_broken_page()
 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    example_website(root);

    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = live_page(root, "fr/index.html");
    assert!(page.contains("Discutez avec HoneyChat"), "{page}");
    assert!(
        page.contains("/_astro/"),
        "Astro's hashed stylesheet: {page}"
    );

    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("build skipped"), "{}", text(&out));

    let languages = root.join("website/src/languages.ts");
    let source = std::fs::read_to_string(&languages).unwrap();
    std::fs::write(&languages, source.replace("Discutez avec", "Parlez avec")).unwrap();
    let out = deploy(root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(live_page(root, "fr/index.html").contains("Parlez avec HoneyChat"));

    let current = std::fs::read_link(root.join("site/current")).unwrap();
    std::fs::write(
        root.join("website/src/pages/broken.astro"),
        "---\nconst x = ;\n---\n<p>{x}</p>\n",
    )
    .unwrap();
    let out = deploy(root);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("nothing was deployed"), "{log}");
    assert!(log.contains("broken.astro"), "Astro's error, quoted: {log}");
    assert_eq!(
        std::fs::read_link(root.join("site/current")).unwrap(),
        current
    );
    assert!(live_page(root, "fr/index.html").contains("Parlez avec HoneyChat"));
}
