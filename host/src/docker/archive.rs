//! Files out of a service's images: a tar archive of one path, read from a
//! container that is created for it and never started (`docker cp` from an
//! image). A step such as asset bridging needs the files of the build a
//! deploy replaces as well as the new one, and the old container is gone by
//! the time the step runs.

use super::{Docker, ONEOFF_LABEL, PROJECT_LABEL, split_reference};
use crate::text::short_id;
use anyhow::{Context as _, Result, anyhow, bail};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListImagesOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;

/// Marks the created-only container, so a killed run's leftover is found.
const ARCHIVE_LABEL: &str = "dev.slipway.archive";

impl Docker {
    /// A tar archive of `path` in `image`, which must be an image of
    /// `service`: one its containers run, its compose tag, or one a deploy
    /// kept for rollback. Fails past `max_bytes`.
    pub async fn image_archive(
        &self,
        service: &str,
        image: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Vec<u8>> {
        if !path.starts_with('/') {
            bail!("`{path}` is not an absolute path in the image");
        }
        let images = self.images_of(service).await?;
        let Some(image) = images.iter().find(|id| same_image(id, image)) else {
            bail!(
                "image `{image}` is not an image of service `{service}` (its containers', its \
                 compose tag's or a kept rollback image: {})",
                list_short(&images)
            );
        };
        self.remove_archive_leftovers(service).await?;
        let id = self.create_unstarted(service, image).await?;
        let read = self.read_archive(&id, path, max_bytes).await;
        let removed = self.remove(&id, &id).await;
        let bytes = read?;
        removed?;
        Ok(bytes)
    }

    /// The image IDs `service` may be read from.
    async fn images_of(&self, service: &str) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .containers(service)
            .await?
            .into_iter()
            .map(|c| c.image_id)
            .collect();
        let tag = self.image_tag(service)?;
        let (repo, _) = split_reference(&tag);
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "reference".to_owned(),
                vec![tag.clone(), format!("{repo}:slipway-*")],
            )])),
            ..Default::default()
        };
        let listed = self
            .client
            .list_images(Some(options))
            .await
            .context("cannot list images")?;
        ids.extend(listed.into_iter().map(|i| i.id));
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn create_unstarted(&self, service: &str, image: &str) -> Result<String> {
        let labels = HashMap::from([
            (PROJECT_LABEL.to_owned(), self.compose.name.clone()),
            (ONEOFF_LABEL.to_owned(), "True".to_owned()),
            (ARCHIVE_LABEL.to_owned(), service.to_owned()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            labels: Some(labels),
            network_disabled: Some(true),
            ..Default::default()
        };
        let created = self
            .client
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .with_context(|| {
                format!(
                    "cannot create a container from {service}'s image {}",
                    short_id(image)
                )
            })?;
        Ok(created.id)
    }

    async fn read_archive(&self, id: &str, path: &str, max_bytes: usize) -> Result<Vec<u8>> {
        let options = DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        let mut stream = self.client.download_from_container(id, Some(options));
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow!(e).context(format!("cannot read `{path}`")))?;
            if bytes.len() + chunk.len() > max_bytes {
                bail!(
                    "`{path}` is over {} MiB as an archive; name a smaller directory",
                    max_bytes >> 20
                );
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn remove_archive_leftovers(&self, service: &str) -> Result<()> {
        for c in self.labelled(ARCHIVE_LABEL, service).await? {
            let id = c.id.unwrap_or_default();
            tracing::debug!(
                "removing the archive container {} a killed run left",
                short_id(&id)
            );
            self.remove(&id, &id).await?;
        }
        Ok(())
    }
}

/// `sha256:…` in full, or a prefix of at least 12 digits with or without
/// `sha256:`.
fn same_image(id: &str, given: &str) -> bool {
    let digits = |s: &str| s.strip_prefix("sha256:").unwrap_or(s).to_owned();
    let (id, given) = (digits(id), digits(given));
    given.len() >= 12 && given.chars().all(|c| c.is_ascii_hexdigit()) && id.starts_with(&given)
}

fn list_short(ids: &[String]) -> String {
    let short: Vec<&str> = ids.iter().map(|id| short_id(id)).collect();
    match short.is_empty() {
        true => "none".to_owned(),
        false => short.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::same_image;

    #[test]
    fn an_image_is_named_by_its_id_or_a_long_enough_prefix() {
        let id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(same_image(id, id));
        assert!(same_image(id, "0123456789ab"));
        assert!(same_image(id, "sha256:0123456789abcdef"));
        assert!(!same_image(id, "0123456789a"), "too short to be unique");
        assert!(!same_image(id, "123456789abc"));
        assert!(!same_image(id, "busybox:latest"));
        assert!(!same_image(id, ""));
    }
}
