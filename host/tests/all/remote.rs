//! Engines on another machine: dockerds in network namespaces of their own
//! (scripts/engines), reached over tcp. Their containers' addresses are not
//! routed here (and the same addresses are this machine's own containers'),
//! so readiness and probes go through published ports or run inside the
//! containers, and a surface whose files a container bind-mounts is
//! refused.

use crate::cli::assert_exit;
use crate::harness::{Load, Stack, http_get_at, json, project, sh, slipway};
use crate::nginx::use_plugin;
use crate::rule2::{WINDOW, assert_no_failures, assert_overlap_failures};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Engine `n` of scripts/engines: the variables that reach it over tcp
/// (engine 2 speaks TLS only) and its machine's address.
fn engine(n: u8) -> (Vec<(&'static str, String)>, IpAddr) {
    let host = IpAddr::from([10, 231, n, 2]);
    let env = match n {
        2 => vec![
            ("DOCKER_HOST", format!("tcp://{host}:2376")),
            ("DOCKER_TLS_VERIFY", "1".to_owned()),
            ("DOCKER_CERT_PATH", "/run/slipway-engines/tls".to_owned()),
            // docker-compose's requests would take this machine's bundle
            // over DOCKER_CERT_PATH's CA when the variable is set.
            (
                "REQUESTS_CA_BUNDLE",
                "/run/slipway-engines/tls/ca.pem".to_owned(),
            ),
        ],
        _ => vec![("DOCKER_HOST", format!("tcp://{host}:2375"))],
    };
    (env, host)
}

/// The test-scale stack on engine `n`, with the backend's manifest as a
/// user of a remote engine writes it: verified at the engine's address, and
/// without the upstream-file grant, which only the zero-downtime strategy
/// writes through and which cannot reach nginx there.
fn remote_stack(n: u8) -> Stack {
    let (env, host) = engine(n);
    let stack = Stack::up_on(env, host, |_| {});
    stack.edit_manifest(
        ", fs = [{ host = \"nginx/upstreams\", guest = \"/upstreams\", mode = \"rw\" }]",
        "",
    );
    stack.edit_manifest(
        "http://127.0.0.1:${HONEYCHAT_HTTP_PORT}",
        &format!("http://{host}:${{HONEYCHAT_HTTP_PORT}}"),
    );
    stack
}

/// `cmd` against the stack's engine.
fn on_engine(stack: &Stack, cmd: &str) -> String {
    sh(cmd, stack.path(), &stack.docker_env())
}

fn api_ids(stack: &Stack) -> Vec<String> {
    on_engine(
        stack,
        &format!(
            "docker ps -q --no-trunc --filter label=com.docker.compose.project={} --filter label=com.docker.compose.service=api",
            stack.project
        ),
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn an_unreachable_docker_host_exits_4_and_names_the_address() {
    let dir = project("[surface.backend]\nservices = [\"api\"]\n");
    // Engine 1's machine answers, but nothing listens on port 1 there.
    let address = format!("tcp://{}:1", engine(1).1);
    let out = slipway(
        dir.path(),
        &["deploy", "backend", "--json"],
        &[("DOCKER_HOST", &address)],
    );
    assert_exit(
        &out,
        4,
        &format!("no Docker engine answered at {address} (from DOCKER_HOST)"),
    );
    assert_eq!(json(&out)["exit_code"], 4);
}

#[test]
fn a_deploy_over_tcp_to_another_machines_engine_ships_and_says_where_it_checks() {
    let stack = remote_stack(1);
    let (_, host) = engine(1);

    // The static site is written here and served there: refused, unchanged.
    let current = stack.path().join("frontend/website/current");
    let before = std::fs::read_link(&current).ok();
    let out = stack.slipway(&["deploy", "website"], &[]);
    assert_exit(&out, 2, &format!("runs on {host}, another machine"));
    assert_exit(&out, 2, "bind-mounts");
    assert_eq!(std::fs::read_link(&current).ok(), before);

    let out = stack.slipway(&["plan", "backend", "--json"], &[]);
    let plan = json(&out);
    assert_eq!(plan["engine"]["remote"], true, "{plan}");
    let checks = plan["engine"]["checks"].as_str().unwrap();
    assert!(checks.contains(&format!("published on {host}")), "{checks}");

    // The same engine over ssh (sshd in its namespace runs dial-stdio).
    let over_ssh = format!("ssh://root@{host}");
    let out = stack.slipway(
        &["plan", "backend", "--json"],
        &[("DOCKER_HOST", &over_ssh)],
    );
    let plan = json(&out);
    assert_eq!(plan["engine"]["address"], over_ssh.as_str(), "{plan}");
    let api = &plan["surfaces"][0]["services"][0];
    assert_eq!(api["service"], "api", "{plan}");
    assert!(
        api["image_before"].is_string(),
        "the plan did not see api over ssh: {plan}"
    );

    // Start-first, so that users are served throughout: the new api is
    // ready before nginx moves to it. Without its healthcheck, and with its
    // port not published, that is asked from inside it (busybox's nc).
    use_plugin(&stack, "nginx-overlap.wasm");
    stack.edit_compose(
        "    healthcheck:\n      test: [\"CMD\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8000/version\"]\n      interval: 1s\n      timeout: 2s\n      retries: 30\n      start_period: 1s\n",
        "",
    );
    let old = api_ids(&stack);
    let load = Load::at(stack.addr(), 100);
    stack.set_version("api", "2.0.0");
    let out = stack.slipway(
        &["deploy", "backend", "--json"],
        &[("APP_VERSION", "2.0.0"), ("SLIPWAY_LOG", "slipway=debug")],
    );
    let (during, _) = load.stop_after(WINDOW);
    let report = json(&out);
    let all = crate::harness::text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(":8000 (asked from inside it)"),
        "api's readiness was not asked from inside it:\n{all}"
    );
    assert_eq!(report["engine"]["address"], stack.docker_host().unwrap());
    let new = api_ids(&stack);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_ne!(new, old, "api was not recreated");
    let (_, body) = http_get_at(stack.addr(), "/version");
    assert!(body.contains("honeychat-api 2.0.0 "), "{body}");
    eprintln!(
        "remote deploy (nginx-overlap): {} ok, {} failed during the deploy",
        during.ok,
        during.non_2xx + during.errors
    );
    assert_overlap_failures(&stack, &during, "during the remote deploy");
    let after = Load::at(stack.addr(), 100).stop_after(WINDOW).0;
    assert_no_failures(&after, "after the remote deploy");
}

/// On engine 2, over TLS with a client certificate.
#[test]
fn the_engine_restarted_mid_deploy_fails_clearly_and_a_rerun_converges() {
    let stack = remote_stack(2);
    // The deploy is still waiting for the worker to settle when the engine
    // goes away, however fast the rest goes.
    stack.edit_manifest(
        "services = [\"api\", \"bot\", \"worker\"]",
        "services = [\"api\", \"bot\", \"worker\"]\nsettle = { worker = 10 }",
    );
    let old = api_ids(&stack);
    stack.set_version("api", "2.0.0");
    let mut child = stack
        .slipway_command(&["deploy", "backend"], &[("APP_VERSION", "2.0.0")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once api is replaced, the deploy waits for it: restart the engine then.
    let start = Instant::now();
    while api_ids(&stack) == old {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "api was never replaced"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the deploy ended before api was replaced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sh(
        &format!(
            "{}/scripts/engines restart 2",
            crate::harness::repo_root().display()
        ),
        stack.path(),
        &[],
    );
    let out = child.wait_with_output().unwrap();
    let all = crate::harness::text(&out);
    eprintln!("the deploy the engine's restart cut off:\n{all}");
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(stack.docker_host().unwrap()),
        "the engine is not named:\n{all}"
    );

    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "2.0.0")]);
    assert!(
        out.status.success(),
        "the rerun: {}",
        crate::harness::text(&out)
    );
    assert_eq!(api_ids(&stack).len(), 1);
    let (_, body) = http_get_at(stack.addr(), "/version");
    assert!(body.contains("honeychat-api 2.0.0 "), "{body}");
    let after = Load::at(stack.addr(), 100).stop_after(WINDOW).0;
    assert_no_failures(&after, "after the rerun");
}
