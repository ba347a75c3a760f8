//! The operator's view: the audit journal, rollback of images and releases,
//! and drift in `slipway status`, against the real example stack.

use crate::harness::{Stack, docker_inspect, http_get, json, slipway, text, unique};
use serde_json::Value;
use std::time::Duration;

fn image_of(stack: &Stack, service: &str) -> String {
    docker_inspect(&stack.container(service))["Image"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The journal as `slipway log --json` prints it: one entry per line.
fn journal(stack: &Stack) -> Vec<Value> {
    let out = stack.slipway(&["log", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn journal_file(stack: &Stack) -> std::path::PathBuf {
    stack.path().join(".slipway/journal.jsonl")
}

fn deploy(stack: &Stack, surface: &str, env: &[(&str, &str)]) {
    let out = stack.slipway(&["deploy", surface], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn every_deploy_and_rollback_is_one_well_formed_line_even_after_a_kill() {
    let stack = Stack::up();
    let ci = [("GITHUB_ACTOR", "octocat"), ("GITHUB_RUN_ID", "4242")];
    stack.set_version("api", "v2");
    let backend_env = [ci[0], ci[1], ("APP_VERSION", "v2")];
    deploy(&stack, "backend", &backend_env);
    deploy(&stack, "website", &ci);
    std::fs::write(stack.path().join("website/dist/build-id.txt"), "build 2\n").unwrap();
    deploy(&stack, "website", &ci);
    deploy(&stack, "miniapp", &ci);
    let out = stack.slipway(&["rollback", "website"], &ci);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let entries = journal(&stack);
    let commands: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["command"].as_str().unwrap(),
                e["surfaces"][0]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        commands,
        [
            ("deploy", "backend"),
            ("deploy", "website"),
            ("deploy", "website"),
            ("deploy", "miniapp"),
            ("rollback", "website"),
        ]
    );
    for e in &entries {
        assert_eq!(e["who"]["ci"]["GITHUB_ACTOR"], "octocat", "{e}");
        assert_eq!(e["ok"], true, "{e}");
        assert!(e["ts"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["duration_ms"].as_u64().is_some(), "{e}");
        for step in e["surfaces"][0]["steps"].as_array().unwrap() {
            assert_eq!(step["sha256"].as_str().unwrap().len(), 64, "{step}");
        }
    }
    let api = &entries[0]["surfaces"][0]["services"][0];
    assert_eq!(api["service"], "api");
    assert_ne!(api["image_before"], api["image_after"], "{api}");
    assert_eq!(
        api["image_after"].as_str().unwrap(),
        image_of(&stack, "api")
    );
    let release = |i: usize| entries[i]["surfaces"][0]["steps"][0]["outputs"]["release"].clone();
    assert_ne!(release(1), release(2));
    assert_eq!(
        release(4),
        release(1),
        "the rollback went back to the first release"
    );
    let stamp = &entries[3]["surfaces"][0]["steps"][0]["outputs"]["sw_stamp"];
    assert_eq!(stamp.as_str().unwrap().len(), 16, "{stamp}");
    let human = stack.slipway(&["log", "-n", "2"], &[]);
    let human = String::from_utf8(human.stdout).unwrap();
    assert!(human.contains("by ci:octocat"), "{human}");
    assert!(
        human.contains("rollback") && !human.contains("backend"),
        "{human}"
    );

    // SIGKILL a deploy at points through its run: the journal always parses.
    for delay_ms in [0, 30, 60, 120, 250, 500] {
        std::fs::write(
            stack.path().join("website/dist/build-id.txt"),
            format!("build kill-{delay_ms}\n"),
        )
        .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["deploy", "website"])
            .current_dir(stack.path())
            .env("HONEYCHAT_SITE_PORT", stack.site_port.to_string())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // What a crash inside write(2) would leave: half a line.
    let mut bytes = std::fs::read(journal_file(&stack)).unwrap();
    bytes.extend_from_slice(br#"{"ts":"2026-11-26T00:00:00.000Z","command":"dep"#);
    std::fs::write(journal_file(&stack), bytes).unwrap();
    let before = journal(&stack).len();
    deploy(&stack, "website", &[]);
    let after = journal(&stack);
    assert_eq!(after.len(), before + 1, "the next deploy is one whole line");
    assert_eq!(after.last().unwrap()["command"], "deploy");
    let log = stack.slipway(&["log"], &[]);
    assert!(
        text(&log).contains("1 line(s)") && text(&log).contains("incomplete"),
        "{}",
        text(&log)
    );
}

#[test]
fn rollback_brings_back_the_previous_image_through_nginx_and_status_sees_drift() {
    let stack = Stack::up();
    let v1 = image_of(&stack, "api");
    stack.set_version("api", "v2");
    deploy(&stack, "backend", &[("APP_VERSION", "v2")]);
    let v2 = image_of(&stack, "api");
    assert_ne!(v1, v2);
    let status = stack.slipway(&["status", "--json"], &[]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));

    // Rollback: api runs its v1 image again, and nginx routes to it.
    let out = stack.slipway(&["rollback", "backend", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(image_of(&stack, "api"), v1);
    let (code, body) = http_get(stack.port, "/version");
    assert_eq!(code, 200);
    assert!(body.starts_with("honeychat-api v1 "), "{body}");
    let report = crate::ci_report::valid_report(&out);
    let nginx = &report["surfaces"][0]["steps"][0]["calls"][0];
    assert!(
        nginx["message"].as_str().unwrap().contains("reloaded"),
        "{nginx}"
    );
    let status = stack.slipway(&["status", "--json"], &[]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));

    // Nothing recorded before the compose-built v1: a second rollback leaves it.
    let out = stack.slipway(&["rollback", "backend"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(image_of(&stack, "api"), v1);

    // Deploy v3, then someone rebuilds and recreates api by hand.
    stack.set_version("api", "v3");
    deploy(&stack, "backend", &[("APP_VERSION", "v3")]);
    stack.set_version("api", "v4-by-hand");
    stack.compose("build api");
    stack.compose("up -d --no-deps api");
    let by_hand = image_of(&stack, "api");
    let status = stack.slipway(&["status", "--json"], &[]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let doc = json(&status);
    let api = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "api")
        .unwrap();
    assert_eq!(api["drift"], true, "{api}");
    assert_eq!(api["image_running"].as_str().unwrap(), by_hand);
    let worker = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "worker")
        .unwrap();
    assert_eq!(worker["drift"], false, "{worker}");
    let human = stack.slipway(&["status"], &[]);
    assert!(text(&human).contains("DRIFT"), "{}", text(&human));
}

/// `slipway log` prints a journal whose ids, users and names are not ASCII
/// (a label, a CI variable or a plugin's output can hold any UTF-8), cutting
/// ids short by character. No containers needed.
#[test]
fn log_prints_entries_whose_ids_and_users_are_not_ascii() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  api:\n    image: busybox\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("slipway.toml"),
        format!("[project]\nname = \"{}\"\n", unique("slj")),
    )
    .unwrap();
    let odd = "déploiement-ü-日本語";
    // An id whose 12th byte falls inside a character.
    let id = "日本語-déploiement-ü";
    let entries = [
        serde_json::json!({"ts": "2026-12-01T00:00:00.000Z", "command": "deploy", "project": odd,
            "ok": false, "error": odd, "duration_ms": 1200, "who": {"user": odd},
            "surfaces": [{"name": odd, "outcome": "failed", "duration_ms": 1200,
                "services": [{"service": odd, "image_before": format!("sha256:{id}"),
                    "image_after": id}],
                "steps": [{"plugin": odd, "plugin_name": odd, "plugin_version": odd,
                    "sha256": id, "ok": false, "outputs": {"release": odd}}]}]}),
        serde_json::json!({"ts": "2026-12-01T00:01:00.000Z", "command": "watch", "project": odd,
            "ok": true, "duration_ms": 0, "who": {"ci": {"GITHUB_ACTOR": odd}},
            "watcher": odd, "action": odd}),
    ];
    let state = dir.path().join(".slipway");
    std::fs::create_dir_all(&state).unwrap();
    let lines: String = entries.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(state.join("journal.jsonl"), lines).unwrap();

    let out = slipway(dir.path(), &["log"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    for expected in [
        format!("by {odd}"),
        format!("by ci:{odd}"),
        "日本語-déploiem -> 日本語-déploiem".to_owned(),
        format!("sha256:日本語-déploiem release={odd}"),
        format!("error: {odd}"),
    ] {
        assert!(stdout.contains(&expected), "`{expected}` in:\n{stdout}");
    }

    let out = slipway(dir.path(), &["log", "--json", "-n", "1"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let last: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(last, entries[1]);
}
