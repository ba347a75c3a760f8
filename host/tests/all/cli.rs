//! The `slipway` binary: exit codes, ordering, the lock, and clear errors for
//! bad input. These need no containers; plugin steps use the hostile fixture.

use crate::harness::{json, plugin, slipway, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A project directory with a minimal compose file and the given manifest
/// body (after a `[project]` table and a `hostile` plugin).
fn project(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  api:\n    image: busybox\n",
    )
    .unwrap();
    let manifest = format!(
        "[project]\nname = \"{}\"\n\n[plugins.hostile]\npath = \"{}\"\ntimeout_secs = 4\n\n{body}",
        crate::harness::unique("slc"),
        plugin("hostile").display()
    );
    std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
    dir
}

fn step(surface: &str, deps: &[&str], attempt: &str) -> String {
    let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[surface.{surface}]\ndepends_on = [{}]\n[[surface.{surface}.step]]\nplugin = \"hostile\"\nconfig = {attempt}\n\n",
        deps.join(", ")
    )
}

const NOOP: &str = "{ attempt = \"noop\" }";

fn assert_exit(out: &std::process::Output, code: i32, needle: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn deploy_all_follows_depends_on_then_manifest_order() {
    let body = [
        step("miniapp", &[], NOOP),
        step("web", &["backend"], NOOP),
        step("website", &[], NOOP),
        step("backend", &[], NOOP),
    ]
    .concat();
    let dir = project(&body);
    let out = slipway(dir.path(), &["deploy", "--all", "--json"], &[]);
    assert_exit(&out, 0, "\"ok\": true");
    let order: Vec<String> = json(&out)["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["miniapp", "website", "backend", "web"]);

    let out = slipway(dir.path(), &["plan", "web", "backend"], &[]);
    assert_exit(&out, 0, "planned");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.find("backend").unwrap() < stderr.find("web ").unwrap(),
        "{stderr}"
    );
}

#[test]
fn cycles_are_refused_by_name() {
    let body = [
        step("a", &["c"], NOOP),
        step("b", &["a"], NOOP),
        step("c", &["b"], NOOP),
    ]
    .concat();
    let dir = project(&body);
    let out = slipway(dir.path(), &["deploy", "--all"], &[]);
    assert_exit(&out, 2, "a -> c -> b -> a");
}

#[test]
fn a_second_concurrent_deploy_hits_the_lock() {
    let body = [
        step("slow", &[], "{ attempt = \"spin\" }"),
        step("fast", &[], NOOP),
    ]
    .concat();
    let dir = project(&body);
    let first = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .current_dir(dir.path())
        .args(["deploy", "slow"])
        .env("SLIPWAY_CACHE_DIR", crate::harness::cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".slipway/deploy.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("pid")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first deploy never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = slipway(dir.path(), &["deploy", "fast", "--lock-wait", "0"], &[]);
    assert_exit(&out, 3, "slipway deploy slow");
    assert!(text(&out).contains("--lock-wait"));

    // Waiting long enough gets the lock once the first deploy is done.
    let out = slipway(dir.path(), &["deploy", "fast", "--lock-wait", "60"], &[]);
    assert_exit(&out, 0, "ok");
    let first = first.wait_with_output().unwrap();
    assert_exit(&first, 1, "timed out after 4s");
}

#[test]
fn step_errors_name_surface_step_plugin_and_version() {
    let dir = project(&step(
        "backend",
        &[],
        "{ attempt = \"docker\", service = \"api\" }",
    ));
    let out = slipway(dir.path(), &["deploy", "backend"], &[]);
    assert_exit(
        &out,
        1,
        "surface backend, step 0 (plugin hostile 0.1.0 from plugins.hostile), apply: docker inspect of service `api` is not granted",
    );
}

#[test]
fn plugin_stderr_goes_to_the_agent_log() {
    let dir = project(&step(
        "s",
        &[],
        "{ attempt = \"stderr\", text = \"hello-from-the-sandbox\" }",
    ));
    let out = slipway(dir.path(), &["deploy", "s"], &[]);
    assert_exit(
        &out,
        0,
        "surface s step 0 plugin hostile 0.1.0: hello-from-the-sandbox",
    );
}

#[test]
fn plugin_inspect_shows_contract_and_needs() {
    let out = slipway(
        Path::new("."),
        &[
            "plugin",
            "inspect",
            plugin("nginx-reload").to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_exit(&out, 0, "nginx-reload");
    let doc = json(&out);
    assert_eq!(doc["world"], "deploy-step");
    assert_eq!(doc["wit_package"], "slipway:plugin@0.2.0");
    let imports = doc["imports"].to_string();
    assert!(
        imports.contains("slipway:plugin/docker@0.2.0") && imports.contains("wasi:cli/stderr"),
        "{imports}"
    );
    assert!(doc["needs"].to_string().contains("docker"), "{doc}");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let good = step("backend", &[], NOOP);
    let cases: Vec<(&str, String, Vec<&str>, i32, &str)> = vec![
        (
            "malformed",
            "[project\nname=".into(),
            vec!["plan", "--all"],
            2,
            "TOML parse error",
        ),
        (
            "unknown key",
            format!("{good}colour = \"blue\"\n"),
            vec!["plan", "--all"],
            2,
            "unknown field `colour`",
        ),
        (
            "unknown surface",
            good.clone(),
            vec!["deploy", "frontend"],
            2,
            "no surface named `frontend`",
        ),
        (
            "nothing selected",
            good.clone(),
            vec!["deploy"],
            2,
            "pass --all",
        ),
    ];
    for (what, body, args, code, needle) in cases {
        let dir = project("");
        if what == "malformed" {
            std::fs::write(dir.path().join("slipway.toml"), &body).unwrap();
        } else {
            let manifest =
                std::fs::read_to_string(dir.path().join("slipway.toml")).unwrap() + &body;
            std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
        }
        let out = slipway(dir.path(), &args, &[]);
        assert_exit(&out, code, needle);
    }

    let dir = project(&good);
    std::fs::remove_file(dir.path().join("docker-compose.yml")).unwrap();
    assert_exit(
        &slipway(dir.path(), &["plan", "--all"], &[]),
        2,
        "project.compose_file",
    );

    let dir = project(&good);
    assert_exit(
        &slipway(dir.path(), &["-f", "nope.toml", "plan", "--all"], &[]),
        2,
        "cannot read the manifest",
    );

    let dir = project(&good);
    std::fs::write(dir.path().join("fake.wasm"), "not wasm at all").unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("slipway.toml")).unwrap();
    let manifest = manifest.replace(&plugin("hostile").display().to_string(), "fake.wasm");
    std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
    assert_exit(
        &slipway(dir.path(), &["deploy", "backend"], &[]),
        2,
        "not a WebAssembly file",
    );

    // A verification that could only fail at the end is refused up front.
    let unset = format!(
        "{good}[surface.backend.verify]\nurl = \"http://127.0.0.1:${{SLIPWAY_TEST_UNSET_PORT}}/\"\n"
    );
    let dir = project(&unset);
    let out = slipway(dir.path(), &["deploy", "backend"], &[]);
    assert_exit(&out, 2, "SLIPWAY_TEST_UNSET_PORT is not set");

    let dir = project(&good);
    let out = slipway(
        dir.path(),
        &["deploy", "backend", "--json"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_exit(&out, 4, "no Docker engine answered");
    assert_eq!(json(&out)["exit_code"], 4);
}
