//! Shared test plumbing: plugin fixtures, the slipway binary, and throwaway
//! copies of the example stack on the real Docker engine.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A plugin built by the `slipway-fixtures` dev-dependency (rebuilt by cargo
/// whenever a plugin, the SDK or the WIT changes).
pub fn plugin(name: &str) -> PathBuf {
    slipway_fixtures::plugin(name)
}

/// Compiled plugins shared by every test, so each compiles once; kept in
/// cargo's target directory, so once per build of the plugins rather than
/// once per clone (entries are keyed by the plugin's hash and the engine).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-plugin-cache")
}

/// A name no other test (or test run) uses, for compose projects.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Claims `name` for this test process, against every other process of
/// this machine: true if none holds it. The tests run one process each, side
/// by side, so an in-process set cannot keep two of them off the same port or
/// subnet. The claim is an advisory lock on a file, held until the process
/// exits, however it exits.
pub fn claim(name: &str) -> bool {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("slipway-test-claims");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join(name)).unwrap();
    match file.try_lock() {
        Ok(()) => {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            true
        }
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(e)) => panic!("lock {name}: {e}"),
    }
}

/// A port no other test process holds and nothing listens on. It is drawn
/// below the kernel's ephemeral range (32768 and up), where the source ports
/// of the load generators' connections come from: a port taken from there
/// could be in use by a connection by the time a stack publishes it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    for _ in 0..1_000 {
        let port = FIRST + (RandomState::new().hash_one(0u8) % u64::from(COUNT)) as u16;
        if claim(&format!("port-{port}")) && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// A project directory with a one-service compose file (`api`, never
/// started) and `slipway.toml`: a `[project]` table, then `manifest`.
pub fn project(manifest: &str) -> tempfile::TempDir {
    project_with("services:\n  api:\n    image: busybox\n", manifest)
}

/// [`project`] with the given compose file.
pub fn project_with(compose: &str, manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("docker-compose.yml"), compose).unwrap();
    let manifest = format!("[project]\nname = \"{}\"\n\n{manifest}", unique("slp"));
    std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
    dir
}

pub fn slipway(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    slipway_command(dir, args, env)
        .output()
        .expect("run slipway")
}

/// The slipway command [`slipway`] runs, to spawn (and kill) it instead.
pub fn slipway_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.current_dir(dir)
        .args(args)
        .env("SLIPWAY_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(out)))
}

