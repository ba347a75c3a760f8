//! Deny by default, proven with a hostile plugin: each grant check has a test
//! that shows the denial, next to a granted control that shows the same
//! attempt working when allowed.

use crate::harness::{Tmpfs, cache_dir, plugin};
use serde_json::json;
use slipway::bindings::Context;
use slipway::capability::command::ExecCommand;
use slipway::capability::docker::DockerGrant;
use slipway::capability::fs::FsGrant;
use slipway::capability::probe::ProbeGrant;
use slipway::capability::{Grants, Mode};
use slipway::runtime::{CallError, Limits, Phase, Plugin, Runtime};
use slipway::sandbox::{Caller, HostServices};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

async fn hostile(runtime: &Runtime, limits: Limits) -> Plugin {
    runtime
        .load("hostile", &plugin("hostile"), None, limits)
        .await
        .unwrap()
}

fn runtime() -> Runtime {
    Runtime::new(Some(cache_dir())).unwrap()
}

async fn attempt(
    runtime: &Runtime,
    plugin: &Plugin,
    grants: Grants,
    config: serde_json::Value,
) -> Result<String, CallError> {
    attempt_with(runtime, plugin, grants, HostServices::default(), config).await
}

async fn attempt_with(
    runtime: &Runtime,
    plugin: &Plugin,
    grants: Grants,
    services: HostServices,
    config: serde_json::Value,
) -> Result<String, CallError> {
    let ctx = Context {
        surface: "test".into(),
        step: 0,
        config: config.to_string(),
        outputs: vec![],
    };
    let caller = Caller {
        surface: "test".into(),
        step: 0,
        plugin_key: plugin.info.name.clone(),
        plugin: plugin.info.name.clone(),
        version: plugin.info.version.clone(),
    };
    runtime
        .call(plugin, Phase::Apply, ctx, caller, grants, services)
        .await
        .0
        .map(|r| r.summary)
}

fn denied(result: Result<String, CallError>) -> String {
    match result {
        Err(CallError::Failed(msg)) => msg,
        other => panic!("expected the plugin to be refused, got {other:?}"),
    }
}

/// A granted directory `data/` (with `file.txt` and two symlinks that point
/// out of it) next to a `secret.txt` that must stay out of reach.
struct FsFixture {
    dir: tempfile::TempDir,
}

const SECRET: &str = "top-secret-content";

impl FsFixture {
    fn new() -> FsFixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("data")).unwrap();
        std::fs::create_dir_all(p.join("outside")).unwrap();
        std::fs::create_dir_all(p.join("rw")).unwrap();
        std::fs::write(p.join("data/file.txt"), "granted-content").unwrap();
        std::fs::write(p.join("secret.txt"), SECRET).unwrap();
        std::fs::write(p.join("outside/secret.txt"), SECRET).unwrap();
        std::os::unix::fs::symlink("../secret.txt", p.join("data/link-file")).unwrap();
        std::os::unix::fs::symlink(p.join("outside"), p.join("data/link-dir")).unwrap();
        FsFixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn grants(&self) -> Grants {
        Grants {
            fs: vec![
                FsGrant {
                    host: self.path().join("data"),
                    guest: "/data".into(),
                    writable: false,
                },
                FsGrant {
                    host: self.path().join("rw"),
                    guest: "/rw".into(),
                    writable: true,
                },
            ],
            ..Grants::default()
        }
    }
}

#[tokio::test]
async fn fs_reads_only_what_is_granted() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let fx = FsFixture::new();
    let read = |path: &str| json!({ "attempt": "read", "path": path });

    // Control: the granted file is readable.
    let ok = attempt(&rt, &p, fx.grants(), read("/data/file.txt"))
        .await
        .unwrap();
    assert!(ok.contains("granted-content"), "{ok}");

    let escapes = [
        ("outside every preopen", "/etc/passwd".to_owned()),
        (
            "absolute host path",
            fx.path().join("secret.txt").display().to_string(),
        ),
        ("dot-dot", "/data/../secret.txt".to_owned()),
        ("relative dot-dot", "../secret.txt".to_owned()),
        ("relative, no cwd", "secret.txt".to_owned()),
        ("symlink to a file outside", "/data/link-file".to_owned()),
        (
            "symlink to a dir outside",
            "/data/link-dir/secret.txt".to_owned(),
        ),
        ("trailing slash", "/data/link-file/".to_owned()),
        (
            "trailing slash through a dir link",
            "/data/link-dir/secret.txt/".to_owned(),
        ),
        (
            "dot-dot after a trailing slash",
            "/data/link-dir/../secret.txt".to_owned(),
        ),
    ];
    for (what, path) in escapes {
        let msg = denied(attempt(&rt, &p, fx.grants(), read(&path)).await);
        assert!(!msg.contains(SECRET), "{what}: leaked: {msg}");
    }
    // Listing through a symlinked directory with a trailing slash.
    let msg = denied(
        attempt(
            &rt,
            &p,
            fx.grants(),
            json!({ "attempt": "list", "path": "/data/link-dir/" }),
        )
        .await,
    );
    assert!(!msg.contains("secret.txt"), "listed outside: {msg}");
}

