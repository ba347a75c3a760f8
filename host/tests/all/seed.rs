//! The seed-scale example (examples/honeychat, 14 services): `deploy --all`
//! ships a change of the shared Python image to all eight Python services
//! and a change of the web app, builds each distinct image once with
//! independent builds side by side, and never touches the stateful services.

use crate::harness::{Stack, docker_inspect, http_get, json, sh, text};
use serde_json::Value;

const PYTHON: [&str; 8] = [
    "api",
    "bot",
    "celery_worker",
    "celery_beat",
    "gen_worker",
    "lora_worker",
    "cleanup_worker",
    "retention_email_worker",
];
const UNTOUCHED: [&str; 5] = ["postgres", "redis", "chromadb", "certbot", "nginx"];

/// A container's ID and start time: a restart changes the one, a
/// recreate both.
fn identity(stack: &Stack, service: &str) -> (String, String) {
    let c = docker_inspect(&stack.container(service));
    (
        c["Id"].as_str().unwrap().to_owned(),
        c["State"]["StartedAt"].as_str().unwrap().to_owned(),
    )
}

fn project_images(stack: &Stack) -> Vec<String> {
    let ids = sh(
        &format!(
            "docker images -q --no-trunc --filter label=com.docker.compose.project={}",
            stack.project
        ),
        stack.path(),
        &[],
    );
    ids.lines().map(str::to_owned).collect()
}

/// The chunk the web app's page loads, as a path through nginx.
fn web_chunk(stack: &Stack) -> String {
    let (status, page) = http_get(stack.port, "/web/");
    assert_eq!(status, 200, "{page}");
    let start = page
        .find("/web/_next/static/")
        .expect("the page loads a chunk");
    let end = start + page[start..].find('"').expect("a quoted src");
    page[start..end].to_owned()
}

fn build_of<'a>(builds: &'a [Value], service: &str) -> &'a Value {
    builds
        .iter()
        .find(|b| {
            b["services"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == service)
        })
        .unwrap_or_else(|| panic!("no build lists {service}: {builds:?}"))
}

#[test]
fn deploy_all_ships_the_shared_image_to_every_python_service_and_leaves_state_alone() {
    let stack = Stack::seed_scale();
    let before: Vec<(String, String)> = UNTOUCHED.iter().map(|s| identity(&stack, s)).collect();
    let python_before = docker_inspect(&stack.container("api"))["Image"].clone();
    std::fs::write(stack.path().join("backend/VERSION"), "v2\n").unwrap();
    std::fs::write(stack.path().join("web/VERSION"), "v2\n").unwrap();
    let images_before = project_images(&stack);
    let chunk_before = web_chunk(&stack);

    let out = stack.slipway(
        &["--json", "deploy", "--all"],
        &[("APP_VERSION", "v2"), ("WEB_VERSION", "v2")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report = json(&out);
    let surfaces: Vec<(&str, &str)> = report["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        surfaces,
        [
            ("backend", "ok"),
            ("web", "ok"),
            ("website", "ok"),
            ("miniapp", "ok")
        ],
        "the seed's order"
    );

    // The website surface built the Astro site from its lockfile and
    // published it: a directory per page, stylesheets under /_astro/.
    let page = std::fs::read_to_string(stack.path().join("frontend/website/current/en/index.html"))
        .expect("the built site is live");
    assert!(
        page.contains("Chat with HoneyChat") && page.contains("/_astro/"),
        "{page}"
    );

    // The miniapp surface bundled the Mini App with vite: the live page
    // loads a hashed bundle that is live beside it.
    let app = stack.path().join("frontend/miniapp/current");
    let index = std::fs::read_to_string(app.join("index.html")).expect("the Mini App is live");
    let start = index
        .find("/assets/index-")
        .expect("the page loads vite's bundle");
    let end = start + index[start..].find('"').unwrap();
    assert!(app.join(&index[start + 1..end]).is_file(), "{index}");

    // One build for the eight Python services, one for the web app.
    let builds = report["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{builds:?}");
    let python = build_of(builds, "api");
    assert_eq!(python["services"].as_array().unwrap().len(), PYTHON.len());
    let web = build_of(builds, "nextjs");
    for build in [python, web] {
        assert_eq!(build["ok"], true);
        assert!(["buildkit", "classic"].contains(&build["builder"].as_str().unwrap()));
    }
    // Independent builds overlap (RFC 3339 UTC to the millisecond sorts as
    // time does).
    let t = |b: &Value, k: &str| b[k].as_str().unwrap().to_owned();
    assert!(
        t(python, "started") < t(web, "finished") && t(web, "started") < t(python, "finished"),
        "the two builds ran one after the other: {builds:?}"
    );
    // Counted by the engine, not the report: the images labelled with the
    // project that the deploy added.
    let made: Vec<String> = project_images(&stack)
        .into_iter()
        .filter(|id| !images_before.contains(id))
        .collect();
    assert_eq!(made.len(), 2, "images built: {made:?}");
    for build in [python, web] {
        assert!(made.iter().any(|id| *id == build["image"]), "{build}");
    }

    // The eight replacements and their readiness waits overlapped: the
    // surface took well under their sum.
    let backend = &report["surfaces"][0];
    let ms = |v: &Value| v.as_u64().unwrap();
    let serial: u64 = backend["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| ms(&s["recreate_ms"]) + ms(&s["ready_ms"]))
        .sum();
    assert!(
        ms(&backend["duration_ms"]) * 2 < serial,
        "backend took {} ms, its services {serial} ms one after another",
        backend["duration_ms"]
    );

    // Every Python service runs the one new image, and its code.
    let image = python["image"].as_str().unwrap();
    for service in PYTHON {
        let c = docker_inspect(&stack.container(service));
        assert_eq!(c["Image"], image, "{service} runs another image");
        let version = sh(
            &format!("docker exec {} cat /app/VERSION", stack.container(service)),
            stack.path(),
            &[],
        );
        assert_eq!(version.trim(), "v2", "{service}");
    }
    // The image they ran before is kept for a rollback, under one tag for
    // all eight, not one apiece.
    let kept = sh(
        &format!(
            "docker images --no-trunc --format '{{{{.ID}}}}' --filter reference='{}/backend:slipway-*'",
            stack.project
        ),
        stack.path(),
        &[],
    );
    let kept: Vec<&str> = kept.lines().collect();
    assert_eq!(kept, [python_before.as_str().unwrap()], "kept tags");
    let (status, body) = http_get(stack.port, "/version");
    assert_eq!(status, 200);
    assert!(body.starts_with("honeychat-api v2 "), "{body}");
    let (status, body) = http_get(stack.port, "/web/version");
    assert_eq!(status, 200);
    assert!(body.starts_with("honeychat-web v2 "), "{body}");
    // A page loaded before the deploy still finds its build's chunk: the
    // web surface's asset-bridge step read it out of the replaced image.
    let chunk_after = web_chunk(&stack);
    assert_ne!(chunk_before, chunk_after, "the v2 build renames its chunk");
    for (chunk, version) in [(&chunk_before, "v1"), (&chunk_after, "v2")] {
        let (status, body) = http_get(stack.port, chunk);
        assert_eq!(status, 200, "{chunk}: {body}");
        assert!(body.contains(&format!("\"{version}\"")), "{chunk}: {body}");
    }

    let after: Vec<(String, String)> = UNTOUCHED.iter().map(|s| identity(&stack, s)).collect();
    for ((service, b), a) in UNTOUCHED.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "{service} was recreated or restarted");
    }
}
