//! Asset bridging for an SSR surface, end to end: a real Next.js build
//! (standalone output, pages router) in a container behind a real nginx,
//! a real headless Chromium, and a deploy of the next build through the
//! `web` surface. A tab opened before the deploy follows a link: its build
//! asks for that page's chunk. With the asset-bridge step the chunk is
//! still there; without it, nginx answers with the new app's 404.

use crate::browser::Chromium;
use crate::frontend;
use crate::harness::{Stack, http_get, json, repo_root, sh, text};
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::network::EventResponseReceived;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `next build` of tests/frontends/next-app at `version`.
fn next_build(version: &str) -> PathBuf {
    frontend::cached_build("next-app", "next", &["build"], &[("APP_VERSION", version)])
}

/// The URL path of the `/other` page's chunk in a build.
fn other_chunk(build: &Path) -> String {
    let pages = build.join(".next/static/chunks/pages");
    let name = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("other-") && n.ends_with(".js"))
        .unwrap_or_else(|| panic!("no other-*.js in {}", pages.display()));
    format!("/_next/static/chunks/pages/{name}")
}

/// Lay a build out as web/Dockerfile expects: the standalone app in app/
/// (with its static assets), the traced dependencies in node_modules/.
fn install(stack_dir: &Path, build: &Path) {
    let web = stack_dir.join("web");
    let standalone = build.join(".next/standalone");
    let rel = build
        .strip_prefix(repo_root().join("tests/frontends"))
        .unwrap();
    sh(
        &format!(
            "rm -rf app node_modules && cp -a {s}/node_modules node_modules && cp -a {s}/{rel} app \
             && cp -a {b}/.next/static app/.next/static",
            s = standalone.display(),
            rel = rel.display(),
            b = build.display(),
        ),
        &web,
        &[],
    );
}

fn deploy(stack: &Stack) -> serde_json::Value {
    let out = stack.slipway(&["deploy", "web", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    json(&out)
}

/// Evaluate `js` in the tab; `None` while it is between documents.
async fn eval(page: &Page, js: &str) -> Option<serde_json::Value> {
    let result = tokio::time::timeout(Duration::from_secs(2), page.evaluate(js))
        .await
        .ok()?
        .ok()?;
    result.into_value().ok()
}

/// Poll `js` until it gives a string starting with `prefix`.
async fn wait_text(page: &Page, js: &str, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(serde_json::Value::String(s)) = eval(page, js).await {
            if s.starts_with(prefix) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for `{js}` to start with {prefix:?}; last {last:?}");
}

const HEADING: &str = "document.getElementById('page')?.textContent ?? ''";

/// What the tab saw when it followed the link after the deploy.
#[derive(Debug)]
struct Navigation {
    /// The status of the old build's chunk of the linked page.
    chunk_status: Option<i64>,
    /// The heading of the page it ended on.
    heading: String,
    /// Whether the document survived (a client-side navigation) or was
    /// replaced (Next's hard navigation after a ChunkLoadError).
    same_document: bool,
}

/// Open the app at v1, deploy v2, then follow the link in the open tab.
async fn open_deploy_follow(stack: &Stack, v2: &Path, chunk: &str) -> Navigation {
    let chromium = Chromium::launch().await;
    let url = format!("http://127.0.0.1:{}/", stack.port);
    let tab = chromium.open(&url).await;
    wait_text(&tab, HEADING, "index v1").await;
    eval(&tab, "window.__opened_before_deploy = true").await;

    install(stack.path(), v2);
    deploy(stack);
    let (status, body) = http_get(stack.port, "/");
    assert!(
        status == 200 && body.contains("data-version=\"v2\""),
        "{status} {body}"
    );

    let mut responses = tab.event_listener::<EventResponseReceived>().await.unwrap();
    eval(&tab, "document.getElementById('go').click()").await;
    let heading = wait_text(&tab, HEADING, "other").await;
    let same_document = eval(&tab, "window.__opened_before_deploy === true")
        .await
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut chunk_status = None;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), responses.next()).await
    {
        if event.response.url.ends_with(chunk) {
            chunk_status = Some(event.response.status);
        }
    }
    chromium.close().await;
    Navigation {
        chunk_status,
        heading,
        same_document,
    }
}

/// Drop the asset-bridge step from the stack's slipway.toml.
fn without_bridge(dir: &Path) {
    let path = dir.join("slipway.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let cut = manifest.rfind("[[surface.web.step]]").unwrap();
    std::fs::write(&path, &manifest[..cut]).unwrap();
}

#[test]
fn an_open_tab_finds_its_builds_chunk_after_a_deploy_only_with_the_bridge() {
    let (v1, v2, v3) = (next_build("v1"), next_build("v2"), next_build("v3"));
    let (chunk1, chunk2) = (other_chunk(&v1), other_chunk(&v2));
    assert_ne!(chunk1, chunk2, "a new build must rename the changed chunk");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // With the bridge: the first deploy publishes v1's assets; after v2's,
    // the open tab's client-side navigation loads v1's chunk.
    let stack = Stack::bridge(|dir| install(dir, &v1));
    stack.edit_manifest(
        "url = \"http://nginx:80\" }",
        "url = \"http://nginx:80\", builds = 2 }",
    );
    deploy(&stack);
    let seen = rt.block_on(open_deploy_follow(&stack, &v2, &chunk1));
    assert_eq!(seen.chunk_status, Some(200), "{seen:?}");
    assert!(
        seen.heading.starts_with("other v1") && seen.same_document,
        "{seen:?}"
    );

    // Both builds' chunks are served; a third deploy (builds = 2) prunes
    // the first build's.
    assert_eq!(http_get(stack.port, &chunk2).0, 200);
    install(stack.path(), &v3);
    let report = deploy(&stack);
    let steps = &report["surfaces"][0]["steps"];
    assert!(
        steps[1]["calls"][0]["message"]
            .as_str()
            .is_some_and(|s| s.contains("carried")),
        "{steps}"
    );
    assert_eq!(
        http_get(stack.port, &chunk2).0,
        200,
        "v2's chunk, one build back"
    );
    assert_eq!(
        http_get(stack.port, &chunk1).0,
        404,
        "v1's chunk, two builds back"
    );
    drop(stack);

    // Without it: the same navigation gets the new app's 404, and Next falls
    // back to loading the page anew.
    let stack = Stack::bridge(|dir| {
        install(dir, &v1);
        without_bridge(dir);
    });
    deploy(&stack);
    let seen = rt.block_on(open_deploy_follow(&stack, &v2, &chunk1));
    assert_eq!(seen.chunk_status, Some(404), "{seen:?}");
    assert!(
        seen.heading.starts_with("other v2") && !seen.same_document,
        "{seen:?}"
    );
}
