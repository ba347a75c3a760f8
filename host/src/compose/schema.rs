//! The compose keys slipway carries onto containers. Anything else is
//! refused by name rather than dropped: a key compose would honour but
//! slipway ignored would make the deployed container differ from what the
//! file says, silently.

use serde_yaml::{Mapping, Value};

const TOP: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs",
];

const SERVICE: &[&str] = &[
    "build",
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "working_dir",
    "user",
    "labels",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "healthcheck",
    "restart",
    "stop_signal",
    "stop_grace_period",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "cap_add",
    "cap_drop",
    "ulimits",
    "logging",
    "init",
    "privileged",
    "read_only",
    "shm_size",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "cpu_shares",
    "devices",
    "sysctls",
    "security_opt",
    "hostname",
    "domainname",
    "container_name",
    "tty",
    "stdin_open",
    "depends_on",
    "profiles",
    "deploy",
    "pids_limit",
    "runtime",
    "group_add",
    "attach",
    "extends",
    "secrets",
    "configs",
    "platform",
    "pull_policy",
];

/// Allowed sub-keys of mapping-valued service keys, by their path under
/// the service.
const NESTED: &[(&[&str], &[&str])] = &[
    (&["build"], &["context", "dockerfile", "args", "target"]),
    (
        &["healthcheck"],
        &[
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "disable",
        ],
    ),
    (&["logging"], &["driver", "options"]),
    (&["extends"], &["service", "file"]),
    (
        &["deploy"],
        &["update_config", "resources", "restart_policy", "replicas"],
    ),
    (
        &["deploy", "restart_policy"],
        &["condition", "delay", "max_attempts", "window"],
    ),
    (&["deploy", "resources"], &["limits", "reservations"]),
    (
        &["deploy", "resources", "limits"],
        &["cpus", "memory", "pids"],
    ),
    (
        &["deploy", "resources", "reservations"],
        &["cpus", "memory"],
    ),
];

const SERVICE_NETWORK: &[&str] = &["aliases", "ipv4_address", "ipv6_address"];
const NETWORK: &[&str] = &[
    "driver",
    "driver_opts",
    "external",
    "internal",
    "attachable",
    "labels",
    "name",
    "ipam",
    "enable_ipv6",
];
const VOLUME: &[&str] = &["driver", "driver_opts", "external", "labels", "name"];
/// Allowed keys of the long-form items of list-valued service keys.
const LIST_ITEMS: &[(&str, &[&str])] = &[
    ("env_file", &["path", "required"]),
    ("secrets", &["source", "target", "uid", "gid", "mode"]),
    ("configs", &["source", "target", "uid", "gid", "mode"]),
];
/// Allowed keys of a long-form `include` item; relative paths are always
/// the included file's own.
const INCLUDE_ITEM: &[&str] = &["path", "env_file"];
/// A secret outside a swarm: a file, bound read-only, or the value of the
/// variable `environment` names, copied in before start. A config may also
/// give its value as `content` (compose v2 has no `content` for a secret).
const SECRET: &[&str] = &["name", "file", "environment"];
const CONFIG: &[&str] = &["name", "file", "environment", "content"];
/// In a swarm project `docker stack deploy` reads secrets and configs from
/// files.
const STACK_FILE_SOURCE: &[&str] = &["name", "file"];

/// Why a key is refused, when there is more to say than "not supported".
fn advice(key: &str) -> &'static str {
    match key {
        "external" => {
            "outside a swarm compose v2 has no secret store to read it from; give it `file:` \
             or `environment:` (a config also `content:`)"
        }
        "environment" => {
            "`docker stack deploy` reads secrets and configs from `file:`; write the value to \
             a file and name it with `file:`"
        }
        "content" => {
            "compose v2 takes `content:` for a config only; give a secret `file:` or \
             `environment:`, and a swarm's configs `file:`"
        }
        "links" | "external_links" => {
            "compose networks already resolve services by name; remove it and use the service name"
        }
        "deploy" => {
            "outside a swarm slipway reads `deploy.update_config`, `deploy.restart_policy` and \
             `deploy.resources` (limits: cpus, memory, pids; reservations: cpus, memory), \
             as compose applies them"
        }
        "build" => "slipway builds with context, dockerfile, args and target only",
        "network_mode" => "slipway supports network_mode host, none and bridge",
        _ => "slipway does not support it; remove it or deploy this service another way",
    }
}

type KeyError = (Vec<String>, String);

fn refuse(keys: &[&str], key: &str) -> KeyError {
    let path: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    (path, format!("unsupported key `{key}`: {}", advice(key)))
}

