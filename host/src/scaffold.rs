//! `slipway plugin new`: a plugin crate that builds with the slipway binary
//! alone. The SDK is not on crates.io, so the binary carries the SDK sources
//! and the WIT it was built with and writes them under `vendor/`; the new
//! crate needs nothing but crates.io.

use crate::bindings::WIT_VERSION;
use crate::deploy::AgentError;
use anyhow::{Context as _, Result, anyhow};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const WORKSPACE_MANIFEST: &str = include_str!("../../Cargo.toml");
const SDK_MANIFEST: &str = include_str!("../../sdk/Cargo.toml");
/// Every file of `sdk/src`; a unit test keeps the list complete.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("files.rs", include_str!("../../sdk/src/files.rs")),
    ("image.rs", include_str!("../../sdk/src/image.rs")),
    ("lib.rs", include_str!("../../sdk/src/lib.rs")),
    (
        "nginx/config.rs",
        include_str!("../../sdk/src/nginx/config.rs"),
    ),
    ("nginx/mod.rs", include_str!("../../sdk/src/nginx/mod.rs")),
    ("poll.rs", include_str!("../../sdk/src/poll.rs")),
    ("release.rs", include_str!("../../sdk/src/release.rs")),
];
const WIT: &str = include_str!("../../wit/slipway.wit");

/// The crate's own files, as (path, template).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/plugin/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/plugin/lib.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../templates/plugin/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../templates/plugin/gitignore.tmpl"),
    ),
];

/// Names that break the build: Rust keywords (the lib name must be an
/// identifier), the standard crates, and the crate's own dependencies.
const RESERVED: &str = "\
    abstract as async await become box break const continue crate do dyn else enum extern \
    false final fn for gen if impl in let loop macro match mod move mut override priv pub \
    ref return self static struct super trait true try type typeof unsafe unsized use \
    virtual where while yield alloc core proc_macro std test serde serde_json slipway_sdk \
    wit_bindgen";

/// Why nothing was created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The command has to change: bad name, occupied directory.
    #[error("{0}")]
    Refused(String),
    #[error("{0:#}")]
    Io(#[from] anyhow::Error),
}

/// What `create` wrote.
#[derive(Debug, serde::Serialize)]
pub struct Created {
    pub name: String,
    pub dir: PathBuf,
    pub files: Vec<String>,
    /// Where `cargo build --release --target wasm32-wasip2` puts the plugin,
    /// relative to `dir`.
    pub wasm: String,
    pub sdk_version: String,
}

/// `slipway plugin new NAME [--dir DIR]`.
pub fn command(name: &str, dir: Option<&Path>, json: bool) -> Result<ExitCode, AgentError> {
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_owned);
    let created = create(name, &dir).map_err(|e| match e {
        ScaffoldError::Refused(m) => AgentError::Usage(m),
        ScaffoldError::Io(e) => AgentError::Other(e),
    })?;
    if json {
        let doc = serde_json::to_string_pretty(&created).expect("serializes");
        crate::cli::out(&format!("{doc}\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let d = created.dir.display();
    crate::cli::out(&format!(
        "created plugin {} in {d}/ (slipway-sdk {} and slipway:plugin@{WIT_VERSION} vendored under vendor/)\n\
         next:\n  cd {d}\n  cargo test\n  cargo build --release --target wasm32-wasip2\n  slipway plugin inspect {}\n",
        created.name, created.sdk_version, created.wasm
    ));
    Ok(ExitCode::SUCCESS)
}

/// Write a new plugin crate named `name` into `dir`, which must not exist or
/// be empty.
pub fn create(name: &str, dir: &Path) -> Result<Created, ScaffoldError> {
    check_name(name).map_err(ScaffoldError::Refused)?;
    check_dir(dir)?;
    let crate_name = name.replace('-', "_");
    let sdk_manifest = standalone_sdk_manifest()?;
    let sdk_version = sdk_manifest["package"]["version"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let render = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{wit_version}}", WIT_VERSION)
    };
    let mut files: Vec<(String, String)> = TEMPLATES
        .iter()
        .map(|(path, template)| (path.to_string(), render(template)))
        .collect();
    let header = "# Written by `slipway plugin new` from slipway's own slipway-sdk; \
                  replace vendor/ with a newer slipway's rather than editing it.\n";
    let sdk_toml = toml::to_string(&sdk_manifest).context("cannot write the SDK manifest")?;
    files.push((
        "vendor/slipway-sdk/Cargo.toml".into(),
        format!("{header}{sdk_toml}"),
    ));
    for (file, text) in SDK_SOURCES {
        files.push((format!("vendor/slipway-sdk/src/{file}"), text.to_string()));
    }
    // The SDK generates its bindings from `../wit`, next to it.
    files.push(("vendor/wit/slipway.wit".into(), WIT.to_owned()));
    for (path, text) in &files {
        let path = dir.join(path);
        let parent = path.parent().expect("files live in a directory");
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| {
                format!(
                    "cannot write {}; fix the cause, remove {} and run the command again",
                    path.display(),
                    dir.display()
                )
            })?;
    }
    Ok(Created {
        name: name.to_owned(),
        dir: dir.to_owned(),
        files: files.into_iter().map(|(path, _)| path).collect(),
        wasm: format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
        sdk_version,
    })
}

