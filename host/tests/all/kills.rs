//! The kill matrix: the agent is SIGKILLed just after each operation of a
//! command reports itself done (a build, a replace, a wait, a plugin step),
//! and at random points inside half of the operations, drawn anew each
//! run. After every kill a plain rerun must repair everything: the journal
//! parses, the lock is free, one container runs per service on the desired
//! spec, nginx's files are the operator's (and, under the zero-downtime
//! strategy, its upstream include file is back as written), each static
//! site is one whole release, and every request succeeds after the rerun
//! (and during it, under the zero-downtime strategy).
//!
//! `SLIPWAY_KILL_INSIDE` sets the random points inside operations (default:
//! half the operations, each in a different one);
//! `SLIPWAY_KILL_SEED` replays the points of a run, which each test prints.

use crate::astro::{check_page, generate, hot_pages};
use crate::harness::{Churn, Load, Stack, http_get, json, plain_nginx, sh, text};
use crate::miniapp::set_release;
use crate::nginx::use_plugin;
use crate::rule2::{WINDOW, assert_no_failures, load_after};
use crate::watch::{Source, Tunnel, add_watchdog};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Where a round's SIGKILL lands.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Just after the `n`th operation reported itself done.
    Boundary(usize),
    /// This long after operation `n` ended (after the start, for 0).
    Inside(usize, Duration),
}

/// A command's environment.
type Env = Vec<(String, String)>;
/// Makes round `n`'s change; returns the command's environment.
type Prepare = Box<dyn Fn(&Stack, u32) -> Env>;
/// Checks what users see once round `n` has converged.
type Check = Box<dyn Fn(&Stack, u32)>;

/// A command under the matrix.
struct Case {
    args: Vec<&'static str>,
    prepare: Prepare,
    check: Check,
    /// `plan backend` must find nothing to do after the rerun.
    plan_converges: bool,
    /// No request may fail during the rerun.
    zero_downtime: bool,
}

/// A tiny xorshift, so a run's points can be replayed from its seed.
struct Points(u64);

impl Points {
    /// splitmix64 of the seed: a small seed would start xorshift near 0.
    fn new(seed: u64) -> Points {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Points((z ^ (z >> 31)) | 1)
    }

    /// `0..n` in a random order.
    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = ((self.fraction() * (i + 1) as f64) as usize).min(i);
            order.swap(i, j);
        }
        order
    }

    fn fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A line the agent prints when an operation has ended.
fn is_boundary(line: &str) -> bool {
    line.contains(" … done in ") || line.contains(" … failed after ")
}

