//! nginx in a compose service, reached through the `docker.exec` import.

pub mod config;
use crate::docker;

/// The commands the nginx helpers of this SDK run through `docker.exec`:
/// declare them in `PluginInfo::exec` (see [`exec_needs`]).
pub const EXEC: &[&[&str]] = &[
    &["nginx", "-t"],
    &["nginx", "-T"],
    &["nginx", "-s", "reload"],
    // The worker processes, to tell when a reload's old workers are gone.
    &["ps", "-o", "pid,args"],
];

/// [`EXEC`], plus `extra` commands of the plugin's own, as `PluginInfo::exec`.
pub fn exec_needs(extra: &[&[&str]]) -> Vec<Vec<String>> {
    EXEC.iter()
        .chain(extra)
        .map(|argv| argv.iter().map(|a| a.to_string()).collect())
        .collect()
}

/// `nginx -s reload` in `service`: old workers finish their requests, new
/// ones read the configuration and resolve upstream names again.
pub fn reload(service: &str) -> Result<(), String> {
    let command = ["nginx", "-s", "reload"].map(str::to_owned).to_vec();
    let out = docker::exec(service, &command)?;
    if out.exit_code != 0 {
        return Err(format!(
            "`nginx -s reload` in {service} failed: {}",
            out.stderr.trim()
        ));
    }
    Ok(())
}

/// After a release switch: reload `service` if one is configured. The
/// switch is already live when this fails, and the error says so.
pub fn reload_after_switch(service: Option<&str>) -> Result<(), String> {
    match service {
        Some(service) => reload(service).map_err(|e| format!("the switch is live, but {e}")),
        None => Ok(()),
    }
}
