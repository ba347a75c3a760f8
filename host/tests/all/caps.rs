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

/// A compose project whose service `box` runs (busybox, `sleep`), under a
/// manifest whose surface `s` runs the hostile fixture with `attempt` and
/// `box` granted; the project is removed when dropped.
struct BoxProject {
    dir: tempfile::TempDir,
}

impl BoxProject {
    fn up(attempt: &str) -> BoxProject {
        BoxProject::up_with(attempt, 60)
    }

    /// [`BoxProject::up`], the plugin stopped after `timeout_secs`.
    fn up_with(attempt: &str, timeout_secs: u32) -> BoxProject {
        let dir = crate::harness::project_with(
            "services:\n  box:\n    image: slipway-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n    init: true\n",
            &format!(
                "[plugins.hostile]\npath = \"{}\"\ntimeout_secs = {timeout_secs}\n\n\
                 [surface.s]\n[[surface.s.step]]\nplugin = \"hostile\"\nconfig = {attempt}\ngrants = {{ docker = [\"box\"] }}\n",
                plugin("hostile").display()
            ),
        );
        let project = BoxProject { dir };
        project.compose("up -d");
        project
    }

    fn name(&self) -> String {
        let manifest = std::fs::read_to_string(self.dir.path().join("slipway.toml")).unwrap();
        let line = manifest.lines().find(|l| l.starts_with("name = ")).unwrap();
        line.trim_start_matches("name = ")
            .trim_matches('"')
            .to_owned()
    }

    fn compose(&self, args: &str) -> String {
        let cmd = format!("docker compose -p {} {args} 2>&1", self.name());
        crate::harness::sh(&cmd, self.dir.path(), &[])
    }

    /// The IDs of `box`'s containers, running or not.
    fn containers(&self) -> Vec<String> {
        self.compose("ps -aq box")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for BoxProject {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["compose", "-p", &self.name(), "down", "-t", "0"])
            .current_dir(self.dir.path())
            .output();
    }
}

/// 1 GiB on an exec's stdout: the plugin gets the first 4 MiB and a line
/// saying how much was dropped, and the agent holds no more memory than
/// with a quiet plugin.
#[test]
fn an_exec_of_a_gibibyte_of_output_is_capped_and_costs_the_agent_no_memory() {
    let quiet = BoxProject::up("{ attempt = \"noop\" }");
    deploy_measured(quiet.dir.path());
    let (_, quiet_rss) = deploy_measured(quiet.dir.path());
    let flood = BoxProject::up(
        "{ attempt = \"exec\", service = \"box\", command = [\"head\", \"-c\", \"1073741824\", \"/dev/zero\"] }",
    );
    let (out, rss) = deploy_measured(flood.dir.path());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let extra = rss as i64 - quiet_rss as i64;
    eprintln!(
        "1 GiB of exec output: agent peak RSS {} MiB, quiet {} MiB, +{} KiB",
        rss >> 20,
        quiet_rss >> 20,
        extra >> 10
    );
    assert!(extra < 16 << 20, "peak RSS grew by {extra} bytes");
    let kept: u64 = 4 << 20;
    let note = format!(
        "\n[slipway: {} more bytes dropped past the 4 MiB cap]",
        (1u64 << 30) - kept
    );
    let said = format!(
        "exec exited 0: {} bytes of stdout, ending {:?}",
        kept + note.len() as u64,
        note
    );
    assert!(all.contains(&said), "expected `{said}` in:\n{all}");
}

/// An exec still running when its plugin's time is up is killed in the
/// container, not left to run on.
#[test]
fn an_exec_that_outlives_its_plugins_timeout_is_killed() {
    let project = BoxProject::up_with(
        "{ attempt = \"exec\", service = \"box\", command = [\"sleep\", \"600\"] }",
        2,
    );
    let out = crate::harness::slipway(project.dir.path(), &["deploy", "s"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("timed out after 2s")
            && all.contains("which ran on past its plugin's timeout"),
        "{all}"
    );
    let top = project.compose("top box");
    assert!(
        top.contains("sleep 3600") && !top.contains("sleep 600"),
        "{top}"
    );
}

/// A step starts one replacement of a service at a time: a second before
/// the first is retired into or discarded is refused, and the service never
/// runs more than twice.
#[test]
fn a_second_replacement_before_the_first_is_retired_is_refused() {
    let project =
        BoxProject::up("{ attempt = \"start-replacements\", service = \"box\", count = 5 }");
    assert_eq!(project.containers().len(), 1);
    let out = crate::harness::slipway(project.dir.path(), &["deploy", "s"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("started 1 of 5 replacements, then: docker start-replacement of service `box` is refused: this step's replacement"),
        "{all}"
    );
    assert_eq!(project.containers().len(), 2, "{all}");
}

/// A signal is a Linux signal: an empty one (which the engine would send as
/// SIGKILL) is refused and the container runs on.
#[test]
fn an_empty_signal_is_refused_and_the_service_runs_on() {
    let project = BoxProject::up("{ attempt = \"signal\", service = \"box\", signal = \"\" }");
    let out = crate::harness::slipway(project.dir.path(), &["deploy", "s"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("`` is not a signal; name one"), "{all}");
    let running = project.compose("ps -q --status running box");
    assert_eq!(running.lines().count(), 1, "{all}");
}

/// A step cannot shadow an output the host hands the later steps: its
/// `replace` stays in its own report, and the next step reads the host's
/// (here none).
#[test]
fn a_step_output_with_a_key_of_the_hosts_is_not_passed_on() {
    let step =
        |attempt: &str| format!("[[surface.s.step]]\nplugin = \"hostile\"\nconfig = {attempt}\n");
    let dir = crate::harness::project(&format!(
        "[plugins.hostile]\npath = \"{}\"\n\n[surface.s]\n{}{}{}",
        plugin("hostile").display(),
        step("{ attempt = \"outputs\", keys = [\"mine\", \"replace\", \"previous\"] }"),
        step("{ attempt = \"read-output\", key = \"replace\" }"),
        step("{ attempt = \"read-output\", key = \"mine\" }"),
    ));
    let out = crate::harness::slipway(dir.path(), &["--json", "deploy", "s"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let report = crate::harness::json(&out);
    let steps = &report["surfaces"][0]["steps"];
    assert_eq!(steps[0]["outputs"]["replace"], "hostile", "{all}");
    // A surface without services: the host hands no `replace` at all.
    let read = |step: usize| {
        steps[step]["calls"][0]["message"]
            .as_str()
            .unwrap_or_default()
    };
    assert_eq!(read(1), "output replace = None", "{all}");
    assert_eq!(read(2), "output mine = Some(\"hostile\")", "{all}");
    assert!(
        all.contains("its outputs replace, previous are not passed to the later steps"),
        "{all}"
    );
}
