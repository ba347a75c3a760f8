//! `slipway plugin new`: the crate it writes builds for wasm32-wasip2 from
//! crates.io alone (offline, from cargo's cache), passes its own tests, and
//! the plugin loads, pins and runs as a deploy step against a real endpoint.

use crate::harness::{json, sh, slipway, text};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The scaffolded crate's target directory, kept in cargo's (outside any
/// clone) so that a run recompiles only the crate and its vendored SDK.
fn scaffold_target() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-test")
}

/// Cargo in the scaffolded crate, in [`scaffold_target`].
fn cargo(dir: &Path, args: &[&str]) -> Output {
    let start = Instant::now();
    let out = Command::new(env!("CARGO"))
        .current_dir(dir)
        .args(args)
        .arg("--offline")
        .env("CARGO_TARGET_DIR", scaffold_target())
        .output()
        .expect("run cargo");
    eprintln!(
        "scaffold: cargo {} took {:?}",
        args.join(" "),
        start.elapsed()
    );
    assert!(out.status.success(), "cargo {args:?}:\n{}", text(&out));
    out
}

/// An HTTP endpoint on loopback answering 200 with `body`; counts requests.
fn serve(body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

/// A project whose only surface, `check`, has no services and one step: the
/// scaffolded plugin.
fn project(wasm: &Path, pin: &str, config: &str, grants: &str) -> tempfile::TempDir {
    crate::harness::project(&format!(
        "[plugins.demo]\npath = \"{}\"\nsha256 = \"{pin}\"\n\n\
         [surface.check]\n[[surface.check.step]]\nplugin = \"demo\"\nconfig = {config}\ngrants = {grants}\n",
        wasm.display()
    ))
}

fn assert_exit(out: &Output, code: i32, needle: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn a_new_plugin_builds_tests_inspects_pins_and_deploys() {
    let tmp = tempfile::tempdir().unwrap();
    let out = slipway(tmp.path(), &["plugin", "new", "demo-check"], &[]);
    assert_exit(&out, 0, "slipway plugin inspect");
    let krate = tmp.path().join("demo-check");
    assert!(krate.join("vendor/wit/slipway.wit").is_file());

    // The target directory is shared: never test an earlier run's plugin.
    let wasm = scaffold_target().join("wasm32-wasip2/release/demo_check.wasm");
    let _ = std::fs::remove_file(&wasm);
    let build = cargo(&krate, &["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(
        String::from_utf8_lossy(&build.stderr).contains("Compiling demo-check"),
        "{}",
        text(&build)
    );
    assert!(wasm.is_file(), "{} was not built", wasm.display());
    let tests = cargo(&krate, &["test"]);
    let tests = String::from_utf8_lossy(&tests.stdout);
    assert!(tests.contains("test result: ok. 3 passed"), "{tests}");

    let sha256 = sh(&format!("sha256sum {}", wasm.display()), tmp.path(), &[]);
    let sha256 = sha256.split_whitespace().next().unwrap().to_owned();
    let wasm_arg = wasm.to_str().unwrap();

    let out = slipway(tmp.path(), &["plugin", "inspect", wasm_arg, "--json"], &[]);
    assert_exit(&out, 0, "demo-check");
    let doc = json(&out);
    assert_eq!(doc["name"], "demo-check");
    assert_eq!(doc["world"], "deploy-step");
    assert_eq!(doc["wit_package"], "slipway:plugin@0.2.2");
    assert_eq!(doc["sha256"], sha256.as_str());
    assert_eq!(doc["grants"], serde_json::json!(["probe"]));
    assert_eq!(doc["replaces_services"], false);
    assert!(
        doc["needs"][0].as_str().unwrap().starts_with("probe:"),
        "{doc}"
    );
    assert!(
        doc["imports"]
            .to_string()
            .contains("slipway:plugin/probe@0.2.2"),
        "{doc}"
    );
    let out = slipway(tmp.path(), &["plugin", "inspect", wasm_arg], &[]);
    assert_exit(&out, 0, &format!("sha256 = \"{sha256}\""));

    let (port, hits) = serve("demo-ok v7");
    let url = format!("http://127.0.0.1:{port}/health");
    let grant = format!("{{ probe = [\"127.0.0.1:{port}\"] }}");

    let dir = project(
        &wasm,
        &sha256,
        &format!("{{ url = \"{url}\", expect = \"demo-ok\" }}"),
        &grant,
    );
    let out = slipway(dir.path(), &["plan", "check"], &[]);
    assert_exit(&out, 0, &format!("would wait for {url} to answer 200"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "plan must not probe");

    let out = slipway(dir.path(), &["deploy", "check", "--json"], &[]);
    assert_exit(&out, 0, "\"ok\": true");
    let step = &json(&out)["surfaces"][0]["steps"][0];
    assert_eq!(step["plugin_name"], "demo-check");
    assert_eq!(step["sha256"], sha256.as_str());
    assert_eq!(step["calls"][0]["phase"], "apply");
    assert_eq!(
        step["calls"][0]["message"],
        format!("{url} answered 200 (attempt 1)")
    );
    assert_eq!(step["calls"][1]["phase"], "verify");
    assert_eq!(step["calls"][1]["message"], format!("{url} answered 200"));
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // The body lacks the text: apply asks `attempts` times, then fails.
    let dir = project(
        &wasm,
        &sha256,
        &format!("{{ url = \"{url}\", expect = \"v8\", attempts = 2 }}"),
        &grant,
    );
    let out = slipway(dir.path(), &["deploy", "check"], &[]);
    assert_exit(
        &out,
        1,
        "surface check, step 0 (plugin demo-check 0.1.0 from plugins.demo), apply:",
    );
    assert_exit(
        &out,
        1,
        &format!("{url} answered 200 without `v8` in its body; gave up after 2 attempts"),
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // Without the grant the host refuses the probe and says what to add.
    let dir = project(
        &wasm,
        &sha256,
        &format!("{{ url = \"{url}\", attempts = 1 }}"),
        "{}",
    );
    let out = slipway(dir.path(), &["deploy", "check"], &[]);
    assert_exit(
        &out,
        1,
        &format!("add \"127.0.0.1:{port}\" to this step's grants.probe"),
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);

    // Another file under the same pin is refused before it runs.
    let dir = project(
        &wasm,
        &"0".repeat(64),
        &format!("{{ url = \"{url}\" }}"),
        &grant,
    );
    let out = slipway(dir.path(), &["deploy", "check"], &[]);
    assert_exit(&out, 2, "refusing to load it");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[test]
fn bad_names_and_occupied_directories_are_refused_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, needle) in [
        (
            "Demo",
            "is not a valid plugin crate name; use lowercase ASCII",
        ),
        ("9lives", "starting with a letter"),
        ("my plugin", "is not a valid plugin crate name"),
        ("../escape", "is not a valid plugin crate name"),
        ("fn", "is a Rust keyword"),
        ("slipway-sdk", "pick another name"),
    ] {
        let out = slipway(tmp.path(), &["plugin", "new", name], &[]);
        assert_exit(&out, 2, needle);
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused name created {left:?}");

    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    for args in [
        &["plugin", "new", "demo", "--dir", "taken"][..],
        &["plugin", "new", "taken"][..],
    ] {
        let out = slipway(tmp.path(), args, &[]);
        assert_exit(&out, 2, "taken already exists and is not empty");
        assert_exit(&out, 2, "pass --dir with a new or empty directory");
    }
    let files: Vec<_> = std::fs::read_dir(&taken).unwrap().collect();
    assert_eq!(files.len(), 1, "the occupied directory was changed");

    let out = slipway(
        tmp.path(),
        &["plugin", "new", "demo", "--dir", "taken/notes.txt"],
        &[],
    );
    assert_exit(&out, 2, "is a file");

    // An empty directory is fine.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let out = slipway(
        tmp.path(),
        &["plugin", "new", "demo", "--dir", "empty"],
        &[],
    );
    assert_exit(&out, 0, "created plugin demo");
    assert!(tmp.path().join("empty/src/lib.rs").is_file());
}