fn spawn(
    stack: &Stack,
    case: &Case,
    env: &[(String, String)],
) -> (Child, Receiver<(Instant, String)>) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = stack
        .slipway_command(&case.args, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Run round `round` of the command through to its end: when each
/// operation ended, and when the command did, counted from its start.
fn calibrate(stack: &Stack, case: &Case, round: u32) -> Vec<Duration> {
    let env = (case.prepare)(stack, round);
    let start = Instant::now();
    let (mut child, lines) = spawn(stack, case, &env);
    let mut ends = Vec::new();
    let mut log = String::new();
    for (at, line) in lines.iter() {
        if is_boundary(&line) {
            ends.push(at - start);
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().unwrap();
    ends.push(start.elapsed());
    assert!(status.success(), "{:?} failed unkilled:\n{log}", case.args);
    ends
}

/// SIGKILL the child at `at`; false when it ended first.
fn kill_at(child: &mut Child, lines: &Receiver<(Instant, String)>, at: KillAt) -> bool {
    let start = Instant::now();
    let (wanted, delay) = match at {
        KillAt::Boundary(n) => (n, Duration::ZERO),
        KillAt::Inside(n, d) => (n, d),
    };
    let (mut seen, mut last) = (0, start);
    loop {
        if seen >= wanted && last.elapsed() >= delay {
            let _ = child.kill();
            return child.wait().unwrap().signal() == Some(9);
        }
        match lines.recv_timeout(Duration::from_millis(2)) {
            Ok((t, line)) if is_boundary(&line) && seen < wanted => {
                seen += 1;
                last = t;
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                child.wait().unwrap();
                return false;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the command hung"
        );
    }
}

/// The operator's nginx files (the upstream includes are the strategies').
fn operator_nginx(stack: &Stack) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == "upstreams" {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let root = stack.path().join("nginx");
    let mut files = BTreeMap::new();
    walk(&root, &root, &mut files);
    files
}

/// Every service of the project: its containers' states.
fn containers(stack: &Stack) -> BTreeMap<String, Vec<String>> {
    let rows = sh(
        &format!(
            "docker ps -a --filter label=com.docker.compose.project={} --format '{{{{.Label \"com.docker.compose.service\"}}}} {{{{.State}}}}'",
            stack.project
        ),
        stack.path(),
        &[],
    );
    let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows.lines() {
        let (service, state) = row.split_once(' ').unwrap();
        by_service
            .entry(service.to_owned())
            .or_default()
            .push(state.to_owned());
    }
    by_service
}

/// What nginx logged last and the project's containers: why a check failed.
fn scene(stack: &Stack) -> String {
    sh(
        &format!(
            "docker logs --tail 20 {nginx} 2>&1; docker ps -a --filter label=com.docker.compose.project={p} \
             --format '{{{{.Names}}}} {{{{.State}}}} {{{{.Status}}}}'; \
             docker exec {nginx} cat /etc/nginx/upstreams/api.conf 2>&1 || true",
            nginx = stack.container("nginx"),
            p = stack.project
        ),
        stack.path(),
        &[],
    )
}

/// How many entries the journal holds, each of which must parse.
fn journal_entries(stack: &Stack, what: &str) -> usize {
    let journal =
        std::fs::read_to_string(stack.path().join(".slipway/journal.jsonl")).unwrap_or_default();
    for line in journal.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
            "{what}: a journal line does not parse: {line}"
        );
    }
    journal.lines().count()
}

/// The plain rerun after a kill, under load when no request may fail.
fn rerun(stack: &Stack, case: &Case, env: &Env, what: &str) {
    let load = case.zero_downtime.then(|| Load::start(stack.port, 100));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = stack.slipway(&case.args, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: the rerun: {}",
        text(&out)
    );
    if let Some(load) = load {
        let tally = load.stop_after(WINDOW).0;
        assert_no_failures(&tally, &format!("{what}: during the rerun"));
    }
}

fn assert_plan_converged(stack: &Stack, what: &str) {
    let out = stack.slipway(&["plan", "--json", "backend"], &[]);
    assert_eq!(out.status.code(), Some(0), "{what}: plan: {}", text(&out));
    let report = json(&out);
    for service in report["surfaces"][0]["services"].as_array().unwrap() {
        assert_eq!(
            service["action"], "skip",
            "{what}: plan after the rerun: {service}"
        );
    }
}

/// Kill the case's command at every point, rerun, check. Prints its row of
/// the matrix.
fn matrix(name: &str, stack: &Stack, case: Case) {
    let operator = operator_nginx(stack);
    // The zero-downtime strategy pins api's include file during a deploy
    // and must leave it as written once a rerun has repaired the run.
    let include = stack.path().join("nginx/upstreams/api.conf");
    let written = case
        .zero_downtime
        .then(|| std::fs::read_to_string(&include).unwrap());
    let services = containers(stack);
    // The first run also does what only a first run does (slipway takes
    // over what `compose up` made), so the matrix is timed on the second,
    // which does what every later round does.
    calibrate(stack, &case, 1);
    (case.check)(stack, 1);
    let ends = calibrate(stack, &case, 2);
    (case.check)(stack, 2);
    let seed = env_number("SLIPWAY_KILL_SEED", u64::from(std::process::id()) | 1);
    let mut points = Points::new(seed);
    let mut plan: Vec<KillAt> = (1..ends.len()).map(KillAt::Boundary).collect();
    // Every boundary on every run; inside, half the operations, drawn anew
    // on each run (its seed replays them), so runs cover them all in turn.
    let inside = env_number("SLIPWAY_KILL_INSIDE", ends.len().div_ceil(2) as u64);
    let order = points.shuffled(ends.len());
    for k in 0..inside as usize {
        let n = order[k % order.len()];
        let began = if n == 0 { Duration::ZERO } else { ends[n - 1] };
        plan.push(KillAt::Inside(
            n,
            (ends[n] - began).mul_f64(points.fraction()),
        ));
    }
    let mut killed = 0;
    for (i, at) in plan.iter().enumerate() {
        let round = i as u32 + 3;
        let what = format!("{name} (seed {seed}), round {round}, killed at {at:?}");
        let env = (case.prepare)(stack, round);
        let recorded_before = journal_entries(stack, &what);
        let (mut child, lines) = spawn(stack, &case, &env);
        let died = kill_at(&mut child, &lines, *at);
        // A run that wrote its journal line had finished its work: a rerun
        // would be a new command (a second rollback goes back one more
        // deploy), so what it left is checked as it is.
        let finished = !died || journal_entries(stack, &what) > recorded_before;
        eprintln!(
            "{what}: {}",
            match (died, finished) {
                (false, _) => "finished first",
                (true, true) => "killed after it recorded its end",
                (true, false) => "killed",
            }
        );
        // Past its last boundary a run only prints its summary, so only a
        // kill there can come too late; any other point that is not
        // reached means the rounds stopped doing what the second one did.
        if let KillAt::Boundary(n) = at {
            assert!(died || *n == ends.len() - 1, "{what}: never reached");
        }
        if !finished {
            killed += 1;
            rerun(stack, &case, &env, &what);
        }
        let now = containers(stack);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            services.keys().collect::<Vec<_>>(),
            "{what}: {now:?}"
        );
        for (service, states) in &now {
            assert_eq!(states, &["running"], "{what}: {service}: {now:?}");
        }
        if case.plan_converges {
            assert_plan_converged(stack, &what);
        }
        assert_eq!(
            operator_nginx(stack),
            operator,
            "{what}: nginx's files changed"
        );
        if let Some(written) = &written {
            assert_eq!(
                &std::fs::read_to_string(&include).unwrap(),
                written,
                "{what}: api's include file is still pinned"
            );
        }
        let checked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.check)(stack, round)));
        if let Err(panic) = checked {
            eprintln!(
                "{what}: users do not see the rerun's version:\n{}",
                scene(stack)
            );
            std::panic::resume_unwind(panic);
        }
        assert_no_failures(&load_after(stack), &format!("{what}: after the rerun"));
    }
    eprintln!(
        "kill matrix: {name}: {} runs ({} boundaries, {inside} inside {} operations), \
         {killed} killed mid-run and rerun, {} converged (seed {seed})",
        plan.len(),
        ends.len() - 1,
        ends.len(),
        plan.len()
    );
}