/// Check a whole file, before interpolation, so that nothing unsupported
/// reaches a container.
pub fn check(root: &Mapping, swarm: bool) -> Result<(), KeyError> {
    only(root, TOP, &[])?;
    if swarm && root.contains_key("include") {
        return Err(stack_ignores(vec!["include".into()], "include"));
    }
    for item in root
        .get("include")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        if let Value::Mapping(item) = item {
            only(item, INCLUDE_ITEM, &["include"])?;
        }
    }
    if let Some(services) = root.get("services") {
        let Value::Mapping(services) = services else {
            return Err((
                vec!["services".into()],
                "must be a mapping of services".into(),
            ));
        };
        for (name, def) in services {
            let name = name.as_str().unwrap_or_default();
            match def {
                Value::Mapping(def) => check_service(name, def, swarm)?,
                Value::Null => {}
                _ => {
                    return Err((
                        vec!["services".into(), name.into()],
                        "a service is a mapping of keys".into(),
                    ));
                }
            }
        }
    }
    let (secret, config) = match swarm {
        true => (STACK_FILE_SOURCE, STACK_FILE_SOURCE),
        false => (SECRET, CONFIG),
    };
    let sections = [
        ("networks", NETWORK, false),
        ("volumes", VOLUME, false),
        ("secrets", secret, true),
        ("configs", config, true),
    ];
    for (section, allowed, needs_source) in sections {
        if let Some(Value::Mapping(items)) = root.get(section) {
            for (name, def) in items {
                let name = name.as_str().unwrap_or_default();
                if let Value::Mapping(def) = def {
                    only(def, allowed, &[section, name])?;
                }
                if needs_source && !has_source(def) {
                    let sources = allowed[1..].join("`, `");
                    return Err((
                        vec![section.into(), name.into()],
                        format!("needs one of `{sources}`: where its bytes come from"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A secret or config says where its bytes come from.
fn has_source(def: &Value) -> bool {
    ["file", "environment", "content"]
        .iter()
        .any(|k| def.get(*k).is_some_and(|v| !v.is_null()))
}

fn check_service(name: &str, def: &Mapping, swarm: bool) -> Result<(), KeyError> {
    let at = ["services", name];
    only(def, SERVICE, &at)?;
    if swarm && def.contains_key("extends") {
        let keys = vec!["services".into(), name.into(), "extends".into()];
        return Err(stack_ignores(keys, "extends"));
    }
    if swarm && def.contains_key("profiles") {
        return Err((
            vec!["services".into(), name.into(), "profiles".into()],
            "`docker stack deploy` ignores profiles and would run this service on every deploy: \
             remove its profiles if it should always run, or move it to a compose file the swarm project does not list"
                .into(),
        ));
    }
    for (path, allowed) in NESTED {
        if swarm && path[0] == "deploy" {
            continue;
        }
        let mut value = def.get(path[0]);
        for key in &path[1..] {
            value = value.and_then(|v| v.get(*key));
        }
        if let Some(Value::Mapping(m)) = value {
            let at: Vec<&str> = ["services", name].iter().chain(*path).copied().collect();
            only(m, allowed, &at)?;
        }
    }
    for (key, allowed) in LIST_ITEMS {
        for item in def
            .get(*key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Value::Mapping(item) = item {
                only(item, allowed, &["services", name, key])?;
            }
        }
    }
    if let Some(Value::Mapping(networks)) = def.get("networks") {
        for (network, settings) in networks {
            if let Value::Mapping(settings) = settings {
                let network = network.as_str().unwrap_or_default();
                only(
                    settings,
                    SERVICE_NETWORK,
                    &["services", name, "networks", network],
                )?;
            }
        }
    }
    if let Some(mode) = def.get("network_mode").and_then(Value::as_str)
        && !matches!(mode, "host" | "none" | "bridge")
        && !mode.contains('$')
    {
        return Err(refuse(&["services", name, "network_mode"], "network_mode"));
    }
    Ok(())
}

/// A key that `docker stack deploy`, which reads a swarm project's files
/// itself, does not read.
fn stack_ignores(keys: Vec<String>, key: &str) -> KeyError {
    let message = format!(
        "`docker stack deploy` does not read `{key}`: write the services out in the files \
         the swarm project lists"
    );
    (keys, message)
}

fn only(m: &Mapping, allowed: &[&str], at: &[&str]) -> Result<(), KeyError> {
    for key in m.keys() {
        let key = key.as_str().unwrap_or_default();
        if !allowed.contains(&key) {
            let mut keys = at.to_vec();
            keys.push(key);
            // Under a nested key (`build.network`), the parent explains.
            let topic = if at.len() >= 3 { at[2] } else { key };
            let (path, _) = refuse(&keys, key);
            return Err((path, format!("unsupported key `{key}`: {}", advice(topic))));
        }
    }
    Ok(())
}
