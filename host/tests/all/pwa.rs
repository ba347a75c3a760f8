//! Rule 5 with the service workers that front-end toolchains build
//! (vite-plugin-pwa / Workbox), in a real headless Chromium.
//!
//! The fixtures in tests/frontends are built at test time by vite 7 and
//! vite-plugin-pwa into the stack's miniapp/dist, deployed by the miniapp-sw
//! step and served by the stack's nginx: every user sees each deploy exactly
//! once, an identical rebuild reloads nobody, and a build whose sw.js cannot
//! follow its bundle is refused before anything is published.

use crate::browser::{Chromium, after, close, wait_for};
use crate::frontend;
use crate::harness::{Stack, http_get, json, text};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const QUIET: Duration = Duration::from_secs(2);

fn v(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn app_url(stack: &Stack) -> String {
    format!("http://127.0.0.1:{}/", stack.app_port)
}

/// The build the miniapp step publishes (granted read-only as /build).
fn dist(stack: &Stack) -> PathBuf {
    stack.path().join("miniapp/dist")
}

/// A fresh copy of a front-end fixture (tests/frontends/<name>).
struct Fixture {
    dir: frontend::Copy,
}

impl Fixture {
    fn copy(name: &str) -> Fixture {
        Fixture {
            dir: frontend::copy(name),
        }
    }

    /// `APP_VERSION=<version> vite build` into the stack's miniapp/dist,
    /// replacing whatever it held.
    fn build(&self, stack: &Stack, version: &str) {
        let out = dist(stack);
        let out = out.to_str().expect("a UTF-8 temp path");
        frontend::run(
            &self.dir,
            "vite",
            &["build", "--outDir", out, "--emptyOutDir"],
            &[("APP_VERSION", version)],
        );
    }
}

/// A deploy that succeeded: the miniapp step's outputs and what its apply
/// reported, with the whole slipway output for assertion messages.
struct Deployed {
    outputs: Value,
    apply: String,
    log: String,
}

impl Deployed {
    fn output(&self, key: &str) -> Option<&str> {
        self.outputs[key].as_str()
    }

    fn bundle(&self) -> &str {
        self.output("bundle")
            .unwrap_or_else(|| panic!("no `bundle` output:\n{}", self.log))
    }

    fn release(&self) -> &str {
        self.output("release")
            .unwrap_or_else(|| panic!("no `release` output:\n{}", self.log))
    }
}

/// `slipway deploy miniapp --json`, which must succeed.
fn deploy(stack: &Stack) -> Deployed {
    let out = stack.slipway(&["deploy", "miniapp", "--json"], &[]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let report = json(&out);
    let step = &report["surfaces"][0]["steps"][0];
    let apply = step["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|call| call["phase"] == "apply")
        .and_then(|call| call["message"].as_str())
        .unwrap_or_else(|| panic!("no apply call in the report:\n{log}"))
        .to_owned();
    Deployed {
        outputs: step["outputs"].clone(),
        apply,
        log,
    }
}

/// `slipway deploy miniapp --json` that fails: its exit code, the run's
/// error, and the whole output for assertion messages.
fn deploy_failing(stack: &Stack) -> (Option<i32>, String, String) {
    let out = stack.slipway(&["deploy", "miniapp", "--json"], &[]);
    let log = text(&out);
    assert_ne!(out.status.code(), Some(0), "the deploy should fail:\n{log}");
    let error = json(&out)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the report carries no error:\n{log}"))
        .to_owned();
    (out.status.code(), error, log)
}

/// A deploy that must be refused (exit 2: nothing changed); the error.
fn refused(stack: &Stack) -> (String, String) {
    let (code, error, log) = deploy_failing(stack);
    assert_eq!(code, Some(2), "a refusal exits 2:\n{log}");
    (error, log)
}

/// What is live: the releases directory, where `current` points, and the
/// index.html nginx serves.
#[derive(Debug, PartialEq)]
struct Live {
    releases: Vec<String>,
    current: PathBuf,
    index: String,
}

fn live(stack: &Stack) -> Live {
    let site = stack.path().join("frontend/miniapp");
    let mut releases: Vec<String> = std::fs::read_dir(site.join("releases"))
        .unwrap_or_else(|e| panic!("{}/releases: {e}", site.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    let current = std::fs::read_link(site.join("current"))
        .unwrap_or_else(|e| panic!("{}/current: {e}", site.display()));
    let (status, index) = http_get(stack.app_port, "/index.html");
    assert_eq!(
        status, 200,
        "nginx answered /index.html with {status}: {index}"
    );
    Live {
        releases,
        current,
        index,
    }
}

fn assert_contains(haystack: &str, needles: &[&str], log: &str) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "the error should contain `{needle}`:\n{log}"
        );
    }
}

/// One scenario for both Workbox strategies: a first visit, a returning
/// visitor and an open tab each see a deploy exactly once; an identical
/// rebuild reloads nobody.
async fn each_user_sees_each_deploy_once(stack: &Stack, fixture: &str, sw_source: &str) {
    let url = app_url(stack);
    let app = Fixture::copy(fixture);

    app.build(stack, "v1");
    let d1 = deploy(stack);
    assert_eq!(d1.output("sw_source"), Some(sw_source), "{}", d1.log);
    assert_eq!(
        d1.output("sw_stamp"),
        None,
        "a Workbox sw.js is not stamped:\n{}",
        d1.log
    );
    let built = std::fs::read_to_string(dist(stack).join("sw.js")).unwrap();
    let (status, served) = http_get(stack.app_port, "/sw.js");
    assert_eq!(status, 200, "{served}");
    assert_eq!(served, built, "sw.js should be published as built");

    let chromium = Chromium::launch().await;

    // A first-time visitor sees v1 and is not reloaded when the worker
    // installs and takes control.
    let tab = chromium.open(&url).await;
    let seen = wait_for(&tab, "the first visit is controlled", |t| t.controlled).await;
    assert_eq!((seen.html, seen.js), (v("v1"), v("v1")), "{}", d1.apply);
    let quiet = after(&tab, QUIET).await;
    assert_eq!(quiet.loads, 1, "a first visit was reloaded: {quiet:?}");
    close(tab).await;

    // A returning visitor: the v1 worker answers with v1, the v2 worker
    // takes over, one reload shows v2.
    app.build(stack, "v2");
    let d2 = deploy(stack);
    assert_ne!(d2.bundle(), d1.bundle(), "v2 must change the bundle");
    assert_ne!(d2.release(), d1.release(), "{}", d2.log);
    let tab = chromium.open(&url).await;
    let seen = wait_for(&tab, "the returning visitor sees v2", |t| {
        t.html == v("v2") && t.js == v("v2")
    })
    .await;
    assert_eq!(
        seen.loads, 2,
        "expected exactly one reload: {seen:?}; apply: {}",
        d2.apply
    );
    let quiet = after(&tab, QUIET).await;
    assert_eq!(quiet.loads, 2, "reload loop: {quiet:?}");
    assert!(quiet.controlled, "{quiet:?}");

    // The same tab, left open: the next deploy reloads it once more.
    app.build(stack, "v3");
    let d3 = deploy(stack);
    assert_ne!(d3.bundle(), d2.bundle(), "v3 must change the bundle");
    assert_ne!(d3.bundle(), d1.bundle(), "v3 must change the bundle");
    let seen = wait_for(&tab, "the open tab sees v3", |t| {
        t.html == v("v3") && t.js == v("v3")
    })
    .await;
    assert_eq!(
        seen.loads, 3,
        "expected exactly one more reload: {seen:?}; apply: {}",
        d3.apply
    );
    let quiet = after(&tab, QUIET).await;
    assert_eq!(quiet.loads, 3, "reload loop: {quiet:?}");

    // An identical rebuild: same bundle, nothing published, nobody reloads
    // (neither the open tab nor a new visitor).
    app.build(stack, "v3");
    let d4 = deploy(stack);
    assert_eq!(d4.bundle(), d3.bundle(), "{}", d4.log);
    assert_eq!(d4.release(), d3.release(), "{}", d4.log);
    assert!(
        d4.apply.contains("nothing published"),
        "the plugin should report that nothing was published:\n{}",
        d4.log
    );
    let other = chromium.open(&url).await;
    let (quiet, fresh) = tokio::join!(after(&tab, QUIET), after(&other, QUIET));
    assert_eq!(
        (quiet.loads, quiet.html.clone(), quiet.js.clone()),
        (3, v("v3"), v("v3")),
        "the open tab: {quiet:?}"
    );
    assert_eq!(
        (
            fresh.loads,
            fresh.html.clone(),
            fresh.js.clone(),
            fresh.controlled
        ),
        (1, v("v3"), v("v3"), true),
        "a new tab: {fresh:?}"
    );
    chromium.close().await;
}

#[test]
fn generate_sw_users_each_see_a_deploy_once() {
    let stack = Stack::up();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(each_user_sees_each_deploy_once(
            &stack,
            "miniapp-generate",
            "workbox-generate-sw",
        ));
}

/// A returning visitor whose browser finds the new worker before the page
/// registers: Chromium checks on its own as the tab navigates. workbox-window
/// never sees that worker install, so vite-plugin-pwa's `activated` reload
/// does not fire (GoogleChrome/workbox#2199): with registerSW alone, the tab
/// stayed on the old bundle in every such visit tried. The `controllerchange`
/// listener miniapp-sw asks for reloads it, once.
#[test]
fn a_returning_visitor_whose_browser_finds_the_deploy_first_is_reloaded_once() {
    let stack = Stack::up();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = app_url(&stack);
        let app = Fixture::copy("miniapp-inject");
        app.build(&stack, "v1");
        deploy(&stack);
        let chromium = Chromium::launch().await;
        let tab = chromium.open(&url).await;
        wait_for(&tab, "the first visit is controlled", |t| t.controlled).await;
        close(tab).await;
        for version in ["v2", "v3", "v4"] {
            app.build(&stack, version);
            deploy(&stack);
            let tab = chromium.open_as_the_browser_checks(&url).await;
            let what = format!("the returning visitor sees {version}");
            wait_for(&tab, &what, |t| t.html == v(version) && t.js == v(version)).await;
            let quiet = after(&tab, QUIET).await;
            assert!(
                quiet.loads <= 2,
                "{what}: reloaded more than once: {quiet:?}"
            );
            close(tab).await;
        }
        chromium.close().await;
    });
}

