//! nginx in a compose service, reached through the `docker.exec` import:
//! test, dump and reload its configuration, and wait until a reload's old
//! workers are gone.
//!
//! `nginx -s reload` returns before the master acts on it. Until the old
//! workers exit, one of them may still accept a connection and answer it by
//! the old configuration, so [`reload_gracefully`] lists the workers before
//! the reload and waits until none of those is left.

pub mod config;
use crate::docker;

/// `nginx -t`: validate the configuration.
pub const TEST: &[&str] = &["nginx", "-t"];
/// `nginx -T`: validate and print the configuration, as [`config::parse_dump`] reads it.
pub const DUMP: &[&str] = &["nginx", "-T"];
/// `nginx -s reload`.
pub const RELOAD: &[&str] = &["nginx", "-s", "reload"];
/// The processes, to tell when a reload's old workers are gone.
pub const PS: &[&str] = &["ps", "-o", "pid,args"];

/// The commands the nginx helpers of this SDK run through `docker.exec`:
/// declare them in `PluginInfo::exec` (see [`exec_needs`]).
pub const EXEC: &[&[&str]] = &[TEST, DUMP, RELOAD, PS];

/// What [`reload_gracefully`] and [`reload_after_switch`] run: a plugin
/// that only reloads declares these (see [`reload_exec_needs`]).
pub const RELOAD_EXEC: &[&[&str]] = &[TEST, RELOAD, PS];

/// How long [`reload_after_switch`] waits for the old workers.
pub const SWITCH_DRAIN_MS: u32 = 10_000;

/// [`EXEC`], plus `extra` commands of the plugin's own, as `PluginInfo::exec`.
pub fn exec_needs(extra: &[&[&str]]) -> Vec<Vec<String>> {
    argv_list(EXEC.iter().chain(extra))
}

/// [`RELOAD_EXEC`] as `PluginInfo::exec`, for a plugin that runs nothing
/// else in nginx.
pub fn reload_exec_needs() -> Vec<Vec<String>> {
    argv_list(RELOAD_EXEC.iter())
}

fn argv_list<'a>(commands: impl Iterator<Item = &'a &'a [&'a str]>) -> Vec<Vec<String>> {
    commands
        .map(|argv| argv.iter().map(|a| a.to_string()).collect())
        .collect()
}

/// Run `command` in the nginx container. The error names the command.
pub fn exec(service: &str, command: &[&str]) -> Result<docker::ExecOutput, String> {
    let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    docker::exec(service, &command)
        .map_err(|e| format!("cannot run `{}` in {service}: {e}", command.join(" ")))
}

/// `command`, which must exit 0; the error quotes nginx.
fn run(service: &str, command: &[&str]) -> Result<docker::ExecOutput, String> {
    let out = exec(service, command)?;
    if out.exit_code != 0 {
        return Err(format!(
            "`{}` failed in {service}: {}",
            command.join(" "),
            out.stderr.trim()
        ));
    }
    Ok(out)
}

/// `nginx -t`; the error quotes nginx.
pub fn test_config(service: &str) -> Result<(), String> {
    run(service, TEST).map(|_| ())
}

/// `nginx -T`: the configuration as nginx reads it, every included file.
pub fn dump(service: &str) -> Result<String, String> {
    run(service, DUMP).map(|out| out.stdout)
}

/// Where nginx routes, from its own parsed configuration (`nginx -T`). A
/// config that does not parse is a refusal (see [`crate::refuse`]): a step
/// that reads it first has changed nothing, and one that reloads when in
/// doubt can go on without it.
pub fn routes(service: &str) -> Result<config::Routes, String> {
    let dump = dump(service)?;
    let parsed = config::parse_dump(&dump).map_err(|e| {
        crate::refuse(format!(
            "cannot parse the config `nginx -T` printed in {service}: {e}; nothing was changed. \
             A strategy that reloads when in doubt (nginx-reload) works without reading it"
        ))
    })?;
    Ok(config::routes(&parsed))
}

/// `nginx -s reload` in `service`: old workers finish their requests, new
/// ones read the configuration and resolve upstream names again. Returns
/// before the old workers are gone; see [`reload_gracefully`].
pub fn reload(service: &str) -> Result<(), String> {
    run(service, RELOAD).map(|_| ())
}

/// PIDs of the nginx worker processes running in `service` now.
pub fn worker_pids(service: &str) -> Result<Vec<String>, String> {
    Ok(workers_in(&exec(service, PS)?.stdout))
}

/// The worker PIDs in the output of `ps -o pid,args`.
fn workers_in(ps: &str) -> Vec<String> {
    ps.lines()
        .filter(|l| l.contains("nginx: worker process"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Wait until the given workers have exited. Old workers exit only once the
/// new ones run and they have finished their requests, so their exit is the
/// drain; until then an old worker may still accept connections and answer
/// them by the old configuration.
pub fn wait_drained(service: &str, old_workers: &[String], timeout_ms: u32) -> Result<(), String> {
    let drained = crate::poll::until(timeout_ms, 100, |_| {
        let alive = worker_pids(service)?;
        Ok((!old_workers.iter().any(|pid| alive.contains(pid))).then_some(()))
    })?;
    drained.ok_or_else(|| {
        format!("old nginx workers in {service} were still busy after {timeout_ms} ms")
    })
}

/// `nginx -t`, `nginx -s reload`, then wait (up to `drain_timeout_ms`)
/// until the workers from before the reload are gone, so that every answer
/// from then on comes from the new configuration. A drain that runs out of
/// time is logged, not failed: the new configuration is already serving.
pub fn reload_gracefully(service: &str, drain_timeout_ms: u32) -> Result<(), String> {
    test_config(service)?;
    let old_workers = worker_pids(service)?;
    reload(service)?;
    if let Err(e) = wait_drained(service, &old_workers, drain_timeout_ms) {
        crate::warn!("{e}; continuing, the new config is live");
    }
    Ok(())
}

/// After a release switch: reload `service` gracefully if one is configured
/// (see [`reload_gracefully`]; it runs [`RELOAD_EXEC`]). The switch is
/// already live when this fails, and the error says so.
pub fn reload_after_switch(service: Option<&str>) -> Result<(), String> {
    match service {
        Some(service) => reload_gracefully(service, SWITCH_DRAIN_MS)
            .map_err(|e| format!("the switch is live, but {e}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_read_from_ps() {
        let ps = "PID   USER     TIME  COMMAND\n\
                  PID   COMMAND\n    \
                  1 nginx: master process nginx\n   \
                  31 nginx: worker process\n   \
                  32 nginx: worker process is shutting down\n   \
                  40 ps -o pid,args\n";
        assert_eq!(workers_in(ps), ["31", "32"]);
        assert!(workers_in("").is_empty());
    }

    #[test]
    fn the_declared_commands_cover_the_helpers() {
        for argv in RELOAD_EXEC {
            assert!(EXEC.contains(argv), "{argv:?} is missing from EXEC");
        }
        let needs = exec_needs(&[&["nslookup", "{service}"]]);
        assert_eq!(needs.len(), EXEC.len() + 1);
        assert_eq!(needs[2], ["nginx", "-s", "reload"]);
        assert_eq!(needs.last().unwrap(), &["nslookup", "{service}"]);
        assert_eq!(reload_exec_needs().len(), RELOAD_EXEC.len());
    }
}