#[tokio::test]
async fn fs_read_only_grants_refuse_writes() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let fx = FsFixture::new();
    let write = |path: &str| json!({ "attempt": "write", "path": path });

    // Control: a read-write grant takes the write, on the host.
    attempt(&rt, &p, fx.grants(), write("/rw/new.txt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(fx.path().join("rw/new.txt")).unwrap(),
        "owned"
    );

    for path in [
        "/data/file.txt",
        "/data/new.txt",
        "/data/link-file",
        "/secret.txt",
        "/rw/../secret.txt",
    ] {
        let msg = denied(attempt(&rt, &p, fx.grants(), write(path)).await);
        assert!(!msg.is_empty(), "{path}");
    }
    assert_eq!(
        std::fs::read_to_string(fx.path().join("data/file.txt")).unwrap(),
        "granted-content"
    );
    assert_eq!(
        std::fs::read_to_string(fx.path().join("secret.txt")).unwrap(),
        SECRET
    );
    assert!(!fx.path().join("data/new.txt").exists());
}

#[tokio::test]
async fn fs_nothing_without_a_grant() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let msg = denied(
        attempt(
            &rt,
            &p,
            Grants::default(),
            json!({ "attempt": "list", "path": "/" }),
        )
        .await,
    );
    assert!(!msg.contains("etc"), "{msg}");
}

#[tokio::test]
async fn environment_is_empty() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("SLIPWAY_TEST_SECRET_TOKEN", "hunter2") };
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let summary = attempt(&rt, &p, Grants::default(), json!({ "attempt": "env" }))
        .await
        .unwrap();
    assert_eq!(
        summary, "env has 0 vars: ",
        "the plugin saw host environment"
    );
}

#[tokio::test]
async fn probes_reach_only_granted_hosts_and_ports() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let grants = Grants {
        probe: vec![ProbeGrant::parse(&format!("127.0.0.1:{port}")).unwrap()],
        ..Grants::default()
    };
    let tcp = |host: &str, port: u16| json!({ "attempt": "tcp", "host": host, "port": port });

    // Control: the granted host:port connects.
    attempt(&rt, &p, grants.clone(), tcp("127.0.0.1", port))
        .await
        .unwrap();

    let msg = denied(attempt(&rt, &p, grants.clone(), tcp("127.0.0.1", other_port)).await);
    assert!(
        msg.contains("not granted") && msg.contains("grants.probe"),
        "{msg}"
    );
    let msg = denied(attempt(&rt, &p, grants.clone(), tcp("localhost", port)).await);
    assert!(msg.contains("not granted"), "{msg}");
    let http = json!({ "attempt": "http", "url": format!("http://127.0.0.1:{other_port}/") });
    assert!(denied(attempt(&rt, &p, grants.clone(), http).await).contains("not granted"));
    let resolve = json!({ "attempt": "resolve", "host": "localhost" });
    assert!(denied(attempt(&rt, &p, grants.clone(), resolve).await).contains("not granted"));
    // Nor can the plugin open sockets itself through WASI.
    assert!(
        denied(attempt(&rt, &p, Grants::default(), tcp("127.0.0.1", port)).await)
            .contains("not granted")
    );
}

/// The real engine, for a throwaway compose project with this compose file.
async fn engine_for(compose_yaml: &str) -> HostServices {
    let dir = tempfile::tempdir().unwrap();
    let compose = dir.path().join("docker-compose.yml");
    std::fs::write(&compose, compose_yaml).unwrap();
    let project = slipway::compose::ComposeProject::load(
        std::slice::from_ref(&compose),
        &crate::harness::unique("sld"),
        &Default::default(),
    )
    .unwrap();
    let docker = slipway::docker::Docker::connect(project)
        .await
        .expect("a Docker engine (scripts/setup starts one)");
    HostServices {
        docker: Some(std::sync::Arc::new(docker)),
        state_dir: None,
    }
}

#[tokio::test]
async fn docker_reaches_only_granted_services() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let services = engine_for("services:\n  api:\n    image: x\n  postgres:\n    image: y\n").await;
    let grants = Grants {
        docker: DockerGrant::services(["api"]),
        ..Grants::default()
    };
    // Control: the granted service can be inspected (it has no containers).
    let ok = attempt_with(
        &rt,
        &p,
        grants.clone(),
        services.clone(),
        json!({ "attempt": "docker", "service": "api" }),
    )
    .await
    .unwrap();
    assert_eq!(ok, "inspected 0 containers");
    for (attempt_name, service) in [
        ("docker", "postgres"),
        ("docker-restart", "postgres"),
        ("docker", "API"),
        ("docker", ""),
    ] {
        let config = json!({ "attempt": attempt_name, "service": service });
        let msg = denied(attempt_with(&rt, &p, grants.clone(), services.clone(), config).await);
        assert!(
            msg.contains("not granted") && msg.contains("grants.docker"),
            "{service}: {msg}"
        );
    }
    // A narrowed exec grant: `sh -c` is refused before anything runs,
    // and the message names the grant to change.
    let mut narrowed = grants.clone();
    let reload = vec!["nginx".into(), "-s".into(), "reload".into()];
    narrowed.docker.services[0].exec = Some(vec![ExecCommand::parse(&reload).unwrap()]);
    let config = json!({ "attempt": "exec", "service": "api",
        "command": ["sh", "-c", "wget -qO- http://api:8000/"] });
    let msg = denied(attempt_with(&rt, &p, narrowed, services.clone(), config).await);
    assert!(
        msg.contains("not granted") && msg.contains("grants.docker") && msg.contains("\"reload\""),
        "{msg}"
    );
    // A command the plugin's describe does not declare is refused whatever
    // the grant says.
    let config = json!({ "attempt": "exec", "service": "api", "command": ["wget", "http://api/"] });
    let msg = denied(attempt_with(&rt, &p, grants.clone(), services.clone(), config).await);
    assert!(
        msg.contains("not one of the commands the plugin declares")
            && msg.contains("\"sh\", \"-c\""),
        "{msg}"
    );
    // During `slipway plan` even a granted service cannot be changed.
    let plan_grants = Grants {
        mode: Mode::Plan,
        ..grants
    };
    let config = json!({ "attempt": "docker-restart", "service": "api" });
    let msg = denied(attempt_with(&rt, &p, plan_grants, services, config).await);
    assert!(msg.contains("slipway plan"), "{msg}");
}