fn backend(stack: &Stack, round: u32) -> Env {
    let version = format!("v{round}");
    stack.set_version("api", &version);
    vec![("APP_VERSION".into(), version)]
}

fn assert_api(stack: &Stack, version: &str) {
    let (status, body) = http_get(stack.port, "/version");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(&format!("honeychat-api {version} ")),
        "want {version}: {body}"
    );
}

fn website(stack: &Stack, round: u32) {
    generate(&stack.path().join("website/dist"), round, 10, 4);
}

fn assert_website(stack: &Stack, round: u32) {
    for page in hot_pages(20) {
        assert_eq!(check_page(stack.site_port, &page), Ok(round), "{page}");
    }
}

fn miniapp(stack: &Stack, round: u32) {
    set_release(stack, &format!("v{round}"));
}

fn assert_miniapp(stack: &Stack, round: u32) {
    for (path, marker) in [("/", "data-version=\"v"), ("/app.js", "v")] {
        let (status, body) = http_get(stack.app_port, path);
        assert_eq!(status, 200, "{path}");
        assert!(
            body.contains(&format!("{marker}{round}")),
            "{path} is not v{round}: {body}"
        );
    }
}

fn deploy_backend(strategy: &str) -> (Stack, Case) {
    let stack = Stack::up();
    let case = backend_case(&stack, strategy);
    (stack, case)
}

/// `deploy backend` under `strategy`, on the stack as it is.
fn backend_case(stack: &Stack, strategy: &str) -> Case {
    use_plugin(stack, strategy);
    Case {
        args: vec!["deploy", "backend"],
        prepare: Box::new(backend),
        check: Box::new(|stack, round| assert_api(stack, &format!("v{round}"))),
        plan_converges: true,
        zero_downtime: strategy == "nginx-zero-downtime.wasm",
    }
}

#[test]
fn deploy_backend_nginx_reload() {
    let (stack, case) = deploy_backend("nginx-reload.wasm");
    matrix("deploy backend (nginx-reload)", &stack, case);
}

