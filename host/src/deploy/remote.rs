//! What cannot work when the engine is another machine. Filesystem grants
//! are directories on this machine; a container of the remote engine that
//! bind-mounts the same path reads that path on the engine's machine, so a
//! release written here would never be served.

use crate::compose::lexical;
use crate::desired::{MountKind, Volume, desired};
use crate::docker::Endpoint;
use crate::manifest::Loaded;
use std::path::{Path, PathBuf};

/// Refuse, before anything changes, a surface that writes a directory a
/// service bind-mounts, when the engine is on another machine.
pub fn refuse_local_files_for_remote_engine(
    loaded: &Loaded,
    surfaces: &[String],
    endpoint: &Endpoint,
) -> Result<(), String> {
    let Some(host) = endpoint.remote_host() else {
        return Ok(());
    };
    let binds = bind_sources(loaded);
    for name in surfaces {
        for (index, step) in loaded.manifest.surface[name].step.iter().enumerate() {
            for (i, grant) in step.grants.fs.iter().enumerate() {
                let dir = lexical(&loaded.dir.join(&grant.host));
                let Some((service, source)) = binds
                    .iter()
                    .find(|(_, source)| source.starts_with(&dir) || dir.starts_with(source))
                else {
                    continue;
                };
                return Err(format!(
                    "surface.{name}.step[{index}].grants.fs[{i}]: `{}` is a directory on this machine, but the engine at {} (from {}) runs on {host}, another machine, where service `{service}` bind-mounts `{}` from its own disk; what this deploy writes here would never be served there. Run slipway on the engine's machine for this surface (its backend surfaces can still deploy from here)",
                    grant.host.display(),
                    endpoint.url,
                    endpoint.source,
                    source.display(),
                ));
            }
        }
    }
    Ok(())
}

/// Every active service's bind-mount sources.
fn bind_sources(loaded: &Loaded) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (name, def) in &loaded.compose.services {
        if !def.active {
            continue;
        }
        let Ok(spec) = desired(&loaded.compose, name, "") else {
            continue;
        };
        for volume in &spec.volumes {
            let source = match volume {
                Volume::Bind { source, .. } => Some(source),
                Volume::Mount(m) if m.kind == MountKind::Bind => m.source.as_ref(),
                _ => None,
            };
            if let Some(source) = source {
                out.push((name.clone(), lexical(Path::new(source))));
            }
        }
    }
    out
}