/// A FIFO, a socket or a device left in a granted directory (by a build,
/// or a container sharing it) is refused at once, by WASI and by `files`:
/// an open of a FIFO would wait for a writer where the call's timeout
/// cannot stop it, and a read of a device may never end.
#[tokio::test]
async fn fifos_sockets_and_devices_in_a_grant_are_refused_at_once_and_never_waited_on() {
    let rt = runtime();
    let limits = Limits {
        timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let p = hostile(&rt, limits).await;
    let fx = FsFixture::new();
    let rw = fx.path().join("rw");
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mkfifoat(rustix::fs::CWD, rw.join("fifo"), mode).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(rw.join("socket")).unwrap();
    // A twin of /dev/zero, which a read would never finish (mknod needs
    // root, as the suite runs).
    let zero = rustix::fs::FileType::CharacterDevice;
    rustix::fs::mknodat(
        rustix::fs::CWD,
        rw.join("zero"),
        zero,
        mode,
        rustix::fs::makedev(1, 5),
    )
    .expect("mknod of a character device (the suite runs as root)");
    // Control: a regular file next to them reads and hashes.
    let ok = attempt(
        &rt,
        &p,
        fx.grants(),
        json!({ "attempt": "files-hash", "paths": ["/data/file.txt"] }),
    )
    .await
    .unwrap();
    assert!(ok.starts_with("hashed "), "{ok}");
    for path in ["/rw/fifo", "/rw/socket", "/rw/zero"] {
        for config in [
            json!({ "attempt": "read", "path": path }),
            json!({ "attempt": "write", "path": path }),
            json!({ "attempt": "files-hash", "paths": [path] }),
        ] {
            let start = Instant::now();
            let msg = denied(attempt(&rt, &p, fx.grants(), config.clone()).await);
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{config}: took {:?}: {msg}",
                start.elapsed()
            );
            assert!(msg.contains(path), "{config}: {msg}");
        }
    }
}

/// A declared and granted command runs only whole: no argument added to
/// `nginx -t` (load_module, `-e`, `-c`), to `nginx -s reload` (a second
/// `-s`) or to `nslookup {service}` (a DNS server of the plugin's choice),
/// and `{service}` only names a granted service.
#[tokio::test]
async fn exec_runs_only_whole_declared_and_granted_commands() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let services = engine_for(
        "services:\n  nginx:\n    image: x\n  api:\n    image: y\n  postgres:\n    image: z\n",
    )
    .await;
    let mut grants = Grants {
        docker: DockerGrant::services(["nginx", "api"]),
        ..Grants::default()
    };
    let commands = [
        vec!["nginx", "-t"],
        vec!["nginx", "-T"],
        vec!["nginx", "-s", "reload"],
        vec!["nslookup", "{service}"],
    ];
    let commands: Vec<Vec<String>> = commands
        .iter()
        .map(|c| c.iter().map(|a| a.to_string()).collect())
        .collect();
    grants.docker.services[0].exec = Some(ExecCommand::parse_all(&commands).unwrap());
    let exec =
        |command: &[&str]| json!({ "attempt": "exec", "service": "nginx", "command": command });
    // Controls: the whole commands pass every check and reach the engine,
    // where nginx has no container to run them in.
    for command in [
        &["nginx", "-t"][..],
        &["nginx", "-s", "reload"],
        &["nslookup", "api"],
    ] {
        let msg =
            denied(attempt_with(&rt, &p, grants.clone(), services.clone(), exec(command)).await);
        assert!(
            !msg.contains("refused") && !msg.contains("not granted") && msg.contains("nginx"),
            "{command:?}: {msg}"
        );
    }
    for escape in [
        &["nginx", "-t", "-g", "load_module /srv/site/x.so;"][..],
        &["nginx", "-t", "-e", "/etc/anything"],
        &["nginx", "-t", "-c", "/run/secrets/key.pem"],
        &["nginx", "-s", "reload", "-s", "stop"],
        &["nginx", "-T", "-q"],
        &["nslookup", "api", "10.0.0.53"],
        &["nslookup", "postgres"],
        &["nslookup", "-debug"],
        &["nslookup"],
        &["nginx"],
    ] {
        let msg =
            denied(attempt_with(&rt, &p, grants.clone(), services.clone(), exec(escape)).await);
        assert!(
            msg.contains("not one of the commands the plugin declares"),
            "{escape:?}: {msg}"
        );
    }
}

