//! Compose v2 and slipway on one stack, both ways (the example's 14
//! services): `docker compose` sees slipway's containers as its own and
//! leaves them alone, and slipway adopts what `docker compose up` made on
//! the definition it would deploy.

use crate::harness::{Load, Stack, docker_inspect, json, text};
use crate::nginx::use_plugin;
use std::collections::BTreeMap;
use std::time::Duration;

/// Every container of the project, by service: compose's own listing.
fn ids_by_service(stack: &Stack) -> BTreeMap<String, String> {
    stack
        .compose("ps -a --format '{{.Service}} {{.ID}}'")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(s, id)| (s.to_owned(), id.to_owned()))
        .collect()
}

/// `slipway plan --all --json`: each service's action and reasons.
fn plan(stack: &Stack) -> BTreeMap<String, (String, String)> {
    let out = stack.slipway(&["--json", "plan", "--all"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    actions(&json(&out))
}

/// Each service of a run report: its action and what changed.
fn actions(report: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    let mut actions = BTreeMap::new();
    for surface in report["surfaces"].as_array().unwrap() {
        for s in surface["services"].as_array().into_iter().flatten() {
            actions.insert(
                s["service"].as_str().unwrap().to_owned(),
                (
                    s["action"].as_str().unwrap().to_owned(),
                    s["changed"].to_string(),
                ),
            );
        }
    }
    actions
}

fn replaced(plan: &BTreeMap<String, (String, String)>) -> Vec<&str> {
    plan.iter()
        .filter(|(_, (action, _))| action != "skip")
        .map(|(service, _)| service.as_str())
        .collect()
}

#[test]
fn compose_v2_and_slipway_each_take_the_others_containers_as_their_own() {
    // `docker compose up -d --build`: slipway's plan adopts every service.
    let stack = Stack::seed_scale();
    let by_compose = ids_by_service(&stack);
    assert_eq!(by_compose.len(), 14, "{by_compose:?}");
    let first = plan(&stack);
    assert!(replaced(&first).is_empty(), "{first:?}");

    // slipway replaces the eight Python services; compose v2 lists all 14.
    std::fs::write(stack.path().join("backend/VERSION"), "v2\n").unwrap();
    let out = stack.slipway(&["--json", "deploy", "backend"], &[("APP_VERSION", "v2")]);
    assert!(out.status.success(), "{}", text(&out));
    let after_deploy = ids_by_service(&stack);
    assert_eq!(
        after_deploy.keys().collect::<Vec<_>>(),
        by_compose.keys().collect::<Vec<_>>()
    );
    let moved: Vec<&String> = after_deploy
        .iter()
        .filter(|(s, id)| by_compose[*s] != **id)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(moved.len(), 8, "the backend's services: {moved:?}");

    // `docker compose up -d` creates and recreates nothing.
    let up = stack.compose("up -d --no-build --pull never");
    assert_eq!(ids_by_service(&stack), after_deploy, "compose up:\n{up}");
    let logs = stack.compose("logs --tail 3 api");
    assert!(logs.contains("honeychat-api v2"), "{logs}");
    let nginx_t = stack.compose("exec -T nginx nginx -t");
    assert!(nginx_t.contains("successful"), "{nginx_t}");

    // A changed file, applied by compose: it recreates one service, and
    // slipway's plan finds that container on the definition it would
    // deploy, and everything else as it left it.
    stack.edit_compose(
        r#"command: ["python3", "/app/bot.py"]"#,
        r#"command: ["python3", "-u", "/app/bot.py"]"#,
    );
    let up = stack.compose("up -d --no-build --pull never");
    let after_up = ids_by_service(&stack);
    let recreated: Vec<&String> = after_up
        .iter()
        .filter(|(s, id)| after_deploy[*s] != **id)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(recreated, ["bot"], "compose up:\n{up}");
    let second = plan(&stack);
    assert!(replaced(&second).is_empty(), "{second:?}");

    // Compose removes every container of the project, slipway's included,
    // as `down` does before it removes the networks. (The networks are the
    // stack's teardown's: on a loaded dockerd 20.10, `down`'s network
    // removal can fail with "has active endpoints" while no container is
    // left, moby/moby#42119, which says nothing about whose they were.)
    stack.compose("rm --stop --force");
    assert!(ids_by_service(&stack).is_empty());
}

/// A stack docker-compose v1 brought up (`<project>_<service>_1`, no
/// config-hash) is migrated by its first deploy, service by service under
/// the surface's own strategy (here nginx-zero-downtime's start-first),
/// with users served throughout; the rerun changes nothing.
#[test]
fn a_stack_made_by_compose_v1_migrates_on_the_first_deploy_under_load() {
    let stack = Stack::up();
    use_plugin(&stack, "nginx-zero-downtime.wasm");
    stack.compose("down");
    let up = stack.compose_v1("up -d");
    stack.wait_for_api();
    let v1_api = format!("{}_api_1", stack.project);
    assert!(docker_inspect(&v1_api)["Id"].is_string(), "{up}");

    let load = Load::start(stack.port, 100);
    stack.set_version("api", "v2");
    let out = stack.slipway(&["--json", "deploy", "backend"], &[("APP_VERSION", "v2")]);
    let (tally, took) = load.stop_after(Duration::ZERO);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("migration from compose v1 under load: {tally:?} in {took:?}");
    assert_eq!(
        (tally.non_2xx, tally.errors),
        (0, 0),
        "a migration from compose v1 failed requests: {tally:?}\n{}",
        text(&out)
    );
    let report = json(&out);
    for service in report["surfaces"][0]["services"].as_array().unwrap() {
        let name = service["service"].as_str().unwrap();
        let said = service["changed"].to_string();
        assert!(
            said.contains(&format!(
                "compose v1's {}_{name}_1 becomes compose v2's {}-{name}-1",
                stack.project, stack.project
            )),
            "{name}: {said}"
        );
        assert!(docker_inspect(&stack.container(name))["Id"].is_string());
    }

    let rerun = json(&stack.slipway(&["--json", "plan", "backend"], &[("APP_VERSION", "v2")]));
    for service in rerun["surfaces"][0]["services"].as_array().unwrap() {
        assert_eq!(service["action"], "skip", "{service}");
    }
}

/// `depends_on: {api: {restart: true}}`: when a deploy replaces api, the
/// bot that depends on it is restarted in place (same container, started
/// again), as `docker compose up` restarts it; a worker without the flag
/// is left running.
#[test]
fn a_dependent_with_restart_true_is_restarted_when_its_dependency_is_replaced() {
    let stack = Stack::up();
    stack.edit_compose(
        "  bot:\n    build: ./worker\n",
        "  bot:\n    build: ./worker\n    depends_on:\n      api:\n        condition: service_started\n        restart: true\n",
    );
    // The edit changes bot's definition: the first deploy replaces it.
    let first = stack.slipway(&["deploy", "backend"], &[("APP_VERSION", "v1")]);
    assert!(first.status.success(), "{}", text(&first));
    let started = |service: &str| {
        let c = docker_inspect(&stack.container(service));
        (c["Id"].to_string(), c["State"]["StartedAt"].to_string())
    };
    let (bot, worker) = (started("bot"), started("worker"));

    stack.set_version("api", "v2");
    let out = stack.slipway(&["--json", "deploy", "backend"], &[("APP_VERSION", "v2")]);
    assert!(out.status.success(), "{}", text(&out));
    let actions = actions(&json(&out));
    let action = |name: &str| actions.get(name).map(|(action, _)| action.as_str());
    assert_eq!(action("api"), Some("replace"), "{actions:?}");
    assert_eq!(action("bot"), Some("skip"), "{actions:?}");
    let bot_after = started("bot");
    assert_eq!(bot_after.0, bot.0, "bot keeps its container");
    assert_ne!(bot_after.1, bot.1, "bot was not restarted:\n{}", text(&out));
    assert_eq!(started("worker"), worker, "worker has no restart: true");
}
