//! What a plugin can make the agent hold: log lines stream out under a cap
//! per call, and state values and reports over their caps are errors, never
//! silent loss. Agent memory is measured with `/usr/bin/time -v`.

use crate::harness::{cache_dir, plugin, text};
use std::path::Path;
use std::process::{Command, Output};

/// A project whose one surface `s` runs the hostile fixture with `attempt`.
fn project(attempt: &str) -> tempfile::TempDir {
    crate::harness::project(&format!(
        "[plugins.hostile]\npath = \"{}\"\ntimeout_secs = 60\n\n\
         [surface.s]\n[[surface.s.step]]\nplugin = \"hostile\"\nconfig = {attempt}\n",
        plugin("hostile").display()
    ))
}

/// `slipway deploy s` under `/usr/bin/time -v`: its output and peak RSS.
fn deploy_measured(dir: &Path) -> (Output, u64) {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .args(["deploy", "s"])
        .current_dir(dir)
        .env("SLIPWAY_CACHE_DIR", cache_dir())
        .env("NO_COLOR", "1")
        .output()
        .expect("run /usr/bin/time (Debian package `time`)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kb = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no RSS figure from /usr/bin/time:\n{stderr}"));
    (out, kb << 10)
}

#[test]
fn a_plugin_writing_50_mb_of_log_costs_the_agent_no_memory_and_the_log_says_so() {
    let quiet = project("{ attempt = \"noop\" }");
    // The first run compiles the plugin into the cache; measure warm runs.
    deploy_measured(quiet.path());
    let (_, quiet_rss) = deploy_measured(quiet.path());
    for via in ["stderr", "the log import"] {
        let attempt = format!(
            "{{ attempt = \"flood\", mb = 50, via_log = {} }}",
            via != "stderr"
        );
        let (out, rss) = deploy_measured(project(&attempt).path());
        let all = text(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            &all[all.len().saturating_sub(2000)..]
        );
        let extra = rss as i64 - quiet_rss as i64;
        eprintln!(
            "50 MiB through {via}: agent peak RSS {} MiB, quiet {} MiB, +{} KiB",
            rss >> 20,
            quiet_rss >> 20,
            extra >> 10
        );
        assert!(
            extra < 16 << 20,
            "{via}: peak RSS grew by {extra} bytes over a quiet plugin's"
        );
        let truncations = all.matches("log truncated").count();
        assert_eq!(truncations, 1, "one truncation line, for {via}");
        assert!(
            all.contains("more bytes of log were dropped past the cap of 1024 KiB per call"),
            "{via}"
        );
        assert!(
            out.stderr.len() < 4 << 20,
            "{via}: the agent wrote {} bytes of log",
            out.stderr.len()
        );
        let streamed = all.matches("plugin hostile 0.1.0: xxxx").count();
        assert!(
            (900..=1100).contains(&streamed),
            "{via}: about 1 MiB of 1 KiB lines logged, got {streamed}"
        );
    }
}

#[test]
fn a_state_value_over_the_cap_is_an_error_the_plugin_sees() {
    let value = "v".repeat(64 * 1024 + 1);
    let dir = project(&format!(
        "{{ attempt = \"state-round-trip\", key = \"big\", value = \"{value}\" }}"
    ));
    let out = crate::harness::slipway(dir.path(), &["deploy", "s"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("state.set refused: state.set of `big` stored nothing: a value of 65537 bytes is over the 64 KiB cap per value"),
        "{all}"
    );
    let saved = std::fs::read_to_string(dir.path().join(".slipway/plugins/hostile.json"))
        .unwrap_or_default();
    assert!(!saved.contains("vvvv"), "nothing stored: {saved}");
}

#[test]
fn a_report_over_the_cap_fails_the_call() {
    let out = crate::harness::slipway(
        project("{ attempt = \"big-report\", kb = 1100 }").path(),
        &["deploy", "s"],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("(plugin hostile 0.1.0 from plugins.hostile), apply: returned a report of")
            && all.contains("over the cap of 1024 KiB per call"),
        "{all}"
    );
    let under = crate::harness::slipway(
        project("{ attempt = \"big-report\", kb = 900 }").path(),
        &["deploy", "s"],
        &[],
    );
    assert_eq!(under.status.code(), Some(0), "{}", text(&under));
}
