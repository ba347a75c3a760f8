//! Compose v2's `com.docker.compose.config-hash` of each service: the label
//! `docker compose up` compares to decide whether a container is up to
//! date, and without which `docker compose ps`, `logs`, `exec` and `down` do
//! not see a container at all.
//!
//! The hash is the SHA-256 of Go's `json.Marshal` of compose-go's
//! `ServiceConfig`, after `ServiceHash` (docker/compose
//! `pkg/compose/hash.go`) clears `build`, `pull_policy`, `scale`,
//! `deploy.replicas`, `depends_on` and `profiles`. slipway asks the installed
//! compose v2 for that model rather than re-deriving compose-go's
//! normalization: `docker compose config --format json` prints the same
//! struct, field for field and in the same order, indented and with every `$`
//! written `$$`. So the label is what the user's own compose computes,
//! whatever its version. Not `docker compose config --hash`: in 2.40.3 it
//! hashes the service before `env_file` is folded into `environment`, so for
//! any service with an `env_file` it differs from the label `up` writes
//! (docker/compose#14001).

use super::ComposeProject;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// What the installed compose v2 says of a project; empty without it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeV2 {
    /// `docker compose version --short`, e.g. `2.40.3`.
    pub version: String,
    /// Every service's config-hash, whatever its profiles.
    pub hashes: BTreeMap<String, String>,
}

/// The fields `ServiceHash` clears (all `omitempty`, so cleared is absent).
const CLEARED: [&str; 5] = ["build", "pull_policy", "scale", "depends_on", "profiles"];

impl ComposeV2 {
    /// Ask `docker compose` (the CLI plugin) about the project's files.
    pub fn read(project: &ComposeProject) -> Result<ComposeV2, String> {
        // Side by side: each is a start of the docker CLI and its plugin,
        // and every command of the agent waits for both.
        let (version, json) = std::thread::scope(|scope| {
            let version = scope.spawn(|| run(compose(), &["version", "--short"]));
            let json = config_json(project);
            let version = version
                .join()
                .unwrap_or_else(|_| Err("`docker compose version` panicked".into()));
            (version, json)
        });
        let version = version?.trim().to_owned();
        if !version.starts_with('2') {
            return Err(format!(
                "`docker compose version` says {version}, not a Compose v2 version"
            ));
        }
        Ok(ComposeV2 {
            version,
            hashes: hashes(&json?)?,
        })
    }
}

/// `docker compose config --format json` of the project's files.
fn config_json(project: &ComposeProject) -> Result<String, String> {
    let mut command = compose();
    command
        .arg("--project-name")
        .arg(&project.name)
        .arg("--project-directory")
        .arg(&project.dir);
    for file in &project.files {
        command.arg("--file").arg(file);
    }
    // Every profile: a service's hash does not depend on which are active.
    run(command, &["--profile", "*", "config", "--format", "json"])
}

fn compose() -> Command {
    let mut command = Command::new("docker");
    command.arg("compose").stdin(Stdio::null());
    command
}

fn run(mut command: Command, args: &[&str]) -> Result<String, String> {
    let shown = format!("docker compose … {}", args.join(" "));
    let output = command.args(args).output().map_err(|e| {
        format!("cannot run `{shown}` ({e}): install the docker CLI and its Compose v2 plugin")
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "`{shown}` failed ({}): {}; install the Compose v2 plugin (`docker compose version` \
             must print 2.x)",
            output.status,
            stderr.trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("`{shown}` printed non-UTF-8: {e}"))
}

#[derive(Deserialize)]
struct Model<'a> {
    #[serde(borrow)]
    services: IndexMap<String, IndexMap<String, &'a RawValue>>,
}

/// Each service's hash, from the output of `docker compose config --format json`.
pub fn hashes(json: &str) -> Result<BTreeMap<String, String>, String> {
    let model: Model =
        serde_json::from_str(json).map_err(|e| format!("cannot read compose's config: {e}"))?;
    model
        .services
        .iter()
        .map(|(name, fields)| {
            let marshalled = marshal(fields)
                .map_err(|e| format!("cannot read compose's config of {name}: {e}"))?;
            Ok((name.clone(), hex::encode(Sha256::digest(marshalled))))
        })
        .collect()
}

