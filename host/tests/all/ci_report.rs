//! What CI gets: the `--json` report validated against the checked-in
//! schema for real runs (success, failure, plan, early exits), progress
//! lines without a terminal, colour rules on a terminal, and the workflow
//! in docs/ci.md. One stack serves every run, since bringing one up is the
//! slow part.

use crate::harness::{Stack, repo_root, text};
use serde_json::Value;
use std::process::{Command, Output, Stdio};

fn schema() -> Value {
    let path = repo_root().join("schema/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("schema/report.schema.json compiles")
}

/// The run's stdout, parsed and checked against the schema.
pub fn valid_report(out: &Output) -> Value {
    let doc = crate::harness::json(out);
    let errors: Vec<String> = validator()
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report breaks schema/report.schema.json:\n{}\n{}",
        errors.join("\n"),
        text(out)
    );
    assert_eq!(
        doc["schema_version"],
        slipway::report::SCHEMA_VERSION,
        "{doc}"
    );
    assert_eq!(
        Some(doc["exit_code"].as_i64().unwrap() as i32),
        out.status.code(),
        "{doc}"
    );
    doc
}

/// slipway in the stack's directory, with only the environment given here
/// deciding colour and CI mode.
fn slipway_raw(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.current_dir(stack.path())
        .args(args)
        .env("SLIPWAY_CACHE_DIR", crate::harness::cache_dir())
        .env_remove("NO_COLOR")
        .env_remove("CI")
        .envs(ports(stack))
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd.output().expect("run slipway")
}

fn ports(stack: &Stack) -> [(&'static str, String); 3] {
    [
        ("HONEYCHAT_HTTP_PORT", stack.port.to_string()),
        ("HONEYCHAT_SITE_PORT", stack.site_port.to_string()),
        ("HONEYCHAT_APP_PORT", stack.app_port.to_string()),
    ]
}

/// `YYYY-MM-DDTHH:MM:SSZ <label> … done in N.N s`
fn is_progress_line(line: &str, label: &str) -> bool {
    let Some((ts, rest)) = line.split_once(' ') else {
        return false;
    };
    let ts_ok = ts.len() == 20
        && ts.ends_with('Z')
        && ts.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => true,
            _ => c.is_ascii_digit(),
        });
    let Some(secs) = rest
        .strip_prefix(&format!("{label} … done in "))
        .and_then(|r| r.strip_suffix(" s"))
    else {
        return false;
    };
    ts_ok && secs.parse::<f64>().is_ok()
}

/// Any SGR (colour/style) escape: ESC [ digits/semicolons m.
fn has_sgr(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w == b"\x1b["
            && bytes[i + 2..]
                .iter()
                .find(|b| !(b.is_ascii_digit() || **b == b';'))
                .is_some_and(|b| *b == b'm')
    })
}

