//! Who calls a plugin, and what the agent lends every call. The call's own
//! state, one context per capability, is `capability::Sandbox`.

use crate::docker::Docker;
use std::path::PathBuf;
use std::sync::Arc;

/// What the agent shares with every call: the Docker engine (absent when none
/// is reachable or needed) and where plugin state lives.
#[derive(Clone, Default)]
pub struct HostServices {
    pub docker: Option<Arc<Docker>>,
    /// Directory of the per-plugin key-value files.
    pub state_dir: Option<PathBuf>,
}

/// Who is calling, for log lines and errors.
#[derive(Debug, Clone)]
pub struct Caller {
    pub surface: String,
    pub step: usize,
    /// The plugin's manifest key (`[plugins.<key>]`).
    pub plugin_key: String,
    pub plugin: String,
    pub version: String,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "surface {} step {} plugin {} {}",
            self.surface, self.step, self.plugin, self.version
        )
    }
}