pub fn sh(cmd: &str, dir: &Path, env: &[(&str, &str)]) -> String {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "`{cmd}` failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker ARGS`, which must succeed: its stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker ARGS` whatever it exits with: its stdout.
pub fn docker_lenient(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn docker_inspect(container: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args(["inspect", container])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect {container}: {}",
        text(&out)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

pub fn http_get_at(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A copy of a stack (host/tests/fixtures/stack, the example at test scale,
/// or the seed-scale example), brought up under a unique compose project on
/// free ports, and torn down (containers, networks, volumes and every image
/// it built) when dropped.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub project: String,
    /// `DOCKER_HOST` and its TLS variables for every command, when the
    /// stack runs on another engine than this machine's (scripts/engines).
    pub engine: Vec<(&'static str, String)>,
    /// Where its published ports answer: 127.0.0.1, or the engine's host.
    pub host: IpAddr,
    pub port: u16,
    /// nginx's static-site port.
    pub site_port: u16,
    /// nginx's Mini App port.
    pub app_port: u16,
}

impl Stack {
    pub fn up() -> Stack {
        Stack::up_with(|_| {})
    }

    /// [`Stack::up`], with `edit` applied to the copy before anything builds.
    pub fn up_with(edit: impl FnOnce(&Path)) -> Stack {
        Stack::up_from("host/tests/fixtures/stack", edit)
    }

    /// examples/honeychat, the seed-scale stack of 14 services.
    pub fn seed_scale() -> Stack {
        Stack::up_from("examples/honeychat", |_| {})
    }

    /// host/tests/fixtures/bridge: an app (`web`, whose build `edit` puts
    /// in web/) behind nginx; up once nginx answers `/` with 200.
    pub fn bridge(edit: impl FnOnce(&Path)) -> Stack {
        Stack::up_until("host/tests/fixtures/bridge", None, edit, |addr| {
            http_ok(addr, "/").is_some()
        })
    }

    /// A copy of the stack in `source` (relative to the repository), up
    /// once the api answers through nginx.
    fn up_from(source: &str, edit: impl FnOnce(&Path)) -> Stack {
        Stack::up_until(source, None, edit, api_answers)
    }

    /// The test-scale stack on the engine `engine` names (`DOCKER_HOST`, and
    /// the TLS variables when it needs them): another machine's, from here,
    /// whose address is `host`. Its ports are published on every address of
    /// that machine.
    pub fn up_on(
        engine: Vec<(&'static str, String)>,
        host: IpAddr,
        edit: impl FnOnce(&Path),
    ) -> Stack {
        let engine = Some((engine, host));
        Stack::up_until("host/tests/fixtures/stack", engine, edit, api_answers)
    }

    /// A copy of the stack in `source`, up once `ready(port)` holds. An
    /// image the compose file names (`image: honeychat/…`) is renamed after
    /// the project, so that stacks never share a tag.
    fn up_until(
        source: &str,
        engine: Option<(Vec<(&'static str, String)>, IpAddr)>,
        edit: impl FnOnce(&Path),
        ready: impl Fn(SocketAddr) -> bool,
    ) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let project = unique("slt");
        let port = free_port();
        let site_port = free_port();
        let app_port = free_port();
        sh(
            &format!("cp -r {}/{source}/. .", repo_root().display()),
            dir.path(),
            &[],
        );
        let manifest = std::fs::read_to_string(dir.path().join("slipway.toml")).unwrap();
        let manifest = manifest
            .replace("name = \"honeychat\"", &format!("name = \"{project}\""))
            .replace(
                "../../target/plugins",
                &slipway_fixtures::plugins_dir().display().to_string(),
            );
        std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
        let compose = dir.path().join("docker-compose.yml");
        let text = std::fs::read_to_string(&compose).unwrap();
        let mut text = text.replace("image: honeychat/", &format!("image: {project}/"));
        if engine.is_some() {
            text = text.replace("\"127.0.0.1:${HONEYCHAT_", "\"${HONEYCHAT_");
        }
        std::fs::write(compose, text).unwrap();
        edit(dir.path());
        let host = engine
            .as_ref()
            .map_or(IpAddr::from([127, 0, 0, 1]), |e| e.1);
        let stack = Stack {
            dir,
            project,
            engine: engine.map(|e| e.0).unwrap_or_default(),
            host,
            port,
            site_port,
            app_port,
        };
        // Compose v2 does not reach the test engines over tcp (`404 Not
        // Found for API route and version …/_ping`); docker-compose v1 does.
        match stack.docker_host() {
            Some(_) => stack.compose_v1("up -d --build"),
            None => stack.compose("up -d --build"),
        };
        stack.wait_until(|| ready(stack.addr()));
        stack
    }

    /// Where nginx's main port answers.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The ports, and the engine, every command of this stack runs with.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HONEYCHAT_HTTP_PORT", self.port.to_string()),
            ("HONEYCHAT_SITE_PORT", self.site_port.to_string()),
            ("HONEYCHAT_APP_PORT", self.app_port.to_string()),
        ];
        env.extend(self.engine.iter().cloned());
        env
    }

    /// [`Stack::engine`], for a test's own docker commands.
    pub fn docker_env(&self) -> Vec<(&str, &str)> {
        self.engine.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// The stack's `DOCKER_HOST`, when it runs on another engine.
    pub fn docker_host(&self) -> Option<&str> {
        self.docker_env()
            .into_iter()
            .find_map(|(k, v)| (k == "DOCKER_HOST").then_some(v))
    }

    /// `docker compose` (v2) on the stack.
    pub fn compose(&self, args: &str) -> String {
        self.run_compose("docker compose", args)
    }

    /// Debian's docker-compose 1.29.2 on the stack: what made stacks
    /// before Compose v2.
    pub fn compose_v1(&self, args: &str) -> String {
        self.run_compose("docker-compose", args)
    }

    fn run_compose(&self, tool: &str, args: &str) -> String {
        let vars = self.env();
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sh(
            &format!("{tool} -p {} {args} 2>&1", self.project),
            self.path(),
            &env,
        )
    }

    /// Wait until the api answers through nginx.
    pub fn wait_for_api(&self) {
        self.wait_until(|| api_answers(self.addr()));
    }

    /// The service's container, as compose v2 names it.
    pub fn container(&self, service: &str) -> String {
        format!("{}-{service}-1", self.project)
    }

    pub fn set_version(&self, service: &str, version: &str) {
        std::fs::write(
            self.path().join(service).join("VERSION"),
            format!("{version}\n"),
        )
        .unwrap();
    }

    pub fn slipway(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        self.slipway_command(args, extra_env)
            .output()
            .expect("run slipway")
    }

    pub fn slipway_command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let vars = self.env();
        let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend_from_slice(extra_env);
        slipway_command(self.path(), args, &env)
    }

    /// Replace the first `from` with `to` in the stack's docker-compose.yml;
    /// it must be there.
    pub fn edit_compose(&self, from: &str, to: &str) {
        let path = self.path().join("docker-compose.yml");
        let compose = std::fs::read_to_string(&path).unwrap();
        assert!(compose.contains(from), "docker-compose.yml has no `{from}`");
        std::fs::write(path, compose.replacen(from, to, 1)).unwrap();
    }

    /// Replace `from` with `to` in the stack's slipway.toml; it must be there.
    pub fn edit_manifest(&self, from: &str, to: &str) {
        let path = self.path().join("slipway.toml");
        let manifest = std::fs::read_to_string(&path).unwrap();
        assert!(manifest.contains(from), "slipway.toml has no `{from}`");
        std::fs::write(path, manifest.replacen(from, to, 1)).unwrap();
    }

    pub fn wait_until(&self, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "stack {} did not come up",
                self.project
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn api_answers(addr: SocketAddr) -> bool {
    http_ok(addr, "/version").is_some_and(|b| b.contains("honeychat-api"))
}

fn http_ok(addr: SocketAddr, path: &str) -> Option<String> {
    std::panic::catch_unwind(|| http_get_at(addr, path))
        .ok()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Containers a test started by hand (a decoy) would keep the project's
        // networks alive through `down`, even when the test failed midway.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker ps -aq --filter name=^/{}[-_] | xargs -r docker rm -f",
                self.project
            ))
            .envs(self.env())
            .output();
        let _ = Command::new("docker")
            .args([
                "compose",
                "-p",
                &self.project,
                "down",
                "-v",
                "--remove-orphans",
            ])
            .envs(self.env())
            .current_dir(self.dir.path())
            .output();
        // Images: this stack's tags (`<project>-<service>`, and the
        // `:slipway-*` tags of kept images) by name, never by ID, because
        // stacks build identical images and an ID may be another stack's
        // only reference to it; what slipway built, by ID with -f (labelled
        // with the project, so its own). Always `--no-prune`: pruning would
        // delete untagged parent layers that every stack shares, under a
        // build that another test runs from that cache ("unknown parent
        // image ID"). Untagged leftovers stay as build cache.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' --filter reference='{p}-*' --filter reference='{p}_*' --filter reference='{p}/*' | xargs -r docker rmi --no-prune; \
                 docker images -q --filter label=com.docker.compose.project={p} | xargs -r docker rmi -f --no-prune",
                p = self.project,
            ))
            .envs(self.env())
            .output();
    }
}

/// The nginx.conf a new user writes: plain `location` blocks with one-line
/// `proxy_pass` to the service name, no `upstream` block, no include file.
pub const PLAIN_NGINX_CONF: &str = "\
daemon off;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr;
events { worker_connections 256; }
http {
  access_log off;
  server {
    listen 80;
    location /api/ { proxy_pass http://api:8000/; }
    location / { proxy_pass http://api:8000; }
  }
}
";

/// Use [`PLAIN_NGINX_CONF`] in a stack's copy (for [`Stack::up_with`]).
pub fn plain_nginx(dir: &Path) {
    std::fs::write(dir.join("nginx/nginx.conf"), PLAIN_NGINX_CONF).unwrap();
}

/// Containers joining and leaving the stack's internal network all the
/// time, as on a busy host: an address a stopped container frees is handed
/// to the next one that joins.
pub struct Churn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Churn {
    pub fn start(project: &str) -> Churn {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let project = project.to_owned();
        let thread = std::thread::spawn(move || {
            let mut joined = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let name = format!("{project}_churn_{}", joined % 3);
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "docker rm -f {name} >/dev/null 2>&1; docker run -d --name {name} \
                         --network {project}_internal slipway-test/busybox:latest sleep 600 >/dev/null"
                    ))
                    .output();
                joined += 1;
            }
            joined
        });
        Churn {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop churning; returns how many containers joined.
    pub fn stop(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub non_2xx: u64,
    pub errors: u64,
    /// Of the failures (non-2xx and errors), those of POST requests.
    pub failed_posts: u64,
    /// The first few failures, for the assertion message.
    pub failures: Vec<String>,
}

/// Steady HTTP/1.0 load through nginx, alternating GET and POST, from four
/// threads, until stopped. Each request is its own connection, so a request
/// that fails is counted, never retried.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
    started: Instant,
    per_second: u32,
    /// Requests answered so far, whatever the answer.
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    first_seen: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Load {
    pub fn start(port: u16, per_second: u32) -> Load {
        Load::watching(port, per_second, None)
    }

    /// [`Load::start`] against `addr` rather than a port of this machine.
    pub fn at(addr: SocketAddr, per_second: u32) -> Load {
        Load::watching_at(addr, per_second, None)
    }

    /// [`Load::start`], noting when a response first carries `marker` (a
    /// new version's banner): see [`Load::first_seen`]. For the benches.
    #[allow(dead_code)]
    pub fn watching(port: u16, per_second: u32, marker: Option<String>) -> Load {
        Load::watching_at(SocketAddr::from(([127, 0, 0, 1], port)), per_second, marker)
    }

    fn watching_at(addr: SocketAddr, per_second: u32, marker: Option<String>) -> Load {
        let first_seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads = 4;
        let interval = Duration::from_secs_f64(threads as f64 / per_second as f64);
        let handles = (0..threads)
            .map(|t| {
                let (stop, answered) = (stop.clone(), answered.clone());
                let (marker, first_seen) = (marker.clone(), first_seen.clone());
                std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    let mut next = Instant::now() + interval.mul_f64(t as f64 / threads as f64);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next += interval;
                        n += 1;
                        let post = n.is_multiple_of(2);
                        let answer = request(addr, post);
                        answered.fetch_add(1, Ordering::Relaxed);
                        match answer {
                            Ok((status, body)) if (200..300).contains(&status) => {
                                tally.ok += 1;
                                if marker.as_deref().is_some_and(|m| body.contains(m)) {
                                    let mut seen = first_seen.lock().unwrap();
                                    seen.get_or_insert_with(Instant::now);
                                }
                            }
                            Ok((status, _)) => {
                                tally.non_2xx += 1;
                                tally.failed_posts += u64::from(post);
                                if tally.failures.len() < 5 {
                                    tally.failures.push(format!(
                                        "{} -> {status}",
                                        if post { "POST" } else { "GET" }
                                    ));
                                }
                            }
                            Err(e) => {
                                tally.errors += 1;
                                tally.failed_posts += u64::from(post);
                                if tally.failures.len() < 5 {
                                    tally.failures.push(format!(
                                        "{}: {e}",
                                        if post { "POST" } else { "GET" }
                                    ));
                                }
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        Load {
            stop,
            threads: handles,
            started: Instant::now(),
            per_second,
            answered,
            first_seen,
        }
    }

    /// When a response first carried the marker given to [`Load::watching`].
    #[allow(dead_code)]
    pub fn first_seen(&self) -> Option<Instant> {
        *self.first_seen.lock().unwrap()
    }

    /// [`Load::stop`], once the load has run at least `window` and had at
    /// least half of the requests that `window` paces answered. A deploy
    /// that fails or converges in under a second would otherwise leave a
    /// tally too thin to mean anything; the extra time measures the site
    /// right after the deploy, which is what users see next. On a busy
    /// machine each request takes longer and fewer fit in the window, so
    /// the load runs on until enough were answered (up to five windows):
    /// the tally then judges as many requests as on an idle machine.
    pub fn stop_after(self, window: Duration) -> (Tally, Duration) {
        let enough = (window.as_secs_f64() * f64::from(self.per_second) / 2.0) as u64;
        loop {
            let elapsed = self.started.elapsed();
            let answered = self.answered.load(Ordering::Relaxed);
            if elapsed >= window * 5 || (elapsed >= window && answered >= enough) {
                break;
            }
            let rest = window.saturating_sub(elapsed);
            std::thread::sleep(rest.max(Duration::from_millis(20)));
        }
        self.stop()
    }

    pub fn stop(self) -> (Tally, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.threads {
            let t = t.join().unwrap();
            all.ok += t.ok;
            all.non_2xx += t.non_2xx;
            all.errors += t.errors;
            all.failed_posts += t.failed_posts;
            all.failures.extend(t.failures);
        }
        (all, self.started.elapsed())
    }
}

/// One request; its status and body.
fn request(addr: SocketAddr, post: bool) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    if post {
        let body = "order=42";
        write!(
            s,
            "POST /api/cgi-bin/echo HTTP/1.0\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
    } else {
        write!(s, "GET /version HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    }
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let complete = text.contains("honeychat-api ") && (!post || text.contains("order=42"));
    match status {
        Some(200) if !complete => Err(std::io::Error::other(format!(
            "truncated or foreign body: {text:?}"
        ))),
        Some(code) => Ok((code, text.into_owned())),
        None => Err(std::io::Error::other(format!("no status line in {text:?}"))),
    }
}

/// A small tmpfs, mounted for one test (they run as root) and unmounted on
/// drop, so filling it fills no shared disk.
pub struct Tmpfs {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    /// On a new temporary directory.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mut tmpfs = Tmpfs::mount_at(dir.path(), size);
        tmpfs._dir = Some(dir);
        tmpfs
    }

    /// On `path`, an existing directory.
    pub fn mount_at(path: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount a tmpfs (as root): {out:?}");
        Tmpfs {
            path: path.to_owned(),
            _dir: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.path).status();
        if !status.is_ok_and(|s| s.success()) {
            // Still busy: detach it now, the kernel frees it once unused.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