/// Go's `json.Marshal` of the service as `ServiceHash` leaves it: the
/// printed fields in their order, compact, `$$` back to `$`. compose prints
/// strings already escaped as Go escapes them (`\u003c`, `\u0026`, …).
fn marshal(fields: &IndexMap<String, &RawValue>) -> Result<String, serde_json::Error> {
    let mut parts = Vec::new();
    for (key, value) in fields {
        if CLEARED.contains(&key.as_str()) {
            continue;
        }
        let value = if key == "deploy" {
            let deploy: IndexMap<String, &RawValue> = serde_json::from_str(value.get())?;
            marshal(
                &deploy
                    .into_iter()
                    .filter(|(k, _)| k != "replicas")
                    .collect(),
            )?
        } else {
            compact(value.get())
        };
        parts.push(format!("{}:{value}", serde_json::to_string(key)?));
    }
    Ok(format!("{{{}}}", parts.join(",")).replace("$$", "$"))
}

/// JSON text without the whitespace between tokens.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docker compose -p hash2 --profile '*' config --format json` (2.40.3)
    /// of a project whose `app` has every field `ServiceHash` clears, an
    /// env_file, `$$`, characters Go escapes and non-ASCII text; the hashes
    /// are the labels `docker compose up -d` wrote on its containers.
    const CONFIG: &str = r#"{
  "name": "hash2",
  "networks": {
    "default": {
      "name": "hash2_default",
      "ipam": {}
    }
  },
  "services": {
    "app": {
      "profiles": [
        "web"
      ],
      "build": {
        "context": "/tmp/hash2/ctx",
        "dockerfile": "Dockerfile"
      },
      "command": [
        "sh",
        "-c",
        "echo $$HOME \u0026\u0026 sleep 1000"
      ],
      "depends_on": {
        "db": {
          "condition": "service_started",
          "required": true
        }
      },
      "deploy": {
        "replicas": 1,
        "resources": {
          "limits": {
            "memory": "67108864"
          }
        },
        "placement": {}
      },
      "entrypoint": null,
      "environment": {
        "A": "1",
        "GREETING": "héllo wörld"
      },
      "image": "slipway-test/busybox:latest",
      "labels": {
        "rule": "Host(`a`) \u0026\u0026 \u003cb\u003e"
      },
      "networks": {
        "default": null
      },
      "pull_policy": "never"
    },
    "db": {
      "profiles": [
        "web"
      ],
      "command": [
        "sleep",
        "1000"
      ],
      "entrypoint": null,
      "image": "slipway-test/busybox:latest",
      "networks": {
        "default": null
      }
    }
  }
}"#;

    #[test]
    fn the_hashes_are_the_labels_compose_up_writes() {
        let hashes = hashes(CONFIG).unwrap();
        assert_eq!(
            hashes["app"],
            "1c6b91a72475ece13edbfe759d50c52c18580c4dd54971a2d3562e51b51efcf6"
        );
        assert_eq!(
            hashes["db"],
            "d131e9f7550df7287475e058098a789305f1cea16d13286e04d8fe4e39d2c357"
        );
    }

    #[test]
    fn marshal_clears_what_service_hash_clears_and_keeps_the_order() {
        let model: Model = serde_json::from_str(CONFIG).unwrap();
        let app = marshal(&model.services["app"]).unwrap();
        assert!(
            app.starts_with(r#"{"command":["sh","-c","echo $HOME \u0026\u0026 sleep 1000"],"deploy":{"resources":{"limits":{"memory":"67108864"}},"placement":{}},"entrypoint":null,"#),
            "{app}"
        );
        for cleared in ["profiles", "build", "depends_on", "replicas", "pull_policy"] {
            assert!(!app.contains(&format!("\"{cleared}\"")), "{app}");
        }
    }

    #[test]
    fn compact_keeps_whitespace_inside_strings() {
        assert_eq!(
            compact("{ \"a b\" : [ 1 , \"c \\\" d\" ] }"),
            r#"{"a b":[1,"c \" d"]}"#
        );
    }

    #[test]
    fn a_config_that_is_not_compose_json_is_an_error_not_a_panic() {
        for bad in ["", "[]", "{\"services\": 3}", "{\"services\": {\"a\": []}}"] {
            assert!(hashes(bad).is_err(), "{bad}");
        }
    }
}