fn image_id(reference: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", reference])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{reference} (scripts/setup builds it)"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `image-archive` reads a granted service's own images only: not another
/// service's, not any image by name, and not during a plan.
#[tokio::test]
async fn image_archives_come_only_from_the_granted_services_own_images() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let services = engine_for(
        "services:\n  api:\n    image: slipway-test/busybox:latest\n  postgres:\n    image: slipway-test/nginx:latest\n",
    )
    .await;
    let grants = Grants {
        docker: DockerGrant::services(["api"]),
        ..Grants::default()
    };
    let (busybox, nginx) = (
        image_id("slipway-test/busybox:latest"),
        image_id("slipway-test/nginx:latest"),
    );
    let archive = |service: &str, image: &str| json!({ "attempt": "image-archive", "service": service, "image": image, "path": "/etc/passwd" });
    // Control: api's own image (its compose tag), by ID and by prefix.
    for image in [busybox.as_str(), &busybox[..19]] {
        let ok = attempt_with(
            &rt,
            &p,
            grants.clone(),
            services.clone(),
            archive("api", image),
        )
        .await
        .unwrap();
        assert!(ok.starts_with("read an archive of "), "{ok}");
    }
    for (service, image, expect) in [
        ("api", nginx.as_str(), "is not an image of service `api`"),
        (
            "api",
            "slipway-test/nginx:latest",
            "is not an image of service `api`",
        ),
        ("api", "sha256:", "is not an image of service `api`"),
        ("postgres", nginx.as_str(), "grants.docker"),
    ] {
        let msg = denied(
            attempt_with(
                &rt,
                &p,
                grants.clone(),
                services.clone(),
                archive(service, image),
            )
            .await,
        );
        assert!(msg.contains(expect), "{service} {image}: {msg}");
    }
    let plan = Grants {
        mode: Mode::Plan,
        ..grants
    };
    let msg = denied(attempt_with(&rt, &p, plan, services, archive("api", &busybox)).await);
    assert!(msg.contains("slipway plan"), "{msg}");
}

#[tokio::test]
async fn limits_stop_runaway_plugins_and_the_agent_stays_usable() {
    let rt = runtime();
    let limits = Limits {
        timeout: Duration::from_secs(2),
        memory_bytes: 64 << 20,
    };
    let p = hostile(&rt, limits).await;

    let start = Instant::now();
    match attempt(&rt, &p, Grants::default(), json!({ "attempt": "spin" })).await {
        Err(CallError::Timeout(d)) => assert_eq!(d, Duration::from_secs(2)),
        other => panic!("an infinite loop must time out, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the timeout fired late: {took:?}"
    );

    match attempt(&rt, &p, Grants::default(), json!({ "attempt": "memory" })).await {
        Err(e @ CallError::OutOfMemory(_)) => assert!(e.to_string().contains("64 MiB"), "{e}"),
        other => panic!("a memory bomb must hit the cap, got {other:?}"),
    }

    match attempt(&rt, &p, Grants::default(), json!({ "attempt": "panic" })).await {
        Err(e @ CallError::Trap { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("hostile plugin panicked on purpose"), "{msg}");
        }
        other => panic!("a panic must become a trap error, got {other:?}"),
    }

    // Same runtime, same plugin: still works.
    assert_eq!(
        attempt(&rt, &p, Grants::default(), json!({ "attempt": "noop" }))
            .await
            .unwrap(),
        "noop"
    );
}

#[tokio::test]
async fn pins_versions_and_formats_are_checked_at_load() {
    let rt = runtime();
    let path = plugin("hostile");
    let wrong = "0".repeat(64);
    let err = format!(
        "{:#}",
        rt.load("hostile", &path, Some(&wrong), Limits::default())
            .await
            .err()
            .unwrap()
    );
    assert!(
        err.contains("plugins.hostile.sha256 pins") && err.contains("refusing"),
        "{err}"
    );
    let bytes = std::fs::read(&path).unwrap();
    let right = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    rt.load("hostile", &path, Some(&right), Limits::default())
        .await
        .unwrap();

    let err = format!(
        "{:#}",
        rt.load("future", &plugin("future-major"), None, Limits::default())
            .await
            .err()
            .unwrap()
    );
    assert!(
        err.contains("built against slipway:plugin@1.0.0")
            && err.contains("accepts slipway:plugin@0.2.x"),
        "{err}"
    );
    // An older minor version loads, and its imports link to this host's.
    let older = rt
        .load("older", &plugin("older-minor"), None, Limits::default())
        .await
        .unwrap();
    assert_eq!(older.wit_version.to_string(), "0.2.0");
    assert!(
        older
            .imports
            .iter()
            .any(|i| i == "slipway:plugin/log@0.2.0")
    );
    let planned = attempt(&rt, &older, Grants::default(), serde_json::json!({})).await;
    assert_eq!(planned.unwrap(), "planned by a 0.2.0 plugin");

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("plugin.wasm");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let err = format!(
        "{:#}",
        rt.load("x", &script, None, Limits::default())
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("not a WebAssembly file"), "{err}");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = format!(
        "{:#}",
        rt.load("x", &core, None, Limits::default())
            .await
            .err()
            .unwrap()
    );
    assert!(err.contains("not a component"), "{err}");
    let err = format!(
        "{:#}",
        rt.load(
            "x",
            &dir.path().join("missing.wasm"),
            None,
            Limits::default()
        )
        .await
        .err()
        .unwrap()
    );
    assert!(
        err.contains("cannot read") && err.contains("plugins.x.path"),
        "{err}"
    );
}

#[tokio::test]
async fn a_second_load_comes_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let first = Runtime::new(Some(cache.path().to_owned())).unwrap();
    let p = first
        .load("hostile", &plugin("hostile"), None, Limits::default())
        .await
        .unwrap();
    assert!(!p.from_cache);
    let second = Runtime::new(Some(cache.path().to_owned())).unwrap();
    let p = second
        .load("hostile", &plugin("hostile"), None, Limits::default())
        .await
        .unwrap();
    assert!(p.from_cache, "the second run recompiled");
    assert_eq!(
        attempt(&second, &p, Grants::default(), json!({ "attempt": "noop" }))
            .await
            .unwrap(),
        "noop"
    );
}

