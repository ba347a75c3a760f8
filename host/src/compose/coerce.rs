//! Values typed as compose types them, once interpolated. `${VAR}` always
//! yields a string, and compose converts it where its schema wants a number
//! or a boolean (`retries: $RETRIES`, `read_only: ${READ_ONLY}`); a number
//! written where compose takes a string (`expose: [5432]`) is that string.
//! The paths are those compose v2 casts (compose-go's interpolation casts)
//! among the keys slipway reads.

use super::merge::scalar_text;
use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone, Copy)]
enum Cast {
    Bool,
    Int,
    /// A scalar that must be a string: a number or boolean is written out.
    Text,
}

/// `*` matches any key of a mapping or any item of a list.
const CASTS: &[(&[&str], Cast)] = &[
    (&["services", "*", "read_only"], Cast::Bool),
    (&["services", "*", "privileged"], Cast::Bool),
    (&["services", "*", "init"], Cast::Bool),
    (&["services", "*", "tty"], Cast::Bool),
    (&["services", "*", "stdin_open"], Cast::Bool),
    (&["services", "*", "healthcheck", "retries"], Cast::Int),
    (&["services", "*", "pids_limit"], Cast::Int),
    (&["services", "*", "deploy", "replicas"], Cast::Int),
    (
        &["services", "*", "deploy", "restart_policy", "max_attempts"],
        Cast::Int,
    ),
    (
        &["services", "*", "deploy", "resources", "limits", "pids"],
        Cast::Int,
    ),
    (&["services", "*", "group_add", "*"], Cast::Text),
    (&["services", "*", "healthcheck", "disable"], Cast::Bool),
    (&["services", "*", "ulimits", "*"], Cast::Int),
    (&["services", "*", "ulimits", "*", "soft"], Cast::Int),
    (&["services", "*", "ulimits", "*", "hard"], Cast::Int),
    (&["services", "*", "ports", "*", "target"], Cast::Int),
    (&["services", "*", "ports", "*", "published"], Cast::Text),
    (&["services", "*", "env_file", "*", "required"], Cast::Bool),
    (&["services", "*", "volumes", "*", "read_only"], Cast::Bool),
    (
        &["services", "*", "volumes", "*", "volume", "nocopy"],
        Cast::Bool,
    ),
    (
        &["services", "*", "volumes", "*", "bind", "create_host_path"],
        Cast::Bool,
    ),
    (&["services", "*", "depends_on", "*", "restart"], Cast::Bool),
    (
        &["services", "*", "depends_on", "*", "required"],
        Cast::Bool,
    ),
    (&["services", "*", "expose", "*"], Cast::Text),
    (&["services", "*", "ports", "*"], Cast::Text),
    (&["services", "*", "dns", "*"], Cast::Text),
    (&["services", "*", "dns_opt", "*"], Cast::Text),
    (&["services", "*", "cap_add", "*"], Cast::Text),
    (&["services", "*", "cap_drop", "*"], Cast::Text),
    (&["services", "*", "security_opt", "*"], Cast::Text),
    (&["services", "*", "extra_hosts", "*"], Cast::Text),
    (&["services", "*", "tmpfs", "*"], Cast::Text),
    (&["services", "*", "build", "args", "*"], Cast::Text),
    (&["networks", "*", "external"], Cast::Bool),
    (&["networks", "*", "internal"], Cast::Bool),
    (&["networks", "*", "attachable"], Cast::Bool),
    (&["networks", "*", "enable_ipv6"], Cast::Bool),
    (&["volumes", "*", "external"], Cast::Bool),
];

type KeyError = (Vec<String>, String);

/// Cast every value at a path of [`CASTS`] in a file's root.
pub fn apply(root: &mut Mapping) -> Result<(), KeyError> {
    for (pattern, cast) in CASTS {
        visit_mapping(root, pattern, *cast, &mut Vec::new())?;
    }
    Ok(())
}