#[test]
fn inject_manifest_users_each_see_a_deploy_once() {
    let stack = Stack::up();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(each_user_sees_each_deploy_once(
            &stack,
            "miniapp-inject",
            "workbox-inject-manifest",
        ));
}

/// The version line the stack's hand-written sw.js ships with.
const SHIPPED_LINE: &str = "const SW_VERSION = \"dev\";\n";

/// Write `line` in place of the stack's version line; the new sw.js.
fn set_version_line(stack: &Stack, original: &str, line: &str) -> String {
    let sw = original.replacen(SHIPPED_LINE, line, 1);
    std::fs::write(dist(stack).join("sw.js"), &sw).unwrap();
    sw
}

/// Deploy the hand-written sw.js `built`: stamped once, in place of "dev",
/// everything else (the trailing comment too) as built.
fn assert_stamped(stack: &Stack, built: &str, line: &str) -> String {
    let d = deploy(stack);
    assert_eq!(d.output("sw_source"), Some("version-line"), "{}", d.log);
    let stamp = d
        .output("sw_stamp")
        .unwrap_or_else(|| panic!("no `sw_stamp` output:\n{}", d.log))
        .to_owned();
    assert_eq!(stamp.len(), 16, "{}", d.log);
    let (status, served) = http_get(stack.app_port, "/sw.js");
    assert_eq!(status, 200, "{served}");
    let stamped_line = line.replacen("\"dev\"", &format!("\"{stamp}\""), 1);
    assert!(
        served.contains(&stamped_line),
        "nginx should serve `{}`; it serves:\n{served}\n{}",
        stamped_line.trim_end(),
        d.log
    );
    assert_eq!(
        served,
        built.replacen(line, &stamped_line, 1),
        "only the stamp may change"
    );
    stamp
}

