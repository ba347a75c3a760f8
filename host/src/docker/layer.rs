//! An image made of another image plus files, as `docker cp` then `docker
//! commit` make it: a container is created from the base and never
//! started, the files are unpacked into it, and the container is committed.
//! A static release ships this way to a swarm, whose nodes pull it from the
//! registry (docs/swarm.md); no Dockerfile and no build session are needed.

use super::Docker;
use anyhow::{Context as _, Result};
use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, UploadToContainerOptions,
};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Files to add to an image: each file's path in the image (absolute) and
/// where it is on this machine.
pub type Files = Vec<(String, PathBuf)>;

impl Docker {
    /// Commit `base` plus `files`, untagged (a push tags it); returns the
    /// image ID. The container it goes through is named `name`; a killed
    /// run's leftover of that name is removed first.
    pub async fn commit_files(&self, base: &str, files: Files, name: &str) -> Result<String> {
        let tar = tokio::task::spawn_blocking(move || files_tar(&files))
            .await
            .context("tar task panicked")??;
        self.remove_leftover(name).await?;
        let body = ContainerCreateBody {
            image: Some(base.to_owned()),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let id = self
            .client
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("cannot create a container from {base}"))?
            .id;
        let committed = self.unpack_and_commit(&id, tar).await;
        let removed = self.remove_leftover(name).await;
        let image = committed?;
        removed?;
        Ok(image)
    }

    async fn unpack_and_commit(&self, id: &str, tar: Vec<u8>) -> Result<String> {
        let options = UploadToContainerOptions {
            path: "/".to_owned(),
            ..Default::default()
        };
        self.client
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .context("cannot unpack the release into the container")?;
        let options = CommitContainerOptions {
            container: Some(id.to_owned()),
            pause: false,
            ..Default::default()
        };
        // An empty config: the engine keeps the base's (its command,
        // entrypoint, environment, ports, labels and healthcheck).
        let committed = self
            .client
            .commit_container(options, ContainerConfig::default())
            .await
            .context("cannot commit the container")?;
        Ok(committed.id)
    }

    async fn remove_leftover(&self, name: &str) -> Result<()> {
        match self.remove(name, name).await {
            Err(e) if not_found(&e) => Ok(()),
            other => other,
        }
    }
}

/// The engine answered 404: there is no such container.
fn not_found(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<bollard::errors::Error>(),
        Some(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        })
    )
}

/// A tar of `files` at their image paths, with every parent directory,
/// owned by root and readable by all (`HeaderMode::Deterministic`), so that
/// the same files make the same layer.
fn files_tar(files: &Files) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut dirs = BTreeSet::new();
    for (at, _) in files {
        let mut parent = std::path::Path::new(at.trim_start_matches('/')).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_owned());
            parent = dir.parent();
        }
    }
    for dir in &dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, dir, std::io::empty())
            .with_context(|| format!("cannot add {} to the archive", dir.display()))?;
    }
    for (at, from) in files {
        builder
            .append_path_with_name(from, at.trim_start_matches('/'))
            .with_context(|| format!("cannot add {} to the archive", from.display()))?;
    }
    builder.into_inner().context("cannot finish the archive")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_every_parent_and_file_readable_by_all() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.css");
        std::fs::write(&file, "body{}").unwrap();
        let tar = files_tar(&vec![("/srv/site/_astro/a.css".into(), file)]).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                (path, e.header().mode().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("srv".into(), 0o755),
                ("srv/site".into(), 0o755),
                ("srv/site/_astro".into(), 0o755),
                ("srv/site/_astro/a.css".into(), 0o644),
            ]
        );
    }
}