/// Host services with a state directory and no engine.
fn with_state(dir: &Path) -> HostServices {
    HostServices {
        docker: None,
        state_dir: Some(dir.to_owned()),
    }
}

#[tokio::test]
async fn state_persists_between_calls_per_plugin() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let services = with_state(dir.path());
    let config = json!({ "attempt": "state-round-trip", "key": "ip", "value": "10.0.0.7" });
    let first = attempt_with(&rt, &p, Grants::default(), services.clone(), config.clone())
        .await
        .unwrap();
    assert_eq!(first, "before=None after=Some(\"10.0.0.7\")");
    let second = attempt_with(&rt, &p, Grants::default(), services, config)
        .await
        .unwrap();
    assert_eq!(second, "before=Some(\"10.0.0.7\") after=Some(\"10.0.0.7\")");
}

#[tokio::test]
async fn state_written_during_a_plan_is_dropped() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let services = with_state(dir.path());
    let plan = Grants {
        mode: Mode::Plan,
        ..Grants::default()
    };
    let config = json!({ "attempt": "state-round-trip", "key": "ip", "value": "10.0.0.7" });
    attempt_with(&rt, &p, plan, services.clone(), config.clone())
        .await
        .unwrap();
    let after = attempt_with(&rt, &p, Grants::default(), services, config)
        .await
        .unwrap();
    assert!(
        after.starts_with("before=None"),
        "a plan changed state: {after}"
    );
}

/// Every entry under `dir`, with each file's content, sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            let body = match kind.is_file() {
                true => std::fs::read(&path).unwrap(),
                false => Vec::new(),
            };
            if kind.is_dir() {
                stack.push(path.clone());
            }
            out.push((path.display().to_string(), body));
        }
    }
    out.sort();
    out
}

/// The import fuzzer makes thousands of calls with arbitrary arguments to
/// every host import: each gets an answer (no trap, no host panic, no
/// hang), nothing outside the read-write grant changes, and the agent
/// serves the next plugin as before.
#[tokio::test]
async fn arbitrary_calls_to_every_import_get_answers_and_stay_in_the_grants() {
    let rt = runtime();
    let fuzzer = rt
        .load(
            "import-fuzzer",
            &plugin("import-fuzzer"),
            None,
            Limits::default(),
        )
        .await
        .unwrap();
    let fs = FsFixture::new();
    // api's image does not exist: a fuzzed `recreate` must not start
    // containers on the engine the other tests share.
    let mut services = engine_for(
        "services:\n  api:\n    image: slipway-fuzz/absent:latest\n  postgres:\n    image: y\n",
    )
    .await;
    let state = tempfile::tempdir().unwrap();
    services.state_dir = Some(state.path().to_owned());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let grants = Grants {
        docker: DockerGrant::services(["api"]),
        probe: vec![ProbeGrant::parse(&format!("127.0.0.1:{port}")).unwrap()],
        ..fs.grants()
    };
    let outside = [
        fs.path().join("data"),
        fs.path().join("outside"),
        fs.path().join("secret.txt"),
    ];
    let before: Vec<_> = outside
        .iter()
        .map(|p| (p.exists(), snapshot_of(p)))
        .collect();
    // SLIPWAY_IMPORT_FUZZ_SEEDS raises the count for a longer local run.
    let seeds: u64 = std::env::var("SLIPWAY_IMPORT_FUZZ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let mut calls = 0u64;
    for seed in 0..seeds {
        let config = json!({
            "seed": seed, "calls": 400,
            "services": ["api", "postgres"],
            "dirs": ["/data", "/rw", "/rw/..", "/r", "/"],
            "hosts": [format!("127.0.0.1:{port}"), "api:80", "localhost:1"],
        });
        let result = attempt_with(&rt, &fuzzer, grants.clone(), services.clone(), config).await;
        match result {
            Ok(summary) => assert!(summary.ends_with(" err"), "{summary}"),
            Err(e) => panic!("seed {seed}: the host did not answer every call: {e}"),
        }
        calls += 400;
    }
    let after: Vec<_> = outside
        .iter()
        .map(|p| (p.exists(), snapshot_of(p)))
        .collect();
    assert_eq!(
        before, after,
        "a fuzzed call changed something outside the grants"
    );
    println!("import fuzzer: {calls} calls over {seeds} seeds, every one answered");
    // The agent is intact: the next plugin runs as usual.
    let p = hostile(&rt, Limits::default()).await;
    let ok = attempt(&rt, &p, Grants::default(), json!({ "attempt": "noop" })).await;
    assert_eq!(ok.unwrap(), "noop");
}

fn snapshot_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    match path.is_dir() {
        true => snapshot(path),
        false => vec![(
            path.display().to_string(),
            std::fs::read(path).unwrap_or_default(),
        )],
    }
}