#[test]
fn real_runs_print_reports_that_match_the_schema() {
    let stack = Stack::up();

    // A plan of every surface, touching nothing.
    let out = slipway_raw(
        &stack,
        &["plan", "backend", "website", "miniapp", "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = valid_report(&out);
    assert_eq!(plan["command"], "plan");
    assert_eq!(plan["project"], stack.project.as_str());
    let outcomes: Vec<&str> = plan["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["planned"; 3], "{plan}");
    assert_eq!(plan["surfaces"][0]["steps"][0]["calls"][0]["phase"], "plan");

    // A successful deploy, as CI runs it: no terminal, CI=true, colour not
    // refused explicitly. Progress is plain, timestamped, on stderr only.
    stack.set_version("api", "v2");
    let out = slipway_raw(
        &stack,
        &["deploy", "backend", "--json"],
        &[("APP_VERSION", "v2"), ("CI", "true")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deploy = valid_report(&out);
    assert_eq!(deploy["ok"], true);
    let backend = &deploy["surfaces"][0];
    assert_eq!(backend["outcome"], "ok", "{deploy}");
    assert_eq!(backend["verify"]["ok"], true, "{deploy}");
    assert_eq!(backend["steps"][0]["plugin_name"], "nginx-reload");
    let api = backend["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "api")
        .unwrap();
    assert_eq!(api["image_running"], api["image_built"], "{api}");
    assert!(api["build_ms"].as_u64().unwrap() > 0, "{api}");

    let stderr = String::from_utf8_lossy(&out.stderr);
    for label in [
        "build api",
        "backend: replace api",
        "backend: wait until api is ready",
        "backend: step 0 nginx-reload apply",
        "backend: step 0 nginx-reload verify",
    ] {
        assert!(
            stderr.lines().any(|l| is_progress_line(l, label)),
            "no timestamped `{label} … done` line in:\n{stderr}"
        );
    }
    assert!(
        !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
        "escape bytes without a terminal:\n{}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(" … "),
        "progress leaked to stdout"
    );

    // A failed deploy: the front door does not show the expected version.
    let out = slipway_raw(
        &stack,
        &["deploy", "backend", "--json"],
        &[("APP_VERSION", "v-not-built"), ("NO_COLOR", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let failed = valid_report(&out);
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["surfaces"][0]["outcome"], "failed");
    assert_eq!(failed["surfaces"][0]["verify"]["ok"], false, "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("verification of"),
        "{failed}"
    );

    // Runs that stop before any surface runs still print a full report.
    let early = |args: &[&str], env: &[(&str, &str)], code: i32, needle: &str| {
        let out = slipway_raw(&stack, args, env);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        let doc = valid_report(&out);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["surfaces"], serde_json::json!([]));
        assert!(
            doc["error"].as_str().unwrap().contains(needle),
            "{needle}: {doc}"
        );
        doc
    };
    let doc = early(
        &["deploy", "frontend", "--json"],
        &[("APP_VERSION", "v2")],
        2,
        "no surface named `frontend`",
    );
    assert_eq!(doc["project"], stack.project.as_str());
    early(
        &["-f", "missing.toml", "plan", "--all", "--json"],
        &[],
        2,
        "cannot read the manifest",
    );
    early(
        &["deploy", "backend", "--json"],
        &[
            ("APP_VERSION", "v2"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
        4,
        "no Docker engine answered",
    );
    let lock_path = stack.path().join(".slipway/deploy.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();
    let doc = early(
        &["rollback", "backend", "--json"],
        &[],
        3,
        "holds the deploy lock",
    );
    assert_eq!(doc["command"], "rollback");
    drop(held);

    // The schema is strict enough to fail: these must be rejected.
    let v = validator();
    let mut broken = deploy.clone();
    broken.as_object_mut().unwrap().remove("ok");
    assert!(!v.is_valid(&broken), "a report without `ok` passed");
    let mut broken = deploy.clone();
    broken["surfaces"][0]["outcome"] = "deployed".into();
    assert!(!v.is_valid(&broken), "an unknown outcome passed");
    let mut broken = deploy.clone();
    broken["schema_version"] = (slipway::report::SCHEMA_VERSION + 1).into();
    assert!(!v.is_valid(&broken), "a future schema_version passed");
    let mut broken = deploy.clone();
    broken["surfaces"][0]["steps"][0]["calls"][0]
        .as_object_mut()
        .unwrap()
        .remove("duration_ms");
    assert!(!v.is_valid(&broken), "a call without its timing passed");

    colour_follows_no_color_on_a_terminal(&stack);
}

/// slipway under a pseudo-terminal (util-linux `script`); the terminal's
/// output, stdout and stderr together.
fn on_a_terminal(stack: &Stack, args: &str, no_color: bool) -> Output {
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_slipway")))
        .arg("/dev/null")
        .current_dir(stack.path())
        .env("SLIPWAY_CACHE_DIR", crate::harness::cache_dir())
        .env("TERM", "xterm")
        .env_remove("CI")
        .env_remove("NO_COLOR")
        .envs(ports(stack))
        .stdin(Stdio::null());
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    cmd.output().expect("run script")
}

/// On a terminal a run is coloured unless NO_COLOR is set.
fn colour_follows_no_color_on_a_terminal(stack: &Stack) {
    let out = on_a_terminal(stack, "plan backend", true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("backend: step 0 nginx-reload plan … "),
        "{screen}"
    );
    // A spinner was drawn and cleared: colour is off, the terminal is not.
    assert!(
        screen.contains("\x1b[2K"),
        "no spinner on a terminal: {screen:?}"
    );
    assert!(!has_sgr(&out.stdout), "colour despite NO_COLOR: {screen:?}");

    // Without NO_COLOR the same run is coloured, so the check above can fail.
    let out = on_a_terminal(stack, "plan backend", false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        has_sgr(&out.stdout),
        "no colour on a terminal: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_report_fields_are_all_documented() {
    let doc = std::fs::read_to_string(repo_root().join("docs/ci.md")).unwrap();
    let schema = schema();
    let mut objects = vec![&schema];
    objects.extend(schema["$defs"].as_object().unwrap().values());
    // Enums (the service's `action`) have no properties of their own.
    for object in objects
        .into_iter()
        .filter(|o| o.get("properties").is_some())
    {
        for field in object["properties"].as_object().unwrap().keys() {
            assert!(
                doc.contains(&format!("| `{field}` |")),
                "docs/ci.md has no table row for the report field `{field}`"
            );
        }
    }
    assert!(doc.contains("slipway schema report"));
    assert!(doc.contains("schema/report.schema.json"));
}

/// The ```yaml block of docs/ci.md.
fn workflow() -> serde_yaml::Value {
    let doc = std::fs::read_to_string(repo_root().join("docs/ci.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 1, "docs/ci.md must have one ```yaml block");
    serde_yaml::from_str(blocks[0]).expect("the workflow in docs/ci.md parses")
}

#[test]
fn the_documented_workflow_is_well_formed_and_calls_real_commands() {
    let wf = workflow();
    assert!(wf.get("on").is_some(), "no `on:` trigger");
    let jobs = wf["jobs"].as_mapping().expect("jobs");
    assert_eq!(jobs.len(), 1);
    let job = jobs.values().next().unwrap();
    let runs_on = serde_yaml::to_string(&job["runs-on"]).unwrap();
    assert!(runs_on.contains("self-hosted"), "runs-on: {runs_on}");
    let steps = job["steps"].as_sequence().expect("steps");
    assert!(
        steps.iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout@"))),
        "no checkout step"
    );
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("an upload-artifact step");
    assert_eq!(upload["with"]["path"].as_str(), Some("report.json"));
    assert!(
        upload["if"]
            .as_str()
            .is_some_and(|c| c.contains("always()")),
        "the report must be uploaded on failure too"
    );

    // Every slipway invocation must parse with the real CLI.
    let mut used = Vec::new();
    for step in steps {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        for line in script.lines() {
            let Some(rest) = line.trim().strip_prefix("slipway ") else {
                continue;
            };
            let args: Vec<&str> = rest
                .split_whitespace()
                .take_while(|t| !matches!(*t, ">" | "|" | "&&" | "||" | ";") && !t.starts_with('>'))
                .collect();
            let mut check = args.clone();
            check.push("--help");
            let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
                .args(&check)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "docs/ci.md: `slipway {}` is not a valid command line:\n{}",
                args.join(" "),
                text(&out)
            );
            used.push((args[0].to_owned(), line.trim().to_owned(), step.clone()));
        }
    }
    for sub in ["plan", "deploy", "rollback"] {
        assert!(
            used.iter().any(|(s, _, _)| s == sub),
            "the workflow never runs `slipway {sub}`"
        );
    }
    let (_, deploy, _) = used.iter().find(|(s, _, _)| s == "deploy").unwrap();
    for needle in ["backend website miniapp", "--json", "> report.json"] {
        assert!(
            deploy.contains(needle),
            "deploy line lacks `{needle}`: {deploy}"
        );
    }
    let (_, _, rollback) = used.iter().find(|(s, _, _)| s == "rollback").unwrap();
    assert!(
        rollback["if"]
            .as_str()
            .is_some_and(|c| c.contains("failure()")),
        "the rollback must run only on failure"
    );
}
