//! The GPU-tunnel watchdog under `slipway watch`, against a fake address
//! source on loopback whose answers the test controls and real containers.
//! Most ticks run as separate `slipway watch --once` processes, so every
//! test also shows that the watchdog's memory survives an agent restart.

use crate::harness::{Stack, docker_inspect, plugin, text};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
enum Answer {
    Body(String),
    Status(u16),
    Hang,
    /// A source that cannot make up its mind: see [`flapping`].
    Flapping,
}

/// An HTTP endpoint answering what the test last set.
pub(crate) struct Source {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    /// Requests answered so far: one per tick.
    served: Arc<AtomicU64>,
}

/// The `n`th answer of a flapping source: runs of 1 to 8 answers on one of
/// four addresses (most too short to confirm), a 500 every 37th request and
/// a non-address every 53rd.
fn flapping(n: u64) -> (u16, String) {
    if n % 37 == 36 {
        return (500, "oops".into());
    }
    if n % 53 == 52 {
        return (200, "<html>maintenance</html>".into());
    }
    // Runs follow a fixed pseudo-random sequence of lengths.
    const RUNS: [u64; 8] = [1, 1, 2, 1, 3, 1, 2, 8];
    let (mut start, mut run) = (0, 0);
    while start + RUNS[run % RUNS.len()] <= n {
        start += RUNS[run % RUNS.len()];
        run += 1;
    }
    (200, format!("192.0.2.{}\n", 10 + run % 4))
}

