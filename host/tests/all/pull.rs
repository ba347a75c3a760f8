//! `pull_policy` against a real registry (Debian's docker-registry, on a
//! loopback port, which the engine reaches without TLS): a deploy pulls
//! what compose v2 would pull, before anything changes, and a new image
//! behind the same tag replaces only the service whose policy pulls it.

use crate::harness::{docker, docker_lenient, free_port, json, project_with, slipway, text};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A registry on 127.0.0.1, stopped and its images untagged when dropped,
/// with the containers of `project`.
struct Registry {
    child: Child,
    _store: tempfile::TempDir,
    addr: String,
    project: String,
}

impl Registry {
    fn start(project: &str) -> Registry {
        let store = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = store.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                store.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup installs it)");
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no registry at {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry {
            child,
            _store: store,
            addr,
            project: project.to_owned(),
        }
    }

    /// Push a busybox image whose /VERSION says `version` as `name`, and
    /// leave this engine's tag as it was (absent, or on the image it had),
    /// so that only a pull brings the new one here.
    fn push(&self, name: &str, version: &str) {
        let image = format!("{}/{name}", self.addr);
        let had = docker_lenient(&["image", "inspect", "--format", "{{.Id}}", &image]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM slipway-test/busybox:latest\nRUN echo {version} > /VERSION\n"),
        )
        .unwrap();
        docker(&[
            "build",
            "-q",
            "-t",
            &image,
            &dir.path().display().to_string(),
        ]);
        docker(&["push", "-q", &image]);
        match had.trim() {
            "" => docker(&["rmi", &image]),
            id => docker(&["tag", id, &image]),
        };
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let filter = format!("label=com.docker.compose.project={}", self.project);
        let ids = docker_lenient(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            docker_lenient(&["rm", "-f", id]);
        }
        let images = docker_lenient(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        for image in images.lines().filter(|i| i.starts_with(&self.addr)) {
            docker_lenient(&["rmi", "-f", image]);
        }
    }
}

/// The /VERSION a service's running container has.
fn version_of(project: &str, service: &str) -> String {
    let name = format!("{project}-{service}-1");
    docker(&["exec", &name, "cat", "/VERSION"])
        .trim()
        .to_owned()
}

/// The project name `project_with` gave the manifest.
fn project_name(dir: &Path) -> String {
    let manifest = std::fs::read_to_string(dir.join("slipway.toml")).unwrap();
    let line = manifest.lines().find(|l| l.starts_with("name = ")).unwrap();
    line.trim_start_matches("name = ")
        .trim_matches('"')
        .to_owned()
}

fn deploy(dir: &Path) -> std::process::Output {
    slipway(dir, &["--json", "deploy", "app"], &[])
}

#[test]
fn a_deploy_pulls_what_each_pull_policy_asks_before_changing_anything() {
    let manifest = "[surface.app]\nservices = [\"fresh\", \"pinned\", \"daily\"]\n";
    let dir = project_with("services: {}\n", manifest);
    let project = project_name(dir.path());
    let registry = Registry::start(&project);
    let r = &registry.addr;
    registry.push("pull/latest:1", "v1");
    registry.push("pull/pinned:1", "v1");
    let sleep = "command: [\"sleep\", \"3600\"]";
    let compose = format!(
        "services:\n\
         \x20 fresh:\n    image: {r}/pull/latest:1\n    pull_policy: always\n    {sleep}\n\
         \x20 pinned:\n    image: {r}/pull/pinned:1\n    {sleep}\n\
         \x20 daily:\n    image: {r}/pull/pinned:1\n    pull_policy: daily\n    {sleep}\n"
    );
    std::fs::write(dir.path().join("docker-compose.yml"), &compose).unwrap();

    // Nothing is on the engine: `always`, `missing` (unset) and `daily`
    // all pull, and every service runs v1.
    let first = deploy(dir.path());
    assert!(first.status.success(), "{}", text(&first));
    for service in ["fresh", "pinned", "daily"] {
        assert_eq!(version_of(&project, service), "v1", "{service}");
    }

    // v2 behind both tags: only `always` pulls it; `missing` has an image
    // and `daily` pulled less than a day ago. The others are left alone.
    registry.push("pull/latest:1", "v2");
    registry.push("pull/pinned:1", "v2");
    let second = deploy(dir.path());
    assert!(second.status.success(), "{}", text(&second));
    let report = json(&second);
    let actions: Vec<(String, String)> = report["surfaces"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_owned(),
                s["action"].to_string(),
            )
        })
        .collect();
    assert_eq!(version_of(&project, "fresh"), "v2", "{actions:?}");
    assert_eq!(version_of(&project, "pinned"), "v1", "{actions:?}");
    assert_eq!(version_of(&project, "daily"), "v1", "{actions:?}");

    // `never`, with the image gone from the engine: refused before
    // anything changes, naming the service, the image and the fix.
    let before = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    let never = compose.replace("pull_policy: always", "pull_policy: never");
    std::fs::write(dir.path().join("docker-compose.yml"), never).unwrap();
    docker(&["rm", "-f", &format!("{project}-fresh-1")]);
    docker(&["rmi", "-f", &format!("{r}/pull/latest:1")]);
    let refused = deploy(dir.path());
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    for needle in [
        "fresh",
        "pull/latest:1",
        "pull_policy: never",
        "docker pull",
    ] {
        assert!(out.contains(needle), "`{needle}` missing: {out}");
    }
    let after = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    let fresh_gone: Vec<&str> = before.lines().filter(|id| !after.contains(id)).collect();
    assert_eq!(
        fresh_gone.len(),
        1,
        "only the removed fresh container is gone: {out}"
    );
}