/// Cargo's rules for a package whose lib is also a Rust identifier, kept
/// lowercase so the `.wasm` file and the manifest key read the same.
fn check_name(name: &str) -> Result<(), String> {
    let fix = "use lowercase ASCII letters, digits, `-` and `_`, starting with a letter, e.g. `health-check`";
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(format!(
            "`{name}` is not a valid plugin crate name; {fix} (at most 64 characters)"
        ));
    }
    let ident = name.replace('-', "_");
    if RESERVED.split_whitespace().any(|r| r == ident) {
        return Err(format!(
            "`{name}` is a Rust keyword or the name of a crate the plugin depends on; pick another name, e.g. `{name}-step`"
        ));
    }
    Ok(())
}

fn check_dir(dir: &Path) -> Result<(), ScaffoldError> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ScaffoldError::Refused(format!(
                    "{shown} already exists and is not empty; pick another name, pass --dir with a new or empty directory, or remove it"
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(ScaffoldError::Refused(
            format!("{shown} is a file; pass --dir with a new or empty directory"),
        )),
        Err(e) => Err(anyhow!("cannot read {shown}: {e}").into()),
    }
}

/// sdk/Cargo.toml inherits from the slipway workspace; outside it, every
/// `workspace = true` must become the workspace's value.
fn standalone_sdk_manifest() -> Result<toml::Table> {
    let workspace: toml::Table = WORKSPACE_MANIFEST.parse()?;
    let mut sdk: toml::Table = SDK_MANIFEST.parse()?;
    let ws = workspace
        .get("workspace")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| anyhow!("the embedded workspace manifest has no [workspace]"))?;
    let empty = toml::Table::new();
    let ws_package = ws
        .get("package")
        .and_then(|v| v.as_table())
        .unwrap_or(&empty);
    let ws_deps = ws
        .get("dependencies")
        .and_then(|v| v.as_table())
        .unwrap_or(&empty);
    if let Some(package) = sdk.get_mut("package").and_then(|v| v.as_table_mut()) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = ws_package
                    .get(key.as_str())
                    .cloned()
                    .ok_or_else(|| anyhow!("workspace.package.{key} is missing"))?;
            }
        }
        package.insert("publish".into(), false.into());
    }
    let mut dep_tables: Vec<&mut toml::Table> = Vec::new();
    let (targets, rest): (Vec<_>, Vec<_>) = sdk.iter_mut().partition(|(k, _)| *k == "target");
    for (key, value) in rest {
        if key.ends_with("dependencies")
            && let Some(t) = value.as_table_mut()
        {
            dep_tables.push(t);
        }
    }
    for (_, value) in targets {
        for (_, target) in value.as_table_mut().into_iter().flat_map(|t| t.iter_mut()) {
            for (key, deps) in target.as_table_mut().into_iter().flat_map(|t| t.iter_mut()) {
                if key.ends_with("dependencies")
                    && let Some(t) = deps.as_table_mut()
                {
                    dep_tables.push(t);
                }
            }
        }
    }
    for deps in dep_tables {
        for (name, dep) in deps.iter_mut() {
            if inherits(dep) {
                let base = ws_deps
                    .get(name.as_str())
                    .ok_or_else(|| anyhow!("workspace.dependencies.{name} is missing"))?;
                *dep = merge_dep(base, dep);
            }
        }
    }
    Ok(sdk)
}

fn inherits(value: &toml::Value) -> bool {
    value
        .as_table()
        .and_then(|t| t.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true)
}

