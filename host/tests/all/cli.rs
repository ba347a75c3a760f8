//! The `slipway` binary: exit codes, ordering, the lock, and clear errors for
//! bad input. These need no containers; plugin steps use the hostile fixture.

use crate::harness::{json, plugin, slipway, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A project directory with a minimal compose file and the given manifest
/// body (after a `[project]` table and a `hostile` plugin).
fn project(body: &str) -> tempfile::TempDir {
    crate::harness::project(&format!(
        "[plugins.hostile]\npath = \"{}\"\ntimeout_secs = 4\n\n{body}",
        plugin("hostile").display()
    ))
}

fn step(surface: &str, deps: &[&str], attempt: &str) -> String {
    let deps: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[surface.{surface}]\ndepends_on = [{}]\n[[surface.{surface}.step]]\nplugin = \"hostile\"\nconfig = {attempt}\n\n",
        deps.join(", ")
    )
}

const NOOP: &str = "{ attempt = \"noop\" }";

pub(crate) fn assert_exit(out: &std::process::Output, code: i32, needle: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn deploy_all_follows_depends_on_then_manifest_order() {
    let body = [
        step("miniapp", &[], NOOP),
        step("web", &["backend"], NOOP),
        step("website", &[], NOOP),
        step("backend", &[], NOOP),
    ]
    .concat();
    let dir = project(&body);
    let out = slipway(dir.path(), &["deploy", "--all", "--json"], &[]);
    assert_exit(&out, 0, "\"ok\": true");
    let order: Vec<String> = json(&out)["surfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["miniapp", "website", "backend", "web"]);

    let out = slipway(dir.path(), &["plan", "web", "backend"], &[]);
    assert_exit(&out, 0, "planned");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.find("backend").unwrap() < stderr.find("web ").unwrap(),
        "{stderr}"
    );
}

#[test]
fn cycles_are_refused_by_name() {
    let body = [
        step("a", &["c"], NOOP),
        step("b", &["a"], NOOP),
        step("c", &["b"], NOOP),
    ]
    .concat();
    let dir = project(&body);
    let out = slipway(dir.path(), &["deploy", "--all"], &[]);
    assert_exit(&out, 2, "a -> c -> b -> a");
}

#[test]
fn a_second_concurrent_deploy_hits_the_lock() {
    let body = [
        step("slow", &[], "{ attempt = \"spin\" }"),
        step("fast", &[], NOOP),
    ]
    .concat();
    let dir = project(&body);
    let first = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .current_dir(dir.path())
        .args(["deploy", "slow"])
        .env("SLIPWAY_CACHE_DIR", crate::harness::cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = dir.path().join(".slipway/deploy.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains("pid")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first deploy never took the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = slipway(dir.path(), &["deploy", "fast", "--lock-wait", "0"], &[]);
    assert_exit(&out, 3, "slipway deploy slow");
    assert!(text(&out).contains("--lock-wait"));

    // Waiting long enough gets the lock once the first deploy is done.
    let out = slipway(dir.path(), &["deploy", "fast", "--lock-wait", "60"], &[]);
    assert_exit(&out, 0, "ok");
    let first = first.wait_with_output().unwrap();
    assert_exit(&first, 1, "timed out after 4s");
}

#[test]
fn step_errors_name_surface_step_plugin_and_version() {
    let dir = project(&step(
        "backend",
        &[],
        "{ attempt = \"docker\", service = \"api\" }",
    ));
    let out = slipway(dir.path(), &["deploy", "backend"], &[]);
    assert_exit(
        &out,
        1,
        "surface backend, step 0 (plugin hostile 0.1.0 from plugins.hostile), apply: docker inspect of service `api` is not granted",
    );
}

#[test]
fn plugin_stderr_goes_to_the_agent_log() {
    let dir = project(&step(
        "s",
        &[],
        "{ attempt = \"stderr\", text = \"hello-from-the-sandbox\" }",
    ));
    let out = slipway(dir.path(), &["deploy", "s"], &[]);
    assert_exit(
        &out,
        0,
        "surface s step 0 plugin hostile 0.1.0: hello-from-the-sandbox",
    );
}

#[test]
fn plugin_inspect_shows_contract_and_needs() {
    let out = slipway(
        Path::new("."),
        &[
            "plugin",
            "inspect",
            plugin("nginx-reload").to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_exit(&out, 0, "nginx-reload");
    let doc = json(&out);
    assert_eq!(doc["world"], "deploy-step");
    assert_eq!(doc["wit_package"], "slipway:plugin@0.2.2");
    let imports = doc["imports"].to_string();
    assert!(
        imports.contains("slipway:plugin/docker@0.2.2") && imports.contains("wasi:cli/stderr"),
        "{imports}"
    );
    assert!(doc["needs"].to_string().contains("docker"), "{doc}");
    // The commands it declares, and the narrowed grant that allows exactly them.
    assert_eq!(
        doc["exec"][2],
        serde_json::json!(["nginx", "-s", "reload"]),
        "{doc}"
    );
    let grant = doc["exec_grant"].as_str().unwrap_or_default();
    assert!(
        grant.starts_with("{ service = \"<service>\", exec = [[\"nginx\", \"-t\"]")
            && grant.contains("[\"nginx\", \"-s\", \"reload\"]"),
        "{grant}"
    );
    let manifest: toml::Table = toml::from_str(&format!("g = {grant}")).expect("the grant is TOML");
    assert_eq!(
        manifest["g"]["exec"].as_array().map(Vec::len),
        doc["exec"].as_array().map(Vec::len)
    );
}

/// An exec grant names whole commands: a prefix of one the plugin declares
/// (the form grants once had) or a placeholder the host does not know is
/// refused when the manifest loads, before anything runs, with the
/// command to write.
#[test]
fn an_exec_grant_written_as_a_prefix_is_refused_up_front() {
    let with_exec = |exec: &str| {
        format!(
            "{}grants = {{ docker = [{{ service = \"api\", exec = {exec} }}] }}\n",
            step("backend", &[], NOOP)
        )
    };
    let dir = project(&with_exec(r#"[["nginx", "-t"], ["nginx", "-s"]]"#));
    let out = slipway(dir.path(), &["plan", "--all"], &[]);
    assert_exit(
        &out,
        2,
        r#"surface.backend.step[0].grants.docker[0].exec[1]: ["nginx", "-s"] allows that command alone"#,
    );
    assert_exit(&out, 2, r#"grant ["nginx", "-s", "reload"] instead"#);
    let dir = project(&with_exec(r#"[["nslookup", "{host}"]]"#));
    let out = slipway(dir.path(), &["plan", "--all"], &[]);
    assert_exit(&out, 2, "`{host}` is not a placeholder this host knows");
    // A command the plugin does not declare may be granted: the same
    // grants serve whichever strategy's .wasm the step loads, and the
    // plugin still runs only what it declares.
    let dir = project(&with_exec(
        r#"[["nslookup", "{service}"], ["ps", "-o", "pid,args"]]"#,
    ));
    assert_exit(&slipway(dir.path(), &["plan", "--all"], &[]), 0, "planned");
}

/// A FIFO in a granted directory fails the deploy within the plugin's
/// timeout, naming the file, and the next deploy gets the lock.
#[test]
fn a_fifo_in_a_granted_directory_fails_the_deploy_at_once_and_frees_the_lock() {
    let read = "{ attempt = \"read\", path = \"/site/pipe\" }";
    let dir = project(&format!(
        "{}grants = {{ fs = [{{ host = \"site\", guest = \"/site\", mode = \"rw\" }}] }}\n",
        step("backend", &[], read)
    ));
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mkfifoat(rustix::fs::CWD, site.join("pipe"), mode).unwrap();
    for run in 0..2 {
        let start = Instant::now();
        let out = slipway(dir.path(), &["deploy", "backend"], &[]);
        let took = start.elapsed();
        let named = format!(
            "refused to open `pipe` ({}): it is a FIFO",
            site.join("pipe").display()
        );
        assert_exit(&out, 1, &named);
        assert!(took < Duration::from_secs(5), "run {run} took {took:?}");
    }
}

/// A refusal means nothing was changed (exit 2) only when the plugin
/// wrote nothing: one that wrote its rw grant first fails (exit 1), and the
/// error says what it wrote.
#[test]
fn a_refusal_after_writing_a_grant_is_a_failure_that_says_what_was_written() {
    let with = |attempt: &str| {
        let dir = project(&format!(
            "{}grants = {{ fs = [{{ host = \"site\", guest = \"/site\", mode = \"rw\" }}] }}\n",
            step("backend", &[], attempt)
        ));
        std::fs::create_dir(dir.path().join("site")).unwrap();
        dir
    };
    let clean = with("{ attempt = \"refuse\" }");
    let out = slipway(clean.path(), &["deploy", "backend"], &[]);
    assert_exit(&out, 2, "refused: the hostile fixture refuses");
    let wrote = with("{ attempt = \"refuse\", write = \"/site/index.html\" }");
    let out = slipway(wrote.path(), &["deploy", "backend"], &[]);
    let file = wrote.path().join("site/index.html");
    let said = format!(
        "(the plugin refused after writing {}, so this counts as a failure)",
        file.canonicalize().unwrap().display()
    );
    assert_exit(&out, 1, &said);
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code() {
    let good = step("backend", &[], NOOP);
    let cases: Vec<(&str, String, Vec<&str>, i32, &str)> = vec![
        (
            "malformed",
            "[project\nname=".into(),
            vec!["plan", "--all"],
            2,
            "TOML parse error",
        ),
        (
            "unknown key",
            format!("{good}colour = \"blue\"\n"),
            vec!["plan", "--all"],
            2,
            "unknown field `colour`",
        ),
        (
            "unknown surface",
            good.clone(),
            vec!["deploy", "frontend"],
            2,
            "no surface named `frontend`",
        ),
        (
            "nothing selected",
            good.clone(),
            vec!["deploy"],
            2,
            "pass --all",
        ),
    ];
    for (what, body, args, code, needle) in cases {
        let dir = project("");
        if what == "malformed" {
            std::fs::write(dir.path().join("slipway.toml"), &body).unwrap();
        } else {
            let manifest =
                std::fs::read_to_string(dir.path().join("slipway.toml")).unwrap() + &body;
            std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
        }
        let out = slipway(dir.path(), &args, &[]);
        assert_exit(&out, code, needle);
    }

    let dir = project(&good);
    std::fs::remove_file(dir.path().join("docker-compose.yml")).unwrap();
    assert_exit(
        &slipway(dir.path(), &["plan", "--all"], &[]),
        2,
        "project.compose_file",
    );

    let dir = project(&good);
    assert_exit(
        &slipway(dir.path(), &["-f", "nope.toml", "plan", "--all"], &[]),
        2,
        "cannot read the manifest",
    );

    let dir = project(&good);
    std::fs::write(dir.path().join("fake.wasm"), "not wasm at all").unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("slipway.toml")).unwrap();
    let manifest = manifest.replace(&plugin("hostile").display().to_string(), "fake.wasm");
    std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
    assert_exit(
        &slipway(dir.path(), &["deploy", "backend"], &[]),
        2,
        "not a WebAssembly file",
    );

    // A verification that could only fail at the end is refused up front.
    let unset = format!(
        "{good}[surface.backend.verify]\nurl = \"http://127.0.0.1:${{SLIPWAY_TEST_UNSET_PORT}}/\"\n"
    );
    let dir = project(&unset);
    let out = slipway(dir.path(), &["deploy", "backend"], &[]);
    assert_exit(&out, 2, "SLIPWAY_TEST_UNSET_PORT is not set");

    let dir = project(&good);
    let out = slipway(
        dir.path(),
        &["deploy", "backend", "--json"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_exit(&out, 4, "no Docker engine answered");
    assert_eq!(json(&out)["exit_code"], 4);
}

/// A journal of `n` entries longer than a pipe holds, with text that is not
/// ASCII where people and CI put it.
fn write_journal(dir: &Path, n: usize) {
    let text = "déploiement-ü-日本語";
    let id = "日本語-déploiement-ü";
    let entry = serde_json::json!({"ts": "2026-12-01T00:00:00.000Z", "command": "deploy",
        "project": text, "ok": true, "duration_ms": 1200,
        "who": {"user": text, "ci": {"GITHUB_ACTOR": text}},
        "surfaces": [{"name": text, "outcome": "ok", "duration_ms": 1200,
            "services": [{"service": text, "image_before": format!("sha256:{id}"), "image_after": id}],
            "steps": [{"plugin": text, "plugin_name": text, "plugin_version": text, "sha256": id,
                "ok": true, "outputs": {"release": text}}]}]});
    let state = dir.join(".slipway");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("journal.jsonl"), format!("{entry}\n").repeat(n)).unwrap();
}

fn assert_no_panic(what: &str, out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "{what}: {}",
        text(out)
    );
}

/// `slipway … | head`: a reader that goes away early ends the output, with
/// the command's own exit code and no panic.
#[test]
fn a_reader_that_closes_early_is_no_panic() {
    let dir = project(&step("backend", &[], NOOP));
    write_journal(dir.path(), 2000);
    let hostile = plugin("hostile").display().to_string();
    let commands: [&[&str]; 7] = [
        &["log"],
        &["log", "--json", "-n", "1"],
        &["schema"],
        &["schema", "report"],
        &["plugin", "inspect", &hostile],
        &["plugin", "inspect", &hostile, "--json"],
        &["plan", "--all", "--json"],
    ];
    for args in commands {
        // A pipe whose read end is closed before slipway writes a byte:
        // every write fails with EPIPE, however fast slipway is.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = crate::harness::slipway_command(dir.path(), args, &[])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let what = args.join(" ");
        assert_no_panic(&what, &out);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
    }

    // `slipway log | head -1`: the reader takes a line, then closes while
    // slipway still has most of the journal to write.
    use std::io::BufRead as _;
    for args in [&["log"][..], &["log", "--json"]] {
        let mut child = crate::harness::slipway_command(dir.path(), args, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("déploiement-ü-日本語"), "{first}");
        let out = child.wait_with_output().unwrap();
        assert_no_panic(&args.join(" "), &out);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }

    // Output that cannot be written for another reason (a full disk) is
    // an error, not a panic.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = crate::harness::slipway_command(dir.path(), &["schema"], &[])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_no_panic("schema > /dev/full", &out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cannot write the output to stdout"),
        "{}",
        text(&out)
    );
}

/// A manifest value that would overflow a deadline is refused up front,
/// by its key, before anything runs.
#[test]
fn absurd_timeouts_are_refused_by_key() {
    let dir = project(&step("backend", &[], NOOP));
    let manifest = std::fs::read_to_string(dir.path().join("slipway.toml"))
        .unwrap()
        .replace("timeout_secs = 4", "timeout_secs = 18446744073709551615");
    std::fs::write(dir.path().join("slipway.toml"), manifest).unwrap();
    for command in ["plan", "deploy"] {
        let out = slipway(dir.path(), &[command, "--all"], &[]);
        assert_exit(
            &out,
            2,
            "`plugins.hostile.timeout_secs`: 18446744073709551615 is out of range (1..=86400)",
        );
    }
    let out = slipway(dir.path(), &["deploy", "--all", "--json"], &[]);
    assert_exit(&out, 2, "plugins.hostile.timeout_secs");
    assert_eq!(json(&out)["exit_code"], 2);
}