/// `slipway deploy s` of a project whose surface `s` runs one hostile step
/// with `config` and `grants` (TOML inline tables), next to the directories
/// `dirs` made in the project: the errors as the operator reads them.
fn deploy_hostile(config: &str, grants: &str, dirs: &[&str]) -> (tempfile::TempDir, Output) {
    let dir = crate::harness::project(&format!(
        "[plugins.hostile]\npath = \"{}\"\ntimeout_secs = 10\n\n\
         [surface.s]\n[[surface.s.step]]\nplugin = \"hostile\"\nconfig = {config}\ngrants = {grants}\n",
        plugin("hostile").display()
    ));
    for made in dirs {
        std::fs::create_dir_all(dir.path().join(made)).unwrap();
    }
    let out = crate::harness::slipway(dir.path(), &["deploy", "s"], &[]);
    (dir, out)
}

/// The plugin still serves a call, on the same runtime and plugin: what
/// every attempt below ends with.
async fn still_serves(rt: &Runtime, p: &Plugin) {
    let ok = attempt(rt, p, Grants::default(), json!({ "attempt": "noop" })).await;
    assert_eq!(ok.unwrap(), "noop", "the agent is no longer usable");
}

/// The policy: a symlink the plugin creates must point down, to a relative
/// path without `..`, which stays inside the directory that holds it
/// wherever the link or its directory is later moved. Any other target
/// (climbing out, absolute, or climbing with `..` while staying inside) is
/// refused before the link exists; the plugin gets `EPERM` and the agent's
/// log says why. cap-std alone refuses only absolute targets, and nginx or
/// the host would follow `../../outside`.
#[tokio::test]
async fn symlinks_a_plugin_creates_must_point_down_inside_its_grant() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let fx = FsFixture::new();
    let rw = fx.path().join("rw");
    std::fs::create_dir_all(rw.join("sub")).unwrap();
    std::fs::write(rw.join("sub/file.txt"), "inside-content").unwrap();
    let before = snapshot_of(&fx.path().join("outside"));
    let symlink =
        |target: &str, link: &str| json!({ "attempt": "symlink", "target": target, "link": link });

    for (target, link) in [
        ("../../outside", "/rw/link"),
        ("../outside/secret.txt", "/rw/link"),
        ("sub/../../secret.txt", "/rw/link"),
        ("/etc/passwd", "/rw/link"),
        (fx.path().join("secret.txt").to_str().unwrap(), "/rw/link"),
        // Inside today, outside once the link's directory moves up.
        ("../file.txt", "/rw/sub/up"),
    ] {
        let msg = denied(attempt(&rt, &p, fx.grants(), symlink(target, link)).await);
        assert!(msg.contains("Operation not permitted"), "{target}: {msg}");
    }
    assert!(std::fs::symlink_metadata(rw.join("link")).is_err());
    assert!(std::fs::symlink_metadata(rw.join("sub/up")).is_err());

    // Control: a link down into the grant is made, and followed.
    let ok = attempt(&rt, &p, fx.grants(), symlink("sub/file.txt", "/rw/in")).await;
    assert_eq!(ok.unwrap(), "linked /rw/in -> sub/file.txt");
    assert_eq!(
        std::fs::read_link(rw.join("in")).unwrap(),
        Path::new("sub/file.txt")
    );
    let read = json!({ "attempt": "read", "path": "/rw/in" });
    let ok = attempt(&rt, &p, fx.grants(), read).await.unwrap();
    assert!(ok.ends_with("inside-content"), "{ok}");
    // A read-only grant, or a plan, makes no link at all.
    let msg = denied(attempt(&rt, &p, fx.grants(), symlink("file.txt", "/data/in")).await);
    assert!(msg.contains("not permitted"), "{msg}");
    let plan = fx.grants().planning();
    let msg = denied(attempt(&rt, &p, plan, symlink("sub", "/rw/planned")).await);
    assert!(msg.contains("not permitted"), "{msg}");

    // What a web server serving the grant would follow stays in it.
    let root = rw.canonicalize().unwrap();
    for (link, real) in symlinks_under(&rw) {
        assert!(real.starts_with(&root), "{link:?} leads to {real:?}");
    }
    assert_eq!(before, snapshot_of(&fx.path().join("outside")));
    assert_eq!(
        std::fs::read_to_string(fx.path().join("secret.txt")).unwrap(),
        SECRET
    );
    still_serves(&rt, &p).await;
}

/// Every symlink under `dir`, with where it finally leads (itself when it
/// leads nowhere).
fn symlinks_under(dir: &Path) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let (path, kind) = (entry.path(), entry.file_type().unwrap());
        if kind.is_symlink() {
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            found.push((path, real));
        } else if kind.is_dir() {
            found.extend(symlinks_under(&path));
        }
    }
    found
}