/// On a configuration slipway did not write: the one-line `location` a new
/// user writes, with containers joining api's network all the while, so
/// that a recreated api's address is taken by another container.
#[test]
fn deploy_backend_nginx_reload_on_a_plain_config_under_ip_churn() {
    let stack = Stack::up_with(plain_nginx);
    let churn = Churn::start(&stack.project);
    let case = backend_case(&stack, "nginx-reload.wasm");
    matrix(
        "deploy backend (nginx-reload, plain nginx.conf, IP churn)",
        &stack,
        case,
    );
    assert!(churn.stop() > 0, "no container joined the network");
}

#[test]
fn deploy_backend_nginx_overlap() {
    let (stack, case) = deploy_backend("nginx-overlap.wasm");
    matrix("deploy backend (nginx-overlap)", &stack, case);
}

#[test]
fn deploy_backend_nginx_zero_downtime() {
    let (stack, case) = deploy_backend("nginx-zero-downtime.wasm");
    matrix("deploy backend (nginx-zero-downtime)", &stack, case);
}

/// A static surface's deploy: `change` makes round `n`'s build.
fn deploy_static(surface: &'static str, change: fn(&Stack, u32), check: fn(&Stack, u32)) {
    let stack = Stack::up();
    let case = Case {
        args: vec!["deploy", surface],
        prepare: Box::new(move |stack, round| {
            change(stack, round);
            Vec::new()
        }),
        check: Box::new(check),
        plan_converges: false,
        zero_downtime: false,
    };
    matrix(&format!("deploy {surface}"), &stack, case);
}

#[test]
fn deploy_website() {
    deploy_static("website", website, assert_website);
}

#[test]
fn deploy_miniapp() {
    deploy_static("miniapp", miniapp, assert_miniapp);
}

#[test]
fn deploy_all() {
    let stack = Stack::up();
    let case = Case {
        args: vec!["deploy", "--all"],
        prepare: Box::new(|stack, round| {
            website(stack, round);
            miniapp(stack, round);
            backend(stack, round)
        }),
        check: Box::new(|stack, round| {
            assert_api(stack, &format!("v{round}"));
            assert_website(stack, round);
            assert_miniapp(stack, round);
        }),
        plan_converges: true,
        zero_downtime: false,
    };
    matrix("deploy --all", &stack, case);
}

/// Each round deploys the next version, then kills its rollback: the rerun
/// brings back v1, the version every deploy replaced.
#[test]
fn rollback_backend() {
    let stack = Stack::up();
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v1")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let case = Case {
        args: vec!["rollback", "backend"],
        prepare: Box::new(|stack, round| {
            let env = backend(stack, round + 1);
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let out = stack.slipway(&["deploy", "backend"], &env);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            vec![("APP_VERSION".into(), "v1".into())]
        }),
        check: Box::new(|stack, _| assert_api(stack, "v1")),
        plan_converges: false,
        zero_downtime: false,
    };
    matrix("rollback backend", &stack, case);
}

/// A watchdog tick that acts: each round the address moves, and the tick
/// recreates bot (and the backend's nginx step runs for it).
#[test]
fn a_watchdog_tick_that_acts() {
    let stack = Stack::up();
    // The plan check compares with what slipway deployed, not with `compose up`.
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v1")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let source = std::sync::Arc::new(Source::start("192.0.2.1"));
    let tunnel = Tunnel::up();
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        "services = [\"bot\"], confirm_ticks = 1, cooldown_ms = 0",
        "\"bot\"",
    );
    let out = stack.slipway(&["watch", "--once", "vast"], &[]);
    assert_eq!(out.status.code(), Some(0), "baseline: {}", text(&out));
    let moved = source.clone();
    let case = Case {
        args: vec!["watch", "--once", "vast"],
        prepare: Box::new(move |_, round| {
            moved.ip(&format!("192.0.2.{}", round + 1));
            vec![("APP_VERSION".into(), "v1".into())]
        }),
        check: Box::new(|stack, round| {
            let out = stack.slipway(
                &["watch", "--once", "vast"],
                &[("SLIPWAY_LOG", "slipway=debug")],
            );
            let log = text(&out);
            assert!(
                log.contains(&format!("address unchanged (192.0.2.{})", round + 1)),
                "{log}"
            );
        }),
        plan_converges: true,
        zero_downtime: false,
    };
    matrix("watch tick that acts", &stack, case);
    drop(tunnel);
}
