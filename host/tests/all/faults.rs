//! Faults around a deploy: CI jobs racing for the deploy lock, a full disk
//! under the state directory, and nginx's container dying mid-deploy.

use crate::harness::{Load, Stack, Tmpfs, docker_inspect, http_get, sh, text};
use crate::nginx::use_plugin;
use crate::rule2::assert_no_failures;
use serde_json::Value;
use std::path::Path;
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
    let stack = Stack::up();
    stack.edit_compose(
        "      APP_ENV: production\n",
        "      APP_ENV: production\n      CI_JOB_ID: \"${CI_JOB_ID:-0}\"\n",
    );
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

/// Leave `leave` bytes free on `dir`'s filesystem, with a ballast file.
fn fill(dir: &Path, leave: u64) {
    let ballast = dir.join("ballast");
    if leave == 0 {
        // Written until the filesystem says no: exactly nothing is left.
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=64k", "status=none"])
            .arg(format!("of={}", ballast.display()))
            .status();
        return;
    }
    let stat = sh(&format!("stat -f -c '%a %S' {}", dir.display()), dir, &[]);
    let (blocks, size) = stat.trim().split_once(' ').unwrap();
    let free = blocks.parse::<u64>().unwrap() * size.parse::<u64>().unwrap();
    sh(
        &format!("fallocate -l {} {}", free - leave, ballast.display()),
        dir,
        &[],
    );
}

/// Every JSON file under the state directory parses, and every journal line.
fn assert_state_whole(state: &Path, what: &str) {
    let journal = std::fs::read_to_string(state.join("journal.jsonl")).unwrap_or_default();
    for line in journal.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "{what}: a torn journal line: {line}"
        );
    }
    let files = sh(
        &format!("find {} -name '*.json'", state.display()),
        state,
        &[],
    );
    for file in files.lines() {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            serde_json::from_slice::<Value>(&bytes).is_ok(),
            "{what}: {file} is torn"
        );
    }
}