/// The operator's view of a refused symlink: the step fails naming the
/// plugin, its version, the step and what it tried, and the log says what
/// the host allows.
#[test]
fn a_refused_symlink_names_the_plugin_the_step_and_the_rule() {
    let (dir, out) = deploy_hostile(
        "{ attempt = \"symlink\", target = \"../../outside\", link = \"/rw/link\" }",
        "{ fs = [{ host = \"site/rw\", guest = \"/rw\", mode = \"rw\" }] }",
        &["site/rw", "outside"],
    );
    let all = crate::harness::text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("surface s, step 0 (plugin hostile 0.1.0 from plugins.hostile), apply: symlink /rw/link -> ../../outside: Operation not permitted"),
        "{all}"
    );
    assert!(
        all.contains("surface s step 0 plugin hostile 0.1.0: refused to create the symlink `link` -> `../../outside`: its target climbs with `..`; a plugin may only create a symlink to a relative path without `..`"),
        "{all}"
    );
    assert!(std::fs::symlink_metadata(dir.path().join("site/rw/link")).is_err());
}

/// A plugin that fills its read-write grant gets the failed write as an
/// error it can report, not a trap; the call's error names the full grant,
/// and the host goes on. slipway has no write quota of its own: the grant's
/// filesystem is the limit.
#[tokio::test]
async fn filling_a_granted_directory_to_the_last_byte_is_an_error_the_plugin_reports() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let disk = Tmpfs::mount("8m");
    let fx = FsFixture::new();
    let mut grants = fx.grants();
    grants.fs.push(FsGrant {
        host: disk.path().to_owned(),
        guest: "/disk".into(),
        writable: true,
    });
    let before = snapshot_of(&fx.path().join("outside"));

    let start = Instant::now();
    let fill = json!({ "attempt": "fill-disk", "dir": "/disk" });
    let msg = denied(attempt(&rt, &p, grants.clone(), fill).await);
    println!("disk full after {:?}: {msg}", start.elapsed());
    // wasi-libc turns a failed stream write into EIO, so the host adds what
    // it sees: which grant is full, and what to do.
    let (wrote, rest) = msg
        .strip_prefix("wrote ")
        .and_then(|m| m.split_once(" MiB into /disk, then /disk/fill-"))
        .unwrap_or_else(|| panic!("{msg}"));
    assert!(matches!(wrote, "7" | "8"), "an 8 MiB disk took {wrote} MiB");
    let note = format!(
        ": I/O error (os error 29); the granted directory `/disk` ({}: 0 bytes free) is full; \
         free space there, or grant a directory on a larger filesystem",
        disk.path().display()
    );
    assert_eq!(rest, format!("{wrote}{note}"));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );

    // The full disk is the plugin's problem only: the same runtime and
    // grants still write elsewhere, and nothing outside the grant changed.
    let write = json!({ "attempt": "write", "path": "/rw/after.txt" });
    assert_eq!(
        attempt(&rt, &p, grants, write).await.unwrap(),
        "wrote /rw/after.txt"
    );
    assert_eq!(before, snapshot_of(&fx.path().join("outside")));
    still_serves(&rt, &p).await;
}

/// 10^5 keys through the state import stop at the cap of 1024 keys with an
/// error naming it, the state file stays whole and readable, and the next
/// call (which loads that file) is quick.
#[tokio::test]
async fn a_hundred_thousand_state_keys_stop_at_the_cap_and_the_store_stays_usable() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let services = with_state(dir.path());
    let flood = json!({ "attempt": "state-keys", "count": 100_000, "value_bytes": 16 });
    let start = Instant::now();
    let result = attempt_with(&rt, &p, Grants::default(), services.clone(), flood).await;
    let took = start.elapsed();
    println!("10^5 state keys: {took:?}: {result:?}");
    assert_eq!(
        denied(result),
        "stored 1024 of 100000 keys, then: state.set of `key-1024` stored nothing: \
         the store already holds 1024 keys, its cap; delete keys the plugin no longer needs"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    let file = dir.path().join("plugins/hostile.json");
    let saved: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved.len(), 1024);
    assert_eq!(saved["key-1023"], "v".repeat(16));

    let start = Instant::now();
    let next = json!({ "attempt": "state-round-trip", "key": "key-0", "value": "again" });
    let ok = attempt_with(&rt, &p, Grants::default(), services, next).await;
    let took = start.elapsed();
    println!("the next call: {took:?}");
    assert_eq!(
        ok.unwrap(),
        format!("before=Some(\"{}\") after=Some(\"again\")", "v".repeat(16))
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Bytes this process has written with write(2) and its kin, from
/// /proc/self/io (nextest runs each test in a process of its own).
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    let line = io.lines().find(|l| l.starts_with("wchar:")).unwrap();
    line["wchar:".len()..].trim().parse().unwrap()
}

