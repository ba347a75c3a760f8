//! `include`: compose files that a file pulls in as projects of their own
//! (their relative paths from their own directory, interpolated from their
//! own `.env` or `env_file` and the shell), whose services, networks and
//! volumes join the model, as compose v2 includes them. A service that
//! both the including file and an included one define differently is
//! refused, as compose refuses it.

use super::{FileModel, Vars, merge, read_env_file, shell_vars};
use anyhow::Result;
use indexmap::IndexMap;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// How deep included files may include others; a loop stops here.
const MAX_DEPTH: usize = 16;

/// The files `file` includes, each followed by nothing it includes in
/// turn: included files first, deepest first, so that `file` comes after
/// all of them.
pub(super) fn read_all(file: &FileModel, swarm: bool, depth: usize) -> Result<Vec<FileModel>> {
    let Some(items) = file.root.get("include") else {
        return Ok(Vec::new());
    };
    let at = ["include".to_owned()];
    if depth >= MAX_DEPTH {
        let deep = format!("more than {MAX_DEPTH} files deep: do the files include each other?");
        return Err(file.error(&at, &deep));
    }
    let dir = file.path.parent().unwrap_or(Path::new("/"));
    let mut out = Vec::new();
    for item in items.as_sequence().map(Vec::as_slice).unwrap_or_default() {
        let (paths, env_files) = entry(item, dir).map_err(|e| file.error(&at, &e))?;
        let base = paths[0].parent().unwrap_or(Path::new("/")).to_owned();
        let vars = included_vars(&base, &env_files)?;
        for path in paths {
            let included = FileModel::read(&path, &vars, swarm, 0)?;
            out.extend(read_all(&included, swarm, depth + 1)?);
            refuse_conflicts(file, &included)?;
            out.push(included);
        }
    }
    Ok(out)
}

/// One `include` entry: a path, or `{path, env_file}` where `path` may be
/// a list; paths are relative to the including file's directory.
fn entry(item: &Value, dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), String> {
    let list = |v: &Value| -> Vec<PathBuf> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .map(|i| dir.join(merge::scalar_text(i)))
                .collect(),
            other => vec![dir.join(merge::scalar_text(other))],
        }
    };
    let Value::Mapping(long) = item else {
        return Ok((list(item), Vec::new()));
    };
    let paths = long.get("path").map(list).unwrap_or_default();
    if paths.is_empty() {
        return Err("an entry needs `path`: the compose file to include".into());
    }
    let env_files = long.get("env_file").map(list).unwrap_or_default();
    Ok((paths, env_files))
}

/// What an included project interpolates with: its `env_file`s, or the
/// `.env` of its directory, under the shell's variables.
fn included_vars(base: &Path, env_files: &[PathBuf]) -> Result<Vars> {
    let shell = shell_vars();
    let defaults = [base.join(".env")];
    let files = match env_files {
        [] => defaults.iter().filter(|p| p.is_file()).collect::<Vec<_>>(),
        given => given.iter().collect(),
    };
    let mut vars = IndexMap::new();
    for file in files {
        vars.extend(read_env_file(file, &shell)?);
    }
    vars.extend(shell.0);
    Ok(Vars(vars))
}

/// A service defined by both files, unless identically.
fn refuse_conflicts(file: &FileModel, included: &FileModel) -> Result<()> {
    let services = |f: &FileModel| f.root.get("services").and_then(Value::as_mapping).cloned();
    let (Some(own), Some(theirs)) = (services(file), services(included)) else {
        return Ok(());
    };
    for (name, def) in &theirs {
        if own.get(name).is_some_and(|o| o != def) {
            let name = merge::scalar_text(name);
            let conflict = format!(
                "also defined by the included {}; compose refuses the conflict: \
                 define it in one of them, or override it in a second `-f` file",
                included.path.display()
            );
            return Err(file.error(&["services".to_owned(), name], &conflict));
        }
    }
    Ok(())
}