impl Source {
    pub(crate) fn start(first: &str) -> Source {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(Answer::Body(first.to_owned())));
        let served = Arc::new(AtomicU64::new(0));
        let (shared, count) = (answer.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let answer = shared.lock().unwrap().clone();
                let n = count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf);
                    let (status, body) = match answer {
                        Answer::Body(b) => (200, b),
                        Answer::Status(s) => (s, "oops".into()),
                        Answer::Flapping => flapping(n),
                        Answer::Hang => {
                            std::thread::sleep(Duration::from_secs(5));
                            return;
                        }
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Source {
            port,
            answer,
            served,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub(crate) fn ip(&self, ip: &str) {
        self.set(Answer::Body(format!("{ip}\n")));
    }
}

/// The tunnel's far end: a port that accepts connections or refuses them.
pub(crate) struct Tunnel {
    port: u16,
    listener: Option<TcpListener>,
}

impl Tunnel {
    pub(crate) fn up() -> Tunnel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Tunnel {
            port: listener.local_addr().unwrap().port(),
            listener: Some(listener),
        }
    }

    fn down(&mut self) {
        self.listener = None;
    }
}

/// Add the watchdog to the stack's manifest, with fast settings.
pub(crate) fn add_watchdog(
    stack: &Stack,
    source: &Source,
    tunnel: &Tunnel,
    config: &str,
    docker: &str,
) {
    let path = stack.path().join("slipway.toml");
    let mut manifest = std::fs::read_to_string(&path).unwrap();
    manifest.push_str(&format!(
        r#"
[plugins.vast]
path = "{}"

[watch.vast]
plugin = "vast"
interval_ms = 100
config = {{ source = "http://127.0.0.1:{}/ip", tunnel_probe = "127.0.0.1:{}", source_timeout_ms = 300, ready_timeout_ms = 30000, {config} }}
grants = {{ docker = [{docker}], probe = ["127.0.0.1:{}", "127.0.0.1:{}"] }}
"#,
        plugin("vast-watchdog").display(),
        source.port,
        tunnel.port,
        source.port,
        tunnel.port,
    ));
    std::fs::write(path, manifest).unwrap();
}

/// One tick in a fresh agent: (exit code, stderr).
fn tick(stack: &Stack) -> (i32, String) {
    let out = stack.slipway(
        &["watch", "--once", "vast"],
        &[("SLIPWAY_LOG", "slipway=debug")],
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids(stack: &Stack, services: &[&str]) -> Vec<String> {
    services
        .iter()
        .map(|s| {
            docker_inspect(&stack.container(s))["Id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_confirmed_change_recreates_each_service_exactly_once() {
    let stack = Stack::up();
    let source = Source::start("203.0.113.10");
    let tunnel = Tunnel::up();
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        "services = [\"bot\", \"worker\"], confirm_ticks = 3, cooldown_ms = 0",
        "\"bot\", \"worker\"",
    );
    let before = ids(&stack, &["bot", "worker", "api"]);
    for _ in 0..3 {
        assert_eq!(tick(&stack).0, 0);
    }
    source.ip("203.0.113.20");
    for n in 1..3 {
        let (code, log) = tick(&stack);
        assert_eq!(code, 0, "{log}");
        assert!(log.contains(&format!("seen {n}/3 ticks")), "{log}");
        assert_eq!(
            ids(&stack, &["bot", "worker", "api"]),
            before,
            "acted before confirmation"
        );
    }
    let (code, log) = tick(&stack);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("recreated bot,worker for 203.0.113.10 -> 203.0.113.20"),
        "{log}"
    );
    let after = ids(&stack, &["bot", "worker", "api"]);
    assert_ne!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    assert_eq!(after[2], before[2], "api was not configured");
    for service in ["bot", "worker"] {
        assert_eq!(
            docker_inspect(&stack.container(service))["State"]["Status"],
            "running"
        );
    }
    for _ in 0..3 {
        assert_eq!(tick(&stack).0, 0);
    }
    assert_eq!(
        ids(&stack, &["bot", "worker", "api"]),
        after,
        "recreated more than once"
    );
}

#[test]
fn flapping_and_bad_answers_never_recreate() {
    let stack = Stack::up();
    let source = Source::start("198.51.100.1");
    let tunnel = Tunnel::up();
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        "services = [\"bot\"], confirm_ticks = 2, cooldown_ms = 0",
        "\"bot\"",
    );
    let before = ids(&stack, &["bot"]);
    assert_eq!(tick(&stack).0, 0);
    for i in 0..10 {
        source.ip(if i % 2 == 0 {
            "198.51.100.2"
        } else {
            "198.51.100.1"
        });
        assert_eq!(tick(&stack).0, 0);
    }
    let bad = [
        (Answer::Status(500), "answered 500"),
        (Answer::Status(404), "answered 404"),
        (
            Answer::Body("<html>maintenance</html>".into()),
            "not an IP address",
        ),
        (Answer::Body("999.1.1.1".into()), "not an IP address"),
        (Answer::Body(String::new()), "not an IP address"),
        (Answer::Hang, "source failed"),
    ];
    for (answer, expected) in bad {
        source.set(answer);
        for _ in 0..3 {
            let (code, log) = tick(&stack);
            assert_eq!(code, 0, "{log}");
            assert!(
                log.contains(expected) && log.contains("no action"),
                "{expected}: {log}"
            );
        }
    }
    assert_eq!(
        ids(&stack, &["bot"]),
        before,
        "a flap or a bad answer caused a recreate"
    );
}

#[test]
fn a_storm_is_bounded_by_cooldown_then_the_breaker_trips_until_reset() {
    let stack = Stack::up();
    let source = Source::start("192.0.2.1");
    let mut tunnel = Tunnel::up();
    tunnel.down();
    let cooldown = Duration::from_millis(2500);
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        "services = [\"bot\"], confirm_ticks = 2, cooldown_ms = 2500, breaker_max = 3, breaker_window_ms = 600000",
        "\"bot\"",
    );
    let start = Instant::now();
    // (start, end) of each tick that recreated: the plugin decides somewhere
    // in between, so two decisions `cooldown` apart mean the later tick ended
    // at least `cooldown` after the earlier one started.
    let mut recreations: Vec<(Instant, Instant)> = Vec::new();
    let mut tripped_at = None;
    for t in 0..80 {
        // A new address every two ticks.
        source.ip(&format!("192.0.2.{}", 2 + t / 2));
        let began = Instant::now();
        let (code, log) = tick(&stack);
        if log.contains("recreated bot") {
            recreations.push((began, Instant::now()));
        }
        if code != 0 {
            assert!(log.contains("circuit breaker"), "{log}");
            tripped_at.get_or_insert(t);
        }
        if tripped_at.is_some_and(|at| t > at + 5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = start.elapsed();
    assert!(
        tripped_at.is_some(),
        "the breaker never tripped ({} recreations)",
        recreations.len()
    );
    assert_eq!(
        recreations.len(),
        3,
        "the breaker allows exactly breaker_max failed recreations"
    );
    let by_cooldown = 1 + (elapsed.as_millis() / cooldown.as_millis()) as usize;
    assert!(
        recreations.len() <= by_cooldown,
        "{} recreations in {elapsed:?}",
        recreations.len()
    );
    for pair in recreations.windows(2) {
        let (earlier_start, later_end) = (pair[0].0, pair[1].1);
        assert!(
            later_end - earlier_start >= cooldown,
            "two recreations within {:?}",
            later_end - earlier_start
        );
    }
    // Tripped: loud in status, and it stays tripped across agent restarts.
    let status = stack.slipway(&["status"], &[]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    assert!(text(&status).contains("FAILING"), "{}", text(&status));
    let (code, log) = tick(&stack);
    assert_eq!(code, 1);
    assert!(
        log.contains("circuit breaker open") && log.contains("--reset vast"),
        "{log}"
    );

    // A human resets it; it starts afresh from the current address.
    let out = stack.slipway(&["watch", "--reset", "vast"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, log) = tick(&stack);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("baseline address"), "{log}");
    assert_eq!(stack.slipway(&["status"], &[]).status.code(), Some(0));
}

#[test]
fn the_watchdog_reaches_only_what_it_was_granted() {
    let stack = Stack::up();
    let source = Source::start("203.0.113.1");
    let tunnel = Tunnel::up();
    // api is configured but not granted.
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        "services = [\"bot\", \"api\"], confirm_ticks = 1, cooldown_ms = 0",
        "\"bot\"",
    );
    let api = ids(&stack, &["api"]);
    assert_eq!(tick(&stack).0, 0);
    source.ip("203.0.113.2");
    let (code, log) = tick(&stack);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("docker inspect of service `api` is not granted"),
        "{log}"
    );
    assert_eq!(ids(&stack, &["api"]), api);

    // A source on a host:port that is not granted is refused, never followed.
    let path = stack.path().join("slipway.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let other = crate::harness::free_port();
    std::fs::write(
        &path,
        manifest.replace(
            &format!("http://127.0.0.1:{}/ip", source.port),
            &format!("http://127.0.0.1:{other}/ip"),
        ),
    )
    .unwrap();
    let (code, log) = tick(&stack);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("probe of 127.0.0.1:{other} is not granted")),
        "{log}"
    );
}

#[test]
fn watch_runs_until_sigterm_and_skips_ticks_while_a_deploy_holds_the_lock() {
    let stack = Stack::up();
    let source = Source::start("203.0.113.1");
    let tunnel = Tunnel::up();
    add_watchdog(&stack, &source, &tunnel, "services = [\"bot\"]", "\"bot\"");

    let lock = slipway::lock::DeployLock::acquire(
        &stack.path().join(".slipway"),
        "a test deploy",
        Duration::ZERO,
    )
    .unwrap();
    let (code, log) = tick(&stack);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("skipping this tick") && log.contains("a test deploy"),
        "{log}"
    );
    drop(lock);

    let child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .current_dir(stack.path())
        .args(["watch"])
        .env("SLIPWAY_CACHE_DIR", crate::harness::cache_dir())
        .env("SLIPWAY_LOG", "slipway=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    crate::harness::sh(&format!("kill -TERM {}", child.id()), stack.path(), &[]);
    let out = child.wait_with_output().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        sent.elapsed()
    );
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.matches("address unchanged").count() >= 5,
        "ticks did not run on the interval: {log}"
    );
    assert!(log.contains("stopping on signal"), "{log}");
}

