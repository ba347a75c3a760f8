//! Rule 1 against a real Docker engine and a real nginx: a deploy ships new
//! code only by force-recreating, and a restart does not.

use crate::harness::{Stack, docker_inspect, http_get, json, text};
use serde_json::Value;

fn image_of(container: &str) -> String {
    docker_inspect(container)["Image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn deploy_backend_ships_the_new_image_and_restart_does_not() {
    let stack = Stack::up();
    let (_, before) = http_get(stack.port, "/version");
    assert!(before.starts_with("honeychat-api v1 "), "{before}");
    let old_image = image_of(&stack.container("api"));

    // A plain restart after a rebuild leaves the old code running.
    stack.set_version("api", "v-restart-only");
    stack.compose("build api");
    let rebuilt = sh_image_id(&stack, "api");
    assert_ne!(rebuilt, old_image);
    crate::harness::sh(
        &format!("docker restart {}", stack.container("api")),
        stack.path(),
        &[],
    );
    stack.wait_until(|| http_get(stack.port, "/version").0 == 200);
    assert_eq!(
        image_of(&stack.container("api")),
        old_image,
        "restart must not change the image"
    );
    let (_, after_restart) = http_get(stack.port, "/version");
    assert!(
        after_restart.starts_with("honeychat-api v1 "),
        "restart shipped new code?! {after_restart}"
    );
    // `slipway status` sees the drift.
    let status = stack.slipway(&["status", "--json"], &[]);
    let rows = json(&status);
    let api = rows["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api["stale"], true, "{}", text(&status));

    // The deploy recreates, proves the image, and the front door shows v2.
    stack.set_version("api", "v2");
    let out = stack.slipway(&["deploy", "backend", "--json"], &[("APP_VERSION", "v2")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json(&out);
    let services = report["surfaces"][0]["services"].as_array().unwrap();
    for svc in services {
        assert_eq!(svc["image_running"], svc["image_built"], "{svc}");
        assert_ne!(svc["image_running"], svc["image_before"], "{svc}");
    }
    let api = services.iter().find(|s| s["service"] == "api").unwrap();
    assert_eq!(
        image_of(&stack.container("api")),
        api["image_built"].as_str().unwrap()
    );
    let (status, body) = http_get(stack.port, "/version");
    assert_eq!(status, 200);
    assert!(body.starts_with("honeychat-api v2 "), "{body}");
    assert!(
        report["surfaces"][0]["verify"]["ok"].as_bool().unwrap(),
        "{report}"
    );

    // And the verification can fail: expecting a version that was not built.
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v3")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("verification of"), "{}", text(&out));
}

fn sh_image_id(stack: &Stack, service: &str) -> String {
    let tag = format!("{}-{service}", stack.project);
    crate::harness::sh(
        &format!("docker image inspect -f '{{{{.Id}}}}' {tag}"),
        stack.path(),
        &[],
    )
    .trim()
    .to_owned()
}

/// What must survive a recreate, with the per-container parts removed.
fn identity(c: &Value) -> Value {
    let id = c["Id"].as_str().unwrap();
    let short = &id[..12];
    let mut networks = serde_json::Map::new();
    for (name, ep) in c["NetworkSettings"]["Networks"].as_object().unwrap() {
        let mut aliases: Vec<String> = ep["Aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned())
            .filter(|a| a != short)
            .collect();
        aliases.sort();
        networks.insert(name.clone(), serde_json::json!(aliases));
    }
    let mut mounts: Vec<String> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {}",
                m["Type"], m["Name"], m["Source"], m["Destination"]
            )
        })
        .collect();
    mounts.sort();
    // Each side labels the image it built, and slipway adds its spec hash.
    let mut labels = c["Config"]["Labels"].as_object().unwrap().clone();
    labels.retain(|k, _| !k.starts_with("dev.slipway.") && k != "com.docker.compose.image");
    let mut binds: Vec<Value> = c["HostConfig"]["Binds"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    binds.sort_by_key(|b| b.to_string());
    serde_json::json!({
        "name": c["Name"],
        "env": c["Config"]["Env"],
        "labels": labels,
        "healthcheck": c["Config"]["Healthcheck"],
        "restart": c["HostConfig"]["RestartPolicy"],
        "binds": binds,
        "ports": c["HostConfig"]["PortBindings"],
        "network_mode": c["HostConfig"]["NetworkMode"],
        "networks": networks,
        "mounts": mounts,
    })
}

#[test]
fn recreate_preserves_aliases_mounts_env_labels_and_restart_policy() {
    let stack = Stack::up();
    let before = docker_inspect(&stack.container("api"));
    assert!(
        identity(&before)["networks"]
            .to_string()
            .contains("backend"),
        "the fixture must have a network alias to lose: {}",
        identity(&before)
    );
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v1")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = docker_inspect(&stack.container("api"));
    assert_ne!(before["Id"], after["Id"], "the container was not recreated");
    assert_eq!(identity(&before), identity(&after));
    // Also for a service on the external network, with published ports.
    let nginx_before = docker_inspect(&stack.container("nginx"));
    let body = std::fs::read_to_string(stack.path().join("slipway.toml"))
        .unwrap()
        .replace(
            "services = [\"api\", \"bot\", \"worker\"]",
            "services = [\"api\", \"bot\", \"worker\", \"nginx\"]",
        );
    std::fs::write(stack.path().join("slipway.toml"), body).unwrap();
    let out = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v1")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let nginx_after = docker_inspect(&stack.container("nginx"));
    assert_ne!(nginx_before["Id"], nginx_after["Id"]);
    assert_eq!(identity(&nginx_before), identity(&nginx_after));
    assert_eq!(http_get(stack.port, "/version").0, 200);
}
