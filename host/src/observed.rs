//! What runs: each service's containers as [`reconcile::Existing`], and the
//! specs they were created from. A container carries only the hash of its
//! spec (a label); the spec itself is kept in the state directory under that
//! hash, so `plan` can name the keys that changed and a rollback can put the
//! previous spec back.

use crate::desired::ContainerSpec;
use crate::docker::ContainerInfo;
use crate::reconcile::Existing;
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

pub fn existing(containers: &[ContainerInfo]) -> Vec<Existing> {
    containers
        .iter()
        .map(|c| Existing {
            id: c.id.clone(),
            name: c.name.clone(),
            image_id: c.image_id.clone(),
            state: c.state.clone(),
            spec_hash: c.spec_hash.clone(),
            config_hash: c.config_hash.clone(),
            compose_v1: c.compose_v1,
            created: c.created.clone(),
        })
        .collect()
}

/// Specs by hash, one JSON file each, under `<state_dir>/specs`.
#[derive(Debug, Clone)]
pub struct SpecStore {
    dir: PathBuf,
}

impl SpecStore {
    pub fn new(state_dir: &Path) -> SpecStore {
        SpecStore {
            dir: state_dir.join("specs"),
        }
    }

    fn path(&self, hash: &str) -> Option<PathBuf> {
        // A hash comes from a label anyone can set: only hex names a file.
        let valid =
            !hash.is_empty() && hash.len() <= 128 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.dir.join(format!("{hash}.json")))
    }

    /// Keep `spec` under its hash (written once; the content never changes),
    /// with compose v2's config-hash of the definition it came from, which
    /// a rollback to this spec labels its container with (the compose file
    /// by then says something else).
    pub fn save(&self, spec: &ContainerSpec, config_hash: Option<&str>) -> Result<String> {
        let hash = spec.hash();
        let path = self.path(&hash).context("spec hash is not hex")?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        // Rewritten only when it changed: one compose key slipway's spec
        // does not hold (`attach`, say) changes the config-hash alone.
        if let Some(config_hash) =
            config_hash.filter(|h| self.config_hash(&hash).as_deref() != Some(*h))
        {
            let path = path.with_extension("config-hash");
            crate::state::write_atomic(&path, config_hash.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if path.exists() {
            return Ok(hash);
        }
        let json = serde_json::to_vec_pretty(spec)?;
        crate::state::write_atomic(&path, &json)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(hash)
    }

    /// The config-hash saved with the spec `hash`, if one was.
    pub fn config_hash(&self, hash: &str) -> Option<String> {
        let path = self.path(hash)?.with_extension("config-hash");
        std::fs::read_to_string(path).ok()
    }

    pub fn load(&self, hash: &str) -> Option<ContainerSpec> {
        let text = std::fs::read(self.path(hash)?).ok()?;
        serde_json::from_slice(&text).ok()
    }
}