/// Rule 2 on the watcher's path: api sits behind nginx (a one-line
/// `proxy_pass` to its name), its old address is taken by a decoy, and
/// containers keep joining the network. Once the watchdog has recreated it,
/// the backend surface's nginx step has run and every request succeeds.
#[test]
fn after_the_watchdog_recreates_api_nginx_reaches_its_new_address_under_churn() {
    let stack = Stack::up_with(crate::harness::plain_nginx);
    let source = Source::start("203.0.113.10");
    let tunnel = Tunnel::up();
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        "services = [\"api\"], confirm_ticks = 1, cooldown_ms = 0",
        "\"api\"",
    );
    assert_eq!(tick(&stack).0, 0);
    let old_ip = crate::nginx::decoy_takes_api_ip(&stack);
    let churn = crate::harness::Churn::start(&stack.project);
    source.ip("203.0.113.20");
    let (code, log) = tick(&stack);
    churn.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("recreated api"), "{log}");
    assert!(log.contains("rerouted backend"), "{log}");
    assert_ne!(crate::nginx::internal_ip(&stack, "api"), old_ip);
    let tally = crate::rule2::load_after(&stack);
    crate::rule2::assert_no_failures(&tally, "after the watchdog's tick");
}

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// Soak: `slipway watch` ticks every 2 ms for 10,000 ticks against a
/// flapping source (see [`flapping`]: over a thousand confirmable changes).
/// The cooldown alone bounds the recreations, and the agent's memory at
/// tick 10,000 is within 10% of tick 100. The cooldown is long next to a
/// recreate and reroute (1-2.5 s), so the soak spends its time ticking:
/// with 3 s, two thirds of it went to recreations and it ran 7 minutes.
#[test]
fn ten_thousand_ticks_of_a_flapping_source_stay_within_the_guards_and_memory() {
    const TICKS: u64 = 10_000;
    let stack = Stack::up();
    let source = Source::start("192.0.2.10");
    source.set(Answer::Flapping);
    let tunnel = Tunnel::up();
    let cooldown = Duration::from_millis(10_000);
    add_watchdog(
        &stack,
        &source,
        &tunnel,
        &format!(
            "services = [\"bot\"], confirm_ticks = 3, cooldown_ms = {}",
            cooldown.as_millis()
        ),
        "\"bot\"",
    );
    stack.edit_manifest("interval_ms = 100", "interval_ms = 2");
    let mut child = stack
        .slipway_command(&["watch", "vast"], &[("SLIPWAY_LOG", "slipway=info")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Drained as it comes, so the agent never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });
    let start = Instant::now();
    let mut rss_at_100 = None;
    while source.served.load(Ordering::SeqCst) < TICKS {
        if rss_at_100.is_none() && source.served.load(Ordering::SeqCst) >= 100 {
            rss_at_100 = Some(rss_kib(child.id()));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("watch exited early ({status}): {}", log.join().unwrap());
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the soak stalled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rss_at_end = rss_kib(child.id());
    let elapsed = start.elapsed();
    crate::harness::sh(&format!("kill -TERM {}", child.id()), stack.path(), &[]);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let log = log.join().unwrap();

    let recreations = log.matches("recreated bot for").count();
    let bound = 1 + (elapsed.as_millis() / cooldown.as_millis()) as usize;
    let rss_at_100 = rss_at_100.unwrap();
    eprintln!(
        "soak: {TICKS} ticks in {elapsed:?}; {recreations} recreations (bound {bound}); \
         RSS {rss_at_100} KiB at tick 100, {rss_at_end} KiB at tick {TICKS}"
    );
    assert!(recreations >= 1, "no change was ever confirmed: {log}");
    assert!(
        recreations <= bound,
        "{recreations} recreations in {elapsed:?}"
    );
    assert!(
        rss_at_end * 10 <= rss_at_100 * 11,
        "RSS grew from {rss_at_100} KiB at tick 100 to {rss_at_end} KiB at tick {TICKS}"
    );
    assert_eq!(
        docker_inspect(&stack.container("bot"))["State"]["Status"],
        "running"
    );
}
