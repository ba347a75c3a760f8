//! Faults around a deploy: CI jobs racing for the deploy lock.

use crate::harness::{Load, Stack, docker_inspect, sh, text};
use crate::nginx::use_plugin;
use crate::rule2::assert_no_failures;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// The deploy entries of the stack's journal, in the order they were written.
fn deploys(stack: &Stack) -> Vec<Value> {
    let journal = std::fs::read_to_string(stack.path().join(".slipway/journal.jsonl")).unwrap();
    journal
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["command"] == "deploy")
        .collect()
}

/// When an entry's run began and ended: it is written as the run ends.
fn interval(entry: &Value) -> (SystemTime, SystemTime) {
    let end = humantime::parse_rfc3339(entry["ts"].as_str().unwrap()).unwrap();
    let took = Duration::from_millis(entry["duration_ms"].as_u64().unwrap());
    (end - took, end)
}

/// api's service entry in a journal entry.
fn api_of(entry: &Value) -> &Value {
    entry["surfaces"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "api")
        .unwrap_or_else(|| panic!("no api in {entry}"))
}

/// Ten CI jobs start `deploy backend --lock-wait` at once, each with its own
/// build of api (its CI_JOB_ID is in api's environment), under 100 req/s and
/// the zero-downtime strategy. They take turns: each succeeds, their runs do
/// not overlap in the journal, each one replaced what the one before it
/// left, the last job's build is what runs, and no request fails.
#[test]
fn ten_ci_jobs_racing_deploy_backend_take_turns_and_each_succeeds() {
    let stack = Stack::up_with(|dir| {
        let compose = dir.join("docker-compose.yml");
        let text = std::fs::read_to_string(&compose).unwrap();
        let text = text.replacen(
            "      APP_ENV: production\n",
            "      APP_ENV: production\n      CI_JOB_ID: \"${CI_JOB_ID:-0}\"\n",
            1,
        );
        std::fs::write(compose, text).unwrap();
    });
    use_plugin(&stack, "nginx-zero-downtime.wasm");
    let load = Load::start(stack.port, 100);
    let jobs: Vec<_> = (1..=10)
        .map(|job| {
            let id = job.to_string();
            let env = [("APP_VERSION", "v1"), ("CI_JOB_ID", id.as_str())];
            let child = stack
                .slipway_command(&["deploy", "backend", "--lock-wait", "900"], &env)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (job, child)
        })
        .collect();
    for (job, child) in jobs {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "job {job}: {}", text(&out));
    }
    let (tally, during) = load.stop();
    eprintln!("10 racing deploys in {during:?}: {tally:?}");

    let entries = deploys(&stack);
    assert_eq!(entries.len(), 10, "one journal entry per job");
    let mut jobs_seen: Vec<&str> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry["ok"], true, "{entry}");
        jobs_seen.push(entry["who"]["ci"]["CI_JOB_ID"].as_str().unwrap());
        let api = api_of(entry);
        assert_eq!(
            api["action"], "replace",
            "entry {i} did not ship its build: {entry}"
        );
        if i == 0 {
            continue;
        }
        let previous = &entries[i - 1];
        assert!(
            interval(previous).1 <= interval(entry).0,
            "runs overlap: {previous}\n{entry}"
        );
        assert_eq!(
            api["spec_before"],
            api_of(previous)["spec_after"],
            "entry {i} did not start from what entry {} left",
            i - 1
        );
    }
    jobs_seen.sort_unstable();
    jobs_seen.dedup();
    assert_eq!(
        jobs_seen.len(),
        10,
        "every job deployed once: {jobs_seen:?}"
    );

    let last = entries[9]["who"]["ci"]["CI_JOB_ID"].as_str().unwrap();
    let running = sh(
        &format!(
            "docker ps -q --filter label=com.docker.compose.project={} --filter label=com.docker.compose.service=api",
            stack.project
        ),
        stack.path(),
        &[],
    );
    let running: Vec<&str> = running.lines().collect();
    assert_eq!(running.len(), 1, "api containers running: {running:?}");
    let env = docker_inspect(running[0])["Config"]["Env"].clone();
    assert!(
        env.as_array()
            .unwrap()
            .contains(&Value::from(format!("CI_JOB_ID={last}"))),
        "api does not run the last job's ({last}) build: {env}"
    );
    assert_no_failures(&tally, "during 10 racing deploys");
}
