//! Rule 2 against a real nginx: the stale-upstream bug reproduced, fixed by
//! `nginx-reload`, and avoided with zero failed requests by
//! `nginx-zero-downtime`, including its rollbacks.

use crate::harness::{Load, Stack, docker_inspect, http_get, sh, text};

pub(crate) fn internal_ip(stack: &Stack, service: &str) -> String {
    let c = docker_inspect(&stack.container(service));
    let network = format!("{}_internal", stack.project);
    c["NetworkSettings"]["Networks"][&network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn hostname(stack: &Stack, service: &str) -> String {
    docker_inspect(&stack.container(service))["Id"]
        .as_str()
        .unwrap()[..12]
        .to_owned()
}

/// Stop api and let a decoy take its address, so that api's next container
/// gets a new IP while nginx still holds the old one. The decoy answers on
/// api's port, so stale routing shows up as the wrong service answering.
pub(crate) fn decoy_takes_api_ip(stack: &Stack) -> String {
    let old_ip = internal_ip(stack, "api");
    stack.compose("stop api");
    sh(
        &format!(
            "docker run -d --name {p}_decoy --network {p}_internal slipway-test/busybox:latest \
             sh -c 'mkdir -p /www && echo decoy > /www/version && exec httpd -f -p 8000 -h /www'",
            p = stack.project
        ),
        stack.path(),
        &[],
    );
    let decoy = docker_inspect(&format!("{}_decoy", stack.project));
    let network = format!("{}_internal", stack.project);
    assert_eq!(
        decoy["NetworkSettings"]["Networks"][&network]["IPAddress"]
            .as_str()
            .unwrap(),
        old_ip,
        "the decoy must hold api's old address for this test to mean anything"
    );
    old_ip
}

/// How many containers the api service has, running or not.
pub(crate) fn api_containers(stack: &Stack) -> usize {
    let ids = sh(
        &format!(
            "docker ps -aq --filter label=com.docker.compose.project={} --filter label=com.docker.compose.service=api",
            stack.project
        ),
        stack.path(),
        &[],
    );
    ids.lines().count()
}

fn remove_decoy(stack: &Stack) {
    sh(
        &format!("docker rm -f {}_decoy", stack.project),
        stack.path(),
        &[],
    );
}

/// Point the manifest's nginx step at another strategy's build.
pub(crate) fn use_plugin(stack: &Stack, file: &str) {
    let path = stack.path().join("slipway.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let manifest = [
        "nginx-reload.wasm",
        "nginx-zero-downtime.wasm",
        "nginx-overlap.wasm",
    ]
    .iter()
    .fold(manifest, |m, build| m.replace(build, file));
    std::fs::write(path, manifest).unwrap();
}

pub(crate) fn set_step_config(stack: &Stack, extra: &str) {
    let path = stack.path().join("slipway.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let manifest = manifest.replace(
        "upstreams_dir = \"/upstreams\"",
        &format!("upstreams_dir = \"/upstreams\", {extra}"),
    );
    std::fs::write(path, manifest).unwrap();
}

#[test]
fn a_naive_recreate_leaves_nginx_on_the_old_address() {
    let stack = Stack::up();
    let old_ip = decoy_takes_api_ip(&stack);
    stack.set_version("api", "v2");
    stack.compose("build api");
    stack.compose("up -d --force-recreate --no-deps api");
    stack.wait_until(|| {
        docker_inspect(&stack.container("api"))["State"]["Health"]["Status"] == "healthy"
    });
    assert_ne!(internal_ip(&stack, "api"), old_ip, "api must have moved");
    // nginx still sends api traffic to the old address: the decoy answers.
    let (status, body) = http_get(stack.port, "/version");
    assert!(
        status != 200 || body.trim() == "decoy",
        "expected a stale route (502 or the decoy), got {status} {body}"
    );
    remove_decoy(&stack);
}

#[test]
fn nginx_reload_routes_to_the_new_container() {
    let stack = Stack::up();
    let old_ip = decoy_takes_api_ip(&stack);
    stack.set_version("api", "v2");
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v2")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(internal_ip(&stack, "api"), old_ip, "api must have moved");
    let expected = format!("honeychat-api v2 {}", hostname(&stack, "api"));
    for _ in 0..20 {
        let (status, body) = http_get(stack.port, "/version");
        assert_eq!((status, body.trim()), (200, expected.as_str()));
    }
    // No fixed sleep anywhere in the plugin: readiness is probed.
    let source =
        std::fs::read_to_string(crate::harness::repo_root().join("plugins/nginx/src/reload.rs"))
            .unwrap();
    assert!(
        !source.contains("sleep(") && !source.contains("pause_ms("),
        "reload.rs must not sleep"
    );
    remove_decoy(&stack);
}

#[test]
fn several_services_at_once_never_leave_nginx_on_another_services_address() {
    let stack = Stack::up();
    for round in 2..5 {
        // bot builds from worker/, so this changes api, bot and worker.
        for service in ["api", "worker"] {
            stack.set_version(service, &format!("v{round}"));
        }
        let version = format!("v{round}");
        let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", &version)]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let expected = format!("honeychat-api v{round} {}", hostname(&stack, "api"));
        for _ in 0..20 {
            let (status, body) = http_get(stack.port, "/version");
            assert_eq!(
                (status, body.trim()),
                (200, expected.as_str()),
                "round {round}"
            );
        }
    }
}

#[test]
fn zero_downtime_deploys_fail_no_request_and_the_strategy_is_a_file_swap() {
    let stack = Stack::up();
    // First with nginx-reload, then swap only the plugin file in the manifest.
    stack.set_version("api", "v2");
    let out = stack.slipway(&["deploy", "backend", "--json"], &[("APP_VERSION", "v2")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        crate::harness::json(&out)["surfaces"][0]["steps"][0]["plugin_name"],
        "nginx-reload"
    );
    use_plugin(&stack, "nginx-zero-downtime.wasm");

    let upstream_file = stack.path().join("nginx/upstreams/api.conf");
    let written = std::fs::read_to_string(&upstream_file).unwrap();
    let load = Load::start(stack.port, 120);
    for round in 3..13 {
        let version = format!("v{round}");
        stack.set_version("api", &version);
        let out = stack.slipway(
            &["deploy", "backend", "--json"],
            &[("APP_VERSION", &version)],
        );
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        let report = crate::harness::json(&out);
        assert_eq!(
            report["surfaces"][0]["steps"][0]["plugin_name"],
            "nginx-zero-downtime"
        );
    }
    let (tally, took) = load.stop();
    let expected = (took.as_secs_f64() * 100.0) as u64;
    assert!(
        tally.ok >= expected,
        "the load was too thin to mean anything: {tally:?} in {took:?}"
    );
    assert_eq!(
        (tally.non_2xx, tally.errors),
        (0, 0),
        "failed requests: {tally:?}"
    );
    let (_, body) = http_get(stack.port, "/version");
    assert!(body.starts_with("honeychat-api v12 "), "{body}");
    assert_eq!(
        std::fs::read_to_string(&upstream_file).unwrap(),
        written,
        "the include file was not put back"
    );
    assert_eq!(api_containers(&stack), 1, "old containers left behind");
}

#[test]
fn a_replacement_that_never_gets_ready_is_rolled_back_under_load() {
    let stack = Stack::up();
    use_plugin(&stack, "nginx-zero-downtime.wasm");
    set_step_config(&stack, "ready_timeout_ms = 4000");
    let before = docker_inspect(&stack.container("api"))["Id"].clone();
    // The new api never listens, so it never turns healthy.
    std::fs::write(
        stack.path().join("api/entrypoint.sh"),
        "#!/bin/sh\nexec sleep 2147483647\n",
    )
    .unwrap();
    let load = Load::start(stack.port, 120);
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v2")]);
    let (tally, _) = load.stop();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("the new api never became ready") && all.contains("rolled back"),
        "{all}"
    );
    assert_eq!(
        (tally.non_2xx, tally.errors),
        (0, 0),
        "failed requests: {tally:?}"
    );
    assert!(tally.ok > 100, "{tally:?}");
    assert_eq!(
        docker_inspect(&stack.container("api"))["Id"],
        before,
        "the old api must still serve"
    );
    assert_eq!(
        api_containers(&stack),
        1,
        "the failed replacement was left behind"
    );
    assert!(
        http_get(stack.port, "/version")
            .1
            .starts_with("honeychat-api v1 ")
    );
}

#[test]
fn a_failing_nginx_test_stops_before_any_reload() {
    let stack = Stack::up();
    use_plugin(&stack, "nginx-zero-downtime.wasm");
    // Break the config on disk; the running nginx still has the good one.
    sh(
        &format!(
            "docker exec {} sh -c 'echo bogus_directive on\\; >> /etc/nginx/nginx.conf'",
            stack.container("nginx")
        ),
        stack.path(),
        &[],
    );
    stack.set_version("api", "v2");
    let load = Load::start(stack.port, 120);
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v2")]);
    let (tally, _) = load.stop();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("nginx -t") && all.contains("unknown directive \\\"bogus_directive\\\"")
            || all.contains("unknown directive \"bogus_directive\""),
        "{all}"
    );
    assert_eq!(
        (tally.non_2xx, tally.errors),
        (0, 0),
        "failed requests: {tally:?}"
    );
    assert!(
        http_get(stack.port, "/version")
            .1
            .starts_with("honeychat-api v1 "),
        "the old config and api keep serving"
    );
}

/// OpenResty's shape behind a real nginx (Debian's lua module): Lua blocks
/// whose bodies hold braces, semicolons and quotes nginx's own syntax would
/// choke on. The zero-downtime strategy reads `nginx -T` as nginx does,
/// replaces api start-first with no failed request under load, and the
/// Lua still answers.
#[test]
fn a_start_first_deploy_works_behind_nginx_with_lua_blocks() {
    let stack = Stack::up_with(|dir| {
        let dockerfile = dir.join("nginx/Dockerfile");
        let text = std::fs::read_to_string(&dockerfile).unwrap();
        let text = text.replace("slipway-test/nginx:latest", "slipway-test/nginx-lua:latest");
        std::fs::write(&dockerfile, text).unwrap();
        let conf = dir.join("nginx/nginx.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let modules = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
                       load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n";
        let lua = r#"
    location = /lua {
      default_type text/plain;
      content_by_lua_block {
        local t = { ["}"] = "{;", n = 42 }  -- a brace, a semicolon: Lua's, not nginx's
        ngx.say([[lua ]] .. t["}"] .. " " .. t.n)
      }
    }
    location = /version {
      access_by_lua_block { if ngx.var.arg_deny == "1" then return ngx.exit(403) end }
      proxy_pass http://api_upstream/version;
    }"#;
        let text = text.replacen(
            "\n    location = /version {\n      proxy_pass http://api_upstream/version;\n    }",
            lua,
            1,
        );
        assert!(
            text.contains("content_by_lua_block"),
            "the fixture's /version location moved"
        );
        std::fs::write(&conf, format!("{modules}{text}")).unwrap();
    });
    use_plugin(&stack, "nginx-zero-downtime.wasm");
    assert_eq!(
        http_get(stack.port, "/lua"),
        (200, "lua {; 42\n".to_owned())
    );
    assert_eq!(http_get(stack.port, "/version?deny=1").0, 403);

    let load = Load::start(stack.port, 100);
    stack.set_version("api", "v2");
    let out = stack.slipway(&["deploy", "backend", "--json"], &[("APP_VERSION", "v2")]);
    let (tally, took) = load.stop();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    eprintln!("start-first behind lua blocks: {tally:?} in {took:?}");
    assert_eq!(
        (tally.non_2xx, tally.errors),
        (0, 0),
        "failed requests: {tally:?}"
    );
    let (_, body) = http_get(stack.port, "/version");
    assert!(body.starts_with("honeychat-api v2 "), "{body}");
    assert_eq!(
        http_get(stack.port, "/lua"),
        (200, "lua {; 42\n".to_owned())
    );
    assert_eq!(api_containers(&stack), 1, "old containers left behind");
}