#[test]
fn a_version_line_with_a_trailing_comment_is_stamped_and_keeps_it() {
    let stack = Stack::up();
    let sw = dist(&stack).join("sw.js");
    let original = std::fs::read_to_string(&sw).unwrap();
    assert!(original.contains(SHIPPED_LINE), "{original}");

    // The line the plugin suggests when sw.js has none (stamp.rs's
    // LINE_TO_ADD, taken from its error rather than copied: the host
    // cannot import the plugin crate).
    set_version_line(&stack, &original, "");
    let (_, error, log) = deploy_failing(&stack);
    let suggested = error
        .split_once("Add this near the top of sw.js:\n\n")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or_else(|| panic!("the error should suggest a version line:\n{log}"))
        .to_owned();
    let comment = suggested
        .strip_prefix("const SW_VERSION = \"dev\";")
        .map(str::trim_start)
        .unwrap_or_else(|| panic!("unexpected suggestion `{suggested}`:\n{log}"));
    assert!(
        comment.starts_with("//"),
        "the suggestion should carry a trailing comment: `{suggested}`"
    );
    assert!(
        !stack.path().join("frontend/miniapp/current").exists(),
        "a failed first deploy published a release"
    );

    let line = format!("{suggested}\n");
    let built = set_version_line(&stack, &original, &line);
    let first = assert_stamped(&stack, &built, &line);

    // A `/* … */` comment works too; sw.js changed, so does the stamp.
    let line = "const SW_VERSION = \"dev\"; /* stamped by slipway on every deploy */\n";
    let built = set_version_line(&stack, &original, line);
    let second = assert_stamped(&stack, &built, line);
    assert_ne!(first, second, "a changed sw.js must change the stamp");
}

