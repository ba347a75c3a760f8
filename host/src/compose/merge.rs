//! Several compose files merged into one, as `docker compose -f a -f b`
//! merges them. Each service key has one rule: mappings merge key by key,
//! most lists append without duplicates, `volumes` and `devices` merge by
//! their target path, and everything else is replaced by the later file.

use serde_yaml::{Mapping, Value};

/// Resolve YAML merge keys (`<<: *x`, `<<: [*x, *y]`) at every level. A
/// merged mapping's own `<<` is resolved before it merges, so that defaults
/// built on defaults work (`<<: *app` where `app` has `<<: *restart`, as in
/// Sentry's file); serde_yaml's `apply_merge` leaves that inner `<<` behind
/// as a key. Keys written in the mapping win over merged ones, and earlier
/// sources in a list win over later ones, as YAML 1.1 specifies.
pub fn apply_merges(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Mapping(map) => {
            if let Some(merge) = map.remove("<<") {
                let sources = match merge {
                    Value::Sequence(items) => items,
                    other => vec![other],
                };
                for mut source in sources {
                    apply_merges(&mut source)?;
                    let Value::Mapping(source) = source else {
                        return Err("`<<` merges a mapping or a list of mappings, \
                                    such as `<<: *defaults`"
                            .into());
                    };
                    for (k, v) in source {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            for v in map.values_mut() {
                apply_merges(v)?;
            }
        }
        Value::Sequence(items) => {
            for v in items {
                apply_merges(v)?;
            }
        }
        Value::Tagged(tagged) => apply_merges(&mut tagged.value)?,
        _ => {}
    }
    Ok(())
}

/// Rewrite the short forms of a service so that files using different
/// forms merge: `environment`, `labels`, `sysctls` and `build.args` lists
/// become mappings, a `networks` list becomes a mapping, `build: ./dir`
/// becomes `{context: ./dir}`, `depends_on` lists become mappings, and a
/// single `env_file`/`dns`/`tmpfs` string becomes a list.
pub fn normalize_service(service: &mut Mapping) {
    for key in ["environment", "labels", "sysctls"] {
        if let Some(v) = service.get_mut(key) {
            list_to_map(v, '=');
        }
    }
    if let Some(build) = service.get_mut("build") {
        if let Value::String(context) = build {
            let mut m = Mapping::new();
            m.insert("context".into(), Value::String(context.clone()));
            *build = Value::Mapping(m);
        }
        if let Some(args) = build.get_mut("args") {
            list_to_map(args, '=');
        }
    }
    for key in ["networks", "depends_on"] {
        if let Some(Value::Sequence(items)) = service.get(key) {
            let mut m = Mapping::new();
            for item in items {
                let value = match key {
                    "depends_on" => {
                        let mut cond = Mapping::new();
                        cond.insert("condition".into(), "service_started".into());
                        Value::Mapping(cond)
                    }
                    _ => Value::Null,
                };
                m.insert(item.clone(), value);
            }
            service.insert(key.into(), Value::Mapping(m));
        }
    }
    for key in ["env_file", "dns", "dns_search", "tmpfs"] {
        if let Some(v @ Value::String(_)) = service.get_mut(key) {
            *v = Value::Sequence(vec![v.clone()]);
        }
    }
    if let Some(Value::Mapping(hosts)) = service.get("extra_hosts") {
        let list = hosts
            .iter()
            .map(|(host, ip)| Value::String(format!("{}:{}", scalar_text(host), scalar_text(ip))))
            .collect();
        service.insert("extra_hosts".into(), Value::Sequence(list));
    }
    if let Some(Value::Sequence(ports)) = service.get_mut("ports") {
        for port in ports.iter_mut() {
            if let Value::Mapping(long) = port
                && let Some(short) = short_port(long)
            {
                *port = Value::String(short);
            }
        }
    }
}

/// A long-syntax port as the short syntax says it (`[host_ip:]published:
/// target/protocol`), so that a list may mix both forms, as compose allows.
/// `mode` only matters to a Swarm's routing mesh, and `name` and
/// `app_protocol` are labels for tools. `None` without a `target`, left to
/// the typed model to refuse.
fn short_port(long: &Mapping) -> Option<String> {
    let target = scalar_text(long.get("target").filter(|t| !t.is_null())?);
    let field = |key: &str| long.get(key).filter(|v| !v.is_null()).map(scalar_text);
    let protocol = field("protocol").unwrap_or_else(|| "tcp".to_owned());
    let published = field("published").unwrap_or_default();
    Some(match field("host_ip").filter(|h| !h.is_empty()) {
        Some(ip) if ip.contains(':') => format!("[{ip}]:{published}:{target}/{protocol}"),
        Some(ip) => format!("{ip}:{published}:{target}/{protocol}"),
        None if published.is_empty() => format!("{target}/{protocol}"),
        None => format!("{published}:{target}/{protocol}"),
    })
}

/// `["A=1", "B"]` → `{A: "1", B: null}`; other values are left alone.
fn list_to_map(value: &mut Value, sep: char) {
    let Value::Sequence(items) = value else {
        return;
    };
    let mut m = Mapping::new();
    for item in items.iter() {
        let text = scalar_text(item);
        match text.split_once(sep) {
            Some((k, v)) => m.insert(k.into(), Value::String(v.to_owned())),
            None => m.insert(text.into(), Value::Null),
        };
    }
    *value = Value::Mapping(m);
}

pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Merge service definition `over` (a later file) into `base`.
pub fn merge_service(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        let name = key.as_str().unwrap_or_default().to_owned();
        match (base.get_mut(&key), value) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => deep_merge(b, o),
            (Some(Value::Sequence(b)), Value::Sequence(o)) => match name.as_str() {
                "command" | "entrypoint" => *b = o,
                "volumes" | "devices" => merge_by_target(b, o),
                _ => append_unique(b, o),
            },
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Top-level sections (`networks`, `volumes`) and nested mappings: key by
/// key, a later scalar or list replacing an earlier one.
pub fn deep_merge(base: &mut Mapping, over: Mapping) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => deep_merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn append_unique(base: &mut Vec<Value>, over: Vec<Value>) {
    for item in over {
        if !base.contains(&item) {
            base.push(item);
        }
    }
}

/// A later mount on the same container path replaces the earlier one.
fn merge_by_target(base: &mut Vec<Value>, over: Vec<Value>) {
    for item in over {
        let target = mount_target(&item);
        match base.iter().position(|b| mount_target(b) == target) {
            Some(i) => base[i] = item,
            None => base.push(item),
        }
    }
}

/// The container path of a `volumes`/`devices` entry, short or long form.
fn mount_target(v: &Value) -> String {
    match v {
        Value::Mapping(m) => m.get("target").map(scalar_text).unwrap_or_default(),
        other => {
            let text = scalar_text(other);
            let parts: Vec<&str> = text.split(':').collect();
            match parts.len() {
                1 => parts[0].to_owned(),
                _ => parts[1].to_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Mapping {
        let mut m: Mapping = serde_yaml::from_str(text).unwrap();
        normalize_service(&mut m);
        m
    }

    #[test]
    fn later_files_merge_by_each_keys_rule() {
        let mut base = yaml(
            "image: a\nenvironment: [A=1, B=2]\nports: ['80']\ncommand: [x, y]\n\
             volumes: ['./a:/data', 'cache:/cache']\nnetworks: [internal]\nbuild: ./api\n",
        );
        let over = yaml(
            "environment: {B: '3', C: '4'}\nports: ['80', '443']\ncommand: [z]\n\
             volumes: ['./b:/data']\nnetworks: {external: {aliases: [web]}}\n\
             build: {args: [V=2]}\nimage: b\n",
        );
        merge_service(&mut base, over);
        let want = yaml(
            "image: b\nenvironment: {A: '1', B: '3', C: '4'}\nports: ['80', '443']\ncommand: [z]\n\
             volumes: ['./b:/data', 'cache:/cache']\n\
             networks: {internal: null, external: {aliases: [web]}}\n\
             build: {context: ./api, args: {V: '2'}}\n",
        );
        assert_eq!(base, want);
    }

    #[test]
    fn short_forms_become_mappings() {
        let m = yaml("labels: [a=b, c]\ndepends_on: [db]\nenv_file: .env.api\n");
        assert_eq!(
            m,
            serde_yaml::from_str::<Mapping>(
                "labels: {a: b, c: null}\ndepends_on: {db: {condition: service_started}}\nenv_file: [.env.api]\n"
            )
            .unwrap()
        );
    }
}