/// A workspace dependency plus the member's own keys; features add up, as
/// cargo does it.
fn merge_dep(base: &toml::Value, member: &toml::Value) -> toml::Value {
    let mut out = match base {
        toml::Value::String(version) => {
            toml::Table::from_iter([("version".to_owned(), version.clone().into())])
        }
        other => other.as_table().cloned().unwrap_or_default(),
    };
    for (key, value) in member.as_table().into_iter().flatten() {
        match (key.as_str(), out.get_mut("features"), value) {
            ("workspace", _, _) => {}
            ("features", Some(toml::Value::Array(have)), toml::Value::Array(more)) => {
                have.extend(more.iter().cloned())
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // Paths in the workspace manifest mean nothing in the new crate.
    out.remove("path");
    toml::Value::Table(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["demo-check", "health_check", "a", "nginx2", "x-1-y"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Demo",
            "1st",
            "-x",
            "_x",
            "a b",
            "a/b",
            "../x",
            "ünï",
            "demo.check",
            &"a".repeat(65),
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("lowercase ASCII letters"), "{bad}: {e}");
        }
        for reserved in [
            "fn",
            "self",
            "test",
            "std",
            "serde",
            "slipway-sdk",
            "serde-json",
        ] {
            let e = check_name(reserved).unwrap_err();
            assert!(e.contains("pick another name"), "{reserved}: {e}");
        }
    }

    #[test]
    fn every_sdk_source_is_embedded() {
        fn files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let name = format!("{prefix}{}", e.file_name().to_string_lossy());
                match e.file_type().unwrap().is_dir() {
                    true => files(&e.path(), &format!("{name}/"), out),
                    false => out.push(name),
                }
            }
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/src");
        let mut on_disk = Vec::new();
        files(&dir, "", &mut on_disk);
        on_disk.sort();
        let embedded: Vec<&str> = SDK_SOURCES.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            on_disk, embedded,
            "SDK_SOURCES in host/src/scaffold.rs must list every file of sdk/src, sorted"
        );
    }

    #[test]
    fn the_vendored_sdk_manifest_stands_alone() {
        let sdk = standalone_sdk_manifest().unwrap();
        let text = toml::to_string(&sdk).unwrap();
        assert!(!text.contains("workspace"), "{text}");
        let workspace: toml::Table = WORKSPACE_MANIFEST.parse().unwrap();
        let ws = &workspace["workspace"];
        assert_eq!(sdk["package"]["name"].as_str(), Some("slipway-sdk"));
        assert_eq!(sdk["package"]["version"], ws["package"]["version"]);
        assert_eq!(sdk["package"]["edition"], ws["package"]["edition"]);
        // Exact pins (wit-bindgen) must survive: the bindings depend on them.
        assert_eq!(
            sdk["dependencies"]["wit-bindgen"]["version"],
            ws["dependencies"]["wit-bindgen"]
        );
        assert_eq!(
            sdk["dependencies"]["serde"]["features"],
            ws["dependencies"]["serde"]["features"]
        );
        assert!(
            sdk["target"]["cfg(target_os = \"wasi\")"]["dependencies"]
                .get("wasip2")
                .is_some()
        );
    }

    #[test]
    fn merged_features_add_up() {
        let base: toml::Value = toml::Value::Table(
            "version = \"1\"\nfeatures = [\"a\"]\npath = \"x\""
                .parse()
                .unwrap(),
        );
        let member: toml::Value = toml::Value::Table(
            "workspace = true\nfeatures = [\"b\"]\noptional = true"
                .parse()
                .unwrap(),
        );
        let merged = merge_dep(&base, &member);
        assert_eq!(merged["features"].as_array().unwrap().len(), 2);
        assert_eq!(merged["optional"].as_bool(), Some(true));
        assert!(merged.get("workspace").is_none() && merged.get("path").is_none());
    }

    #[test]
    fn creates_a_complete_crate_in_a_new_or_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo-check");
        let created = create("demo-check", &dir).unwrap();
        assert_eq!(created.wasm, "target/wasm32-wasip2/release/demo_check.wasm");
        // Only the templates have placeholders; vendored sources may say `{{`.
        for file in created.files.iter().filter(|f| !f.starts_with("vendor/")) {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file} has an unrendered placeholder");
        }
        let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(manifest["package"]["name"].as_str(), Some("demo-check"));
        assert_eq!(
            std::fs::read_to_string(dir.join("vendor/wit/slipway.wit")).unwrap(),
            WIT
        );
        assert!(dir.join("vendor/slipway-sdk/src/release.rs").is_file());

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(create("other", &empty).is_ok());
    }

    #[test]
    fn refuses_an_occupied_directory_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        match create("demo", tmp.path()) {
            Err(ScaffoldError::Refused(m)) => assert!(m.contains("not empty"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let entries: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);

        let file = tmp.path().join("keep.txt");
        match create("demo", &file) {
            Err(ScaffoldError::Refused(m)) => assert!(m.contains("is a file"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
