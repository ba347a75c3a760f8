//! Shared test plumbing: plugin fixtures, the slipway binary, and throwaway
//! copies of the example stack on the real Docker engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A plugin built by `scripts/build plugins`.
pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `scripts/build plugins` before the tests",
        path.display()
    );
    path
}

/// Compiled plugins shared by every test, so each compiles once.
pub fn cache_dir() -> PathBuf {
    repo_root().join("target/test-plugin-cache")
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn slipway(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.current_dir(dir)
        .args(args)
        .env("SLIPWAY_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run slipway")
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
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
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

/// A copy of examples/honeychat, brought up under a unique compose project
/// on a free port, and torn down (containers, networks, volumes and every
/// image it built) when dropped.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub project: String,
    pub port: u16,
    /// Images built outside slipway (compose at `up`, or a test); they go
    /// dangling once slipway rebuilds, so they are removed by ID.
    images: std::sync::Mutex<Vec<String>>,
}

impl Stack {
    pub fn up() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let project = unique("slt");
        let port = free_port();
        sh(
            &format!("cp -r {}/examples/honeychat/. .", repo_root().display()),
            dir.path(),
            &[],
        );
        let manifest = std::fs::read_to_string(dir.path().join("slipway.toml")).unwrap();
        let manifest = manifest
            .replace("name = \"honeychat\"", &format!("name = \"{project}\""))
            .replace(
                "../../target/plugins",
                &repo_root().join("target/plugins").display().to_string(),
            );
        std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
        let stack = Stack {
            dir,
            project,
            port,
            images: Default::default(),
        };
        stack.compose("up -d --build");
        let images = sh(
            &format!("docker images -q --filter reference='{}_*'", stack.project),
            stack.path(),
            &[],
        );
        stack
            .images
            .lock()
            .unwrap()
            .extend(images.split_whitespace().map(str::to_owned));
        stack.wait_until(|| http_get_ok(stack.port).is_some_and(|b| b.contains("honeychat-api")));
        stack
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn compose(&self, args: &str) -> String {
        sh(
            &format!("docker-compose -p {} {args} 2>&1", self.project),
            self.path(),
            &[("HONEYCHAT_HTTP_PORT", &self.port.to_string())],
        )
    }

    pub fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    /// Remove this image when the stack goes.
    pub fn track_image(&self, id: &str) {
        self.images.lock().unwrap().push(id.to_owned());
    }

    pub fn set_version(&self, service: &str, version: &str) {
        std::fs::write(
            self.path().join(service).join("VERSION"),
            format!("{version}\n"),
        )
        .unwrap();
    }

    pub fn slipway(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let port = self.port.to_string();
        let mut env: Vec<(&str, &str)> = vec![("HONEYCHAT_HTTP_PORT", &port)];
        env.extend_from_slice(extra_env);
        slipway(self.path(), args, &env)
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

fn http_get_ok(port: u16) -> Option<String> {
    std::panic::catch_unwind(|| http_get(port, "/version"))
        .ok()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

impl Drop for Stack {
    fn drop(&mut self) {
        let port = self.port.to_string();
        let _ = Command::new("docker-compose")
            .args([
                "-p",
                &self.project,
                "down",
                "-v",
                "--rmi",
                "local",
                "--remove-orphans",
            ])
            .env("HONEYCHAT_HTTP_PORT", &port)
            .current_dir(self.dir.path())
            .output();
        // slipway labels what it builds with the compose project.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker images -q --filter label=com.docker.compose.project={} | xargs -r docker rmi -f {}",
                self.project,
                self.images.lock().unwrap().join(" ")
            ))
            .output();
    }
}
