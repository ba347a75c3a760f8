//! `extends`: a service built on another one, in the same file
//! (`extends: web` or `{service: web}`) or in another (`{file: common.yml,
//! service: web}`), resolved file by file before the `-f` files merge, as
//! compose v2 resolves it: the base's keys, then the service's own merged
//! over them by the rules that merge `-f` files. A base in another file is
//! read as that file (its relative paths from its own directory), and may
//! itself extend.

use super::{FileModel, Vars, merge};
use anyhow::Result;
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// How many files deep a chain of `extends: {file: …}` may go; a loop
/// between files stops here.
const MAX_DEPTH: usize = 16;

/// Resolve every `extends` among the file's services.
pub(super) fn resolve(file: &mut FileModel, vars: &Vars, swarm: bool, depth: usize) -> Result<()> {
    let names: Vec<String> = match file.root.get("services") {
        Some(Value::Mapping(services)) => services.keys().map(merge::scalar_text).collect(),
        _ => return Ok(()),
    };
    for name in names {
        resolve_service(file, &name, vars, swarm, depth, &mut Vec::new())?;
    }
    Ok(())
}

fn resolve_service(
    file: &mut FileModel,
    name: &str,
    vars: &Vars,
    swarm: bool,
    depth: usize,
    chain: &mut Vec<String>,
) -> Result<()> {
    let Some(own) = service(file, name).cloned() else {
        return Ok(());
    };
    let Some(extends) = own.get("extends") else {
        return Ok(());
    };
    let at = ["services".to_owned(), name.to_owned(), "extends".to_owned()];
    let (other_file, base_name) = target(extends).map_err(|e| file.error(&at, &e))?;
    if chain.iter().any(|c| c == name) {
        chain.push(name.to_owned());
        let cycle = format!("extends itself: {}", chain.join(" → "));
        return Err(file.error(&at, &cycle));
    }
    let base = match other_file {
        None => {
            chain.push(name.to_owned());
            resolve_service(file, &base_name, vars, swarm, depth, chain)?;
            chain.pop();
            service(file, &base_name).cloned()
        }
        Some(path) if depth < MAX_DEPTH => {
            let dir = file.path.parent().unwrap_or(Path::new("/"));
            let other = FileModel::read(&dir.join(&path), vars, swarm, depth + 1)?;
            service(&other, &base_name).cloned()
        }
        Some(_) => {
            let deep = format!("more than {MAX_DEPTH} files deep: do the files extend each other?");
            return Err(file.error(&at, &deep));
        }
    };
    let Some(mut merged) = base else {
        let missing = format!("no service `{base_name}` to extend");
        return Err(file.error(&at, &missing));
    };
    let mut own = own;
    own.remove("extends");
    merge::merge_service(&mut merged, own);
    if let Some(Value::Mapping(services)) = file.root.get_mut("services") {
        services.insert(Value::String(name.to_owned()), Value::Mapping(merged));
    }
    Ok(())
}

fn service<'a>(file: &'a FileModel, name: &str) -> Option<&'a Mapping> {
    file.root.get("services")?.get(name)?.as_mapping()
}

/// `extends: web`, or `{service: web, file: other.yml}`.
fn target(extends: &Value) -> Result<(Option<String>, String), String> {
    match extends {
        Value::String(service) => Ok((None, service.clone())),
        Value::Mapping(m) => {
            let service = m
                .get("service")
                .and_then(Value::as_str)
                .ok_or("needs `service`: the name of the service to extend")?;
            let file = m
                .get("file")
                .filter(|f| !f.is_null())
                .map(merge::scalar_text);
            Ok((file, service.to_owned()))
        }
        _ => Err("is a service name or `{service, file}`".into()),
    }
}