fn api_version(stack: &Stack) -> String {
    let (status, body) = http_get(stack.port, "/version");
    assert_eq!(status, 200, "{body}");
    body.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// The state directory (journal, specs, plugin state) on a small disk.
/// Nearly full before a deploy: it is refused and changes nothing. Filled
/// while the deploy runs: nothing in it is torn, what fails says so, and
/// the site keeps serving. With space again, a rerun converges.
#[test]
fn a_full_disk_under_the_state_directory_tears_nothing_and_the_site_keeps_serving() {
    let stack = Stack::up();
    let deploy = |version: &str| {
        stack.set_version("api", version);
        stack.slipway(&["deploy", "backend"], &[("APP_VERSION", version)])
    };
    let out = deploy("v1");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let state = stack.path().join(".slipway");
    let saved = stack.path().join("state-before");
    std::fs::rename(&state, &saved).unwrap();
    std::fs::create_dir(&state).unwrap();
    let _disk = Tmpfs::mount_at(&state, "4m");
    sh(
        &format!("cp -a {}/. {}", saved.display(), state.display()),
        stack.path(),
        &[],
    );
    let api = || docker_inspect(&stack.container("api"))["Id"].clone();

    fill(&state, 256 * 1024);
    let (before, journal) = (api(), std::fs::read(state.join("journal.jsonl")).unwrap());
    let out = deploy("v2");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is on a full filesystem") && text(&out).contains("free space there"),
        "{}",
        text(&out)
    );
    assert_eq!(api(), before, "a refused deploy replaced api");
    assert_eq!(std::fs::read(state.join("journal.jsonl")).unwrap(), journal);
    assert_eq!(api_version(&stack), "v1");
    std::fs::remove_file(state.join("ballast")).unwrap();

    // Full from the moment the build is done, with a new spec to save and
    // a journal whose last page has no room left (a blank line, which
    // readers skip, pads it to the page).
    stack.set_version("api", "v3");
    stack.edit_compose("APP_ENV: production", "APP_ENV: production-3");
    let journal = state.join("journal.jsonl");
    let len = std::fs::metadata(&journal).unwrap().len();
    let pad = (4096 - (len + 1) % 4096) % 4096;
    let mut padded = std::fs::read(&journal).unwrap();
    padded.extend(std::iter::repeat_n(b' ', pad as usize));
    padded.push(b'\n');
    std::fs::write(&journal, padded).unwrap();
    let mut child = stack
        .slipway_command(&["deploy", "backend"], &[("APP_VERSION", "v3")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let mut filled = false;
    while std::io::BufRead::read_line(&mut stderr, &mut log).unwrap() > 0 {
        if !filled && log.contains(" … done in ") {
            // Held still while the disk fills, so that it is full before
            // the deploy writes anything.
            let pid = child.id().to_string();
            sh(&format!("kill -STOP {pid}"), stack.path(), &[]);
            fill(&state, 0);
            sh(&format!("kill -CONT {pid}"), stack.path(), &[]);
            filled = true;
        }
    }
    let code = child.wait().unwrap().code();
    assert!(filled, "the deploy printed no operation: {log}");
    eprintln!("deploy on a disk that filled up: exit {code:?}\n{log}");
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("cannot append to the journal"), "{log}");
    assert_state_whole(&state, "after the deploy on a full disk");
    let serving = api_version(&stack);
    assert!(matches!(serving.as_str(), "v1" | "v3"), "serving {serving}");

    std::fs::remove_file(state.join("ballast")).unwrap();
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v3")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(api_version(&stack), "v3");
    assert_state_whole(&state, "after the rerun");
}

/// Run `deploy backend` at `version`, and `docker kill` nginx's container
/// (which Docker's `unless-stopped` policy does not undo) as soon as
/// `moment` holds. Returns the deploy's output and its JSON report.
fn deploy_killing_nginx(
    stack: &Stack,
    version: &str,
    moment: impl Fn() -> bool,
) -> (std::process::Output, Value) {
    stack.set_version("api", version);
    let child = stack
        .slipway_command(
            &["deploy", "backend", "--json"],
            &[("APP_VERSION", version)],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !moment() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the moment to kill nginx never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sh(
        &format!("docker kill {}", stack.container("nginx")),
        stack.path(),
        &[],
    );
    let out = child.wait_with_output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

fn nginx_state(stack: &Stack) -> String {
    docker_inspect(&stack.container("nginx"))["State"]["Status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// nginx's container dies mid-deploy. Inside the nginx step (the
/// zero-downtime strategy's replacement api is waiting on its healthcheck):
/// the deploy fails naming nginx, starts nginx again on its way out, and
/// the old api serves every request; a plain rerun ships the new one.
/// Before the step (a stop-first recreate of api is waiting on its
/// healthcheck): the step finds nginx stopped, starts it, and the deploy
/// goes through, saying so.
#[test]
fn nginx_dying_mid_deploy_fails_naming_nginx_and_users_are_served_again() {
    let stack = Stack::up();
    use_plugin(&stack, "nginx-zero-downtime.wasm");
    let replacing = || crate::nginx::api_containers(&stack) == 2;
    let (out, report) = deploy_killing_nginx(&stack, "v2", replacing);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("`nginx`"), "nginx is not named: {error}");
    assert!(
        error
            .contains("nginx (was exited) had stopped during the deploy; slipway started it again"),
        "{error}"
    );
    assert_eq!(
        report["surfaces"][0]["steps"][0]["started"][0],
        "nginx (was exited)"
    );
    assert_eq!(nginx_state(&stack), "running");
    assert_no_failures(&crate::rule2::load_after(&stack), "after the failed deploy");
    assert_eq!(api_version(&stack), "v1", "the old api must serve");
    assert_eq!(
        crate::nginx::api_containers(&stack),
        1,
        "a replacement was left"
    );

    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v2")]);
    assert_eq!(out.status.code(), Some(0), "the rerun: {}", text(&out));
    assert_eq!(api_version(&stack), "v2");

    use_plugin(&stack, "nginx-reload.wasm");
    let old = crate::rule2::api_id(&stack);
    let recreated = || {
        let now = sh(
            // The name is briefly free while the old container makes way.
            &format!(
                "docker inspect -f '{{{{.Id}}}}' {} 2>/dev/null || true",
                stack.container("api")
            ),
            stack.path(),
            &[],
        );
        !now.trim().is_empty() && now.trim() != old
    };
    let (out, report) = deploy_killing_nginx(&stack, "v3", recreated);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        report["surfaces"][0]["steps"][0]["started"][0], "nginx (was exited)",
        "{report}"
    );
    assert_no_failures(&crate::rule2::load_after(&stack), "after the deploy");
    assert_eq!(api_version(&stack), "v3");
}