/// A state write costs the size of its value, not of the store: a thousand
/// values of 64 KiB in one call write about twice their 62.5 MiB (once
/// each to the log, once in the store's one rewrite at the end), where
/// rewriting the store on every write would write 30 GiB.
#[tokio::test]
async fn a_thousand_state_values_of_64_kib_are_written_in_one_pass() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let services = with_state(dir.path());
    let values = json!({ "attempt": "state-keys", "count": 1000, "value_bytes": 65536 });
    let (before, start) = (bytes_written(), Instant::now());
    let result = attempt_with(&rt, &p, Grants::default(), services, values).await;
    let (took, written) = (start.elapsed(), bytes_written() - before);
    println!(
        "1,000 state values of 64 KiB: {took:?}, {} MiB written",
        written >> 20
    );
    assert_eq!(result.unwrap(), "stored 1000 keys");
    assert!(written < 4 * 1000 * 65536, "{written} bytes written");
    let file = dir.path().join("plugins/hostile.json");
    let saved: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved.len(), 1000);
    assert!(!dir.path().join("plugins/hostile.log").exists());
}

/// A 10^6-deep recursion traps as a stack overflow, naming the function,
/// whichever stack it exhausts: wasmtime's call stack, or the one Rust keeps
/// in linear memory (no guard page there, so the host recognises the
/// out-of-bounds access deep in a recursion). The host process and the
/// runtime carry on.
#[tokio::test]
async fn a_million_deep_recursion_is_a_stack_overflow_and_the_runtime_goes_on() {
    let rt = runtime();
    let p = hostile(&rt, Limits::default()).await;
    let recurse = |depth: u32, in_memory: bool| json!({ "attempt": "recurse", "depth": depth, "in_memory": in_memory });
    // Control: a modest depth on either stack returns.
    let ok = attempt(&rt, &p, Grants::default(), recurse(1000, false)).await;
    assert_eq!(ok.unwrap(), "recursed 1000 deep: 500500");
    let ok = attempt(&rt, &p, Grants::default(), recurse(100, true)).await;
    assert_eq!(ok.unwrap(), "recursed 100 deep: 5050");

    for (in_memory, expect) in [
        (
            false,
            "trapped: stack overflow (wasm trap: call stack exhausted), 20 of the 20 innermost calls in `hostile::recurse`: a recursion too deep, or without end; this is a bug in the plugin",
        ),
        (
            true,
            "trapped: stack overflow, most likely (wasm trap: out of bounds memory access), 20 of the 20 innermost calls in `hostile::recurse_in_memory`: a recursion too deep, or without end, ran the stack the plugin keeps in linear memory past its end; this is a bug in the plugin",
        ),
    ] {
        let start = Instant::now();
        match attempt(&rt, &p, Grants::default(), recurse(1_000_000, in_memory)).await {
            Err(e @ CallError::Trap { .. }) => {
                println!(
                    "recursion (in memory: {in_memory}) trapped after {:?}: {e}",
                    start.elapsed()
                );
                assert!(e.to_string().starts_with(expect), "{e}");
            }
            other => panic!("a 10^6-deep recursion must trap, got {other:?}"),
        }
        still_serves(&rt, &p).await;
    }
}

/// Through a deploy, the trap names the plugin, its version and the step.
#[test]
fn a_stack_overflow_names_the_plugin_and_the_step() {
    let (_dir, out) = deploy_hostile("{ attempt = \"recurse\", depth = 1000000 }", "{}", &[]);
    let all = crate::harness::text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("surface s, step 0 (plugin hostile 0.1.0 from plugins.hostile), apply: trapped: stack overflow (wasm trap: call stack exhausted)"),
        "{all}"
    );
}

/// A `describe` that never returns is stopped at the plugin's timeout, with
/// an error naming the plugin and `describe`; the runtime loads and runs
/// the next plugin as usual.
#[tokio::test]
async fn a_describe_that_never_returns_is_stopped_at_the_timeout() {
    let rt = runtime();
    let looping = plugin("hostile-describe-loop");
    let limits = Limits {
        timeout: Duration::from_secs(2),
        memory_bytes: 64 << 20,
    };
    let start = Instant::now();
    let err = rt
        .load("looping", &looping, None, limits)
        .await
        .err()
        .unwrap();
    let took = start.elapsed();
    let msg = format!("{err:#}");
    println!("describe stopped after {took:?}: {msg}");
    assert!(
        msg.starts_with(&format!(
            "plugin looping ({}) failed to describe itself: its `describe` did not return within 2s (`timeout_secs`) and was stopped; ",
            looping.display()
        )) && msg.ends_with("this is a bug in the plugin, report it to its author"),
        "{msg}"
    );
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(6)).contains(&took),
        "stopped after {took:?}"
    );
    let p = hostile(&rt, Limits::default()).await;
    still_serves(&rt, &p).await;
}

/// Through the CLI the same load is a refused plugin (exit 2), named by its
/// manifest key.
#[test]
fn a_describe_that_never_returns_refuses_the_plugin_before_anything_runs() {
    let dir = crate::harness::project(&format!(
        "[plugins.looping]\npath = \"{}\"\ntimeout_secs = 2\n\n\
         [surface.s]\n[[surface.s.step]]\nplugin = \"looping\"\nconfig = {{ attempt = \"noop\" }}\n",
        plugin("hostile-describe-loop").display()
    ));
    let start = Instant::now();
    let out = crate::harness::slipway(dir.path(), &["deploy", "s"], &[]);
    let all = crate::harness::text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("plugins.looping: plugin looping (")
            && all.contains("failed to describe itself: its `describe` did not return within 2s"),
        "{all}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}