fn visit(
    node: &mut Value,
    pattern: &[&str],
    cast: Cast,
    keys: &mut Vec<String>,
) -> Result<(), KeyError> {
    match node {
        _ if pattern.is_empty() => convert(node, cast).map_err(|e| (keys.clone(), e))?,
        Value::Mapping(m) => visit_mapping(m, pattern, cast, keys)?,
        Value::Sequence(items) if pattern[0] == "*" => {
            for (i, v) in items.iter_mut().enumerate() {
                keys.push(i.to_string());
                visit(v, &pattern[1..], cast, keys)?;
                keys.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// `pattern` is not empty.
fn visit_mapping(
    m: &mut Mapping,
    pattern: &[&str],
    cast: Cast,
    keys: &mut Vec<String>,
) -> Result<(), KeyError> {
    for (k, v) in m.iter_mut() {
        let key = scalar_text(k);
        if pattern[0] == "*" || pattern[0] == key {
            keys.push(key);
            visit(v, &pattern[1..], cast, keys)?;
            keys.pop();
        }
    }
    Ok(())
}

fn convert(value: &mut Value, cast: Cast) -> Result<(), String> {
    let Value::String(text) = value else {
        if let (Cast::Text, Value::Number(_) | Value::Bool(_)) = (cast, &value) {
            *value = Value::String(scalar_text(value));
        }
        return Ok(());
    };
    *value = match cast {
        Cast::Text => return Ok(()),
        Cast::Bool => Value::Bool(boolean(text)?),
        Cast::Int => {
            let n: i64 = text
                .trim()
                .parse()
                .map_err(|_| format!("`{text}` is not a whole number"))?;
            Value::Number(n.into())
        }
    };
    Ok(())
}

/// As compose v2 reads a boolean from a string: `true`/`false` in any case,
/// and YAML 1.1's `yes`, `y`, `on`, `no`, `n`, `off`, which it still takes.
fn boolean(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" => Ok(true),
        "false" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!("`{text}` is not a boolean: write true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(yaml: &str) -> Result<Value, KeyError> {
        let Value::Mapping(mut root) = serde_yaml::from_str(yaml).unwrap() else {
            panic!("not a mapping")
        };
        apply(&mut root).map(|()| Value::Mapping(root))
    }

    #[test]
    fn interpolated_strings_become_the_types_compose_gives_them() {
        let v = cast(
            "services:\n  db:\n    read_only: 'TRUE'\n    tty: 'on'\n    init: 'n'\n    \
             healthcheck: {retries: ' 5 ', disable: 'false'}\n    \
             expose: [5432, '5433']\n    ports: [8080, {target: '80'}]\n    \
             volumes: [{type: bind, source: /a, target: /b, read_only: 'yes'}]\n\
             networks:\n  edge: {external: 'true'}\n",
        )
        .unwrap();
        let db = &v["services"]["db"];
        assert_eq!(db["read_only"], Value::Bool(true));
        assert_eq!(db["tty"], Value::Bool(true));
        assert_eq!(db["init"], Value::Bool(false));
        assert_eq!(db["healthcheck"]["retries"], Value::Number(5.into()));
        assert_eq!(db["healthcheck"]["disable"], Value::Bool(false));
        assert_eq!(db["expose"][0], Value::String("5432".into()));
        assert_eq!(db["expose"][1], Value::String("5433".into()));
        assert_eq!(db["ports"][0], Value::String("8080".into()));
        assert_eq!(db["ports"][1]["target"], Value::Number(80.into()));
        assert_eq!(db["volumes"][0]["read_only"], Value::Bool(true));
        assert_eq!(v["networks"]["edge"]["external"], Value::Bool(true));
    }

    #[test]
    fn a_value_that_does_not_convert_names_its_key() {
        let (keys, message) = cast("services:\n  db:\n    read_only: maybe\n").unwrap_err();
        assert_eq!(keys, ["services", "db", "read_only"]);
        assert!(message.contains("`maybe` is not a boolean"), "{message}");
        let (keys, message) =
            cast("services:\n  db:\n    healthcheck: {retries: many}\n").unwrap_err();
        assert_eq!(keys, ["services", "db", "healthcheck", "retries"]);
        assert!(message.contains("not a whole number"), "{message}");
    }
}