#[test]
fn the_plain_register_script_is_refused_and_the_live_release_stays() {
    let stack = Stack::up();
    // The stack's own hand-written Mini App is live.
    deploy(&stack);
    let before = live(&stack);
    assert!(
        before.index.contains("data-version=\"v1\""),
        "{}",
        before.index
    );

    let app = Fixture::copy("miniapp-autoupdate-script");
    app.build(&stack, "v2");
    let (error, log) = refused(&stack);
    assert_contains(
        &error,
        &[
            "vite-plugin-pwa",
            "injectRegister: false",
            "virtual:pwa-register",
        ],
        &log,
    );
    assert_eq!(
        live(&stack),
        before,
        "a refused deploy changed the site:\n{log}"
    );
}

#[test]
fn a_stale_workbox_manifest_is_refused_and_the_live_release_stays() {
    let stack = Stack::up();
    let app = Fixture::copy("miniapp-generate");
    app.build(&stack, "v1");
    let d = deploy(&stack);
    assert_eq!(
        d.output("sw_source"),
        Some("workbox-generate-sw"),
        "{}",
        d.log
    );
    let before = live(&stack);
    assert!(
        before.index.contains("data-version=\"v1\""),
        "{}",
        before.index
    );

    // v2, with index.html changed after `vite build`: its revision in the
    // precache manifest no longer matches.
    app.build(&stack, "v2");
    let index = dist(&stack).join("index.html");
    let mut html = std::fs::read_to_string(&index).unwrap();
    html.push_str("<!-- edited after the build -->\n");
    std::fs::write(&index, html).unwrap();
    let (error, log) = refused(&stack);
    assert_contains(
        &error,
        &["vite-plugin-pwa", "index.html", "stale", "`vite build`"],
        &log,
    );
    assert_eq!(
        live(&stack),
        before,
        "a refused deploy changed the site:\n{log}"
    );
}
