//! Pulls of the `image:` of services that do not build, as compose v2's
//! `pull_policy` asks, before any surface changes anything: a pull that
//! fails stops the deploy with the running containers untouched.

use super::Docker;
use crate::compose::PullPolicy;
use anyhow::{Context as _, Result, anyhow};
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a deploy pulls an image, or nothing when it does not.
pub fn pull_reason(policy: PullPolicy, tagged_ago: Option<Duration>) -> Option<&'static str> {
    match (policy, tagged_ago) {
        (PullPolicy::Always, _) => Some("pull_policy: always"),
        (PullPolicy::Never | PullPolicy::Build, _) => None,
        (PullPolicy::Missing | PullPolicy::Refresh(_), None) => Some("the image is missing"),
        (PullPolicy::Refresh(every), Some(ago)) if ago > every => {
            Some("the image is older than its pull_policy")
        }
        (PullPolicy::Missing | PullPolicy::Refresh(_), Some(_)) => None,
    }
}

impl Docker {
    /// Pull the service's image when its policy asks; says why it pulled.
    pub async fn pull_if_due(&self, service: &str) -> Result<Option<&'static str>> {
        let def = self
            .compose
            .service(service)
            .ok_or_else(|| anyhow!("`{service}` is not a service of the project"))?;
        let Some(image) = def.image.as_deref().filter(|_| def.build.is_none()) else {
            return Ok(None);
        };
        let policy = def.extra.pull_policy;
        let tagged_ago = self.tagged_ago(image).await;
        if policy == PullPolicy::Never && tagged_ago.is_none() {
            anyhow::bail!(
                "`{image}` is not on this engine, and `pull_policy: never` forbids pulling it: \
                 `docker pull {image}` (or load it) first, or change its pull_policy"
            );
        }
        let Some(reason) = pull_reason(policy, tagged_ago) else {
            return Ok(None);
        };
        self.pull(image, def.extra.platform.as_deref())
            .await
            .with_context(|| format!("cannot pull `{image}` ({reason})"))?;
        Ok(Some(reason))
    }

    /// How long ago the image was last tagged (pulled or built), or `None`
    /// when it is not here. No time (a loaded image) is compose's zero
    /// time: longer ago than any refresh.
    pub(super) async fn tagged_ago(&self, image: &str) -> Option<Duration> {
        let inspect = self.inspect_image(image).await.ok()?;
        let tagged = inspect.metadata.and_then(|m| m.last_tag_time);
        let Some(tagged) = tagged else {
            return Some(Duration::MAX);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let then = Duration::from_secs(u64::try_from(tagged.unix_timestamp()).unwrap_or(0));
        Some(now.saturating_sub(then))
    }

    pub(super) async fn pull(&self, image: &str, platform: Option<&str>) -> Result<()> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            platform: platform.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        let mut stream = self.client.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                anyhow::bail!("{e}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn each_policy_pulls_when_compose_v2_pulls() {
        let day = PullPolicy::Refresh(24 * HOUR);
        let cases = [
            (PullPolicy::Always, Some(HOUR), true),
            (PullPolicy::Always, None, true),
            (PullPolicy::Missing, None, true),
            (PullPolicy::Missing, Some(1000 * HOUR), false),
            (PullPolicy::Never, None, false),
            (PullPolicy::Build, None, false),
            (day, None, true),
            (day, Some(HOUR), false),
            (day, Some(25 * HOUR), true),
        ];
        for (policy, ago, pulls) in cases {
            assert_eq!(
                pull_reason(policy, ago).is_some(),
                pulls,
                "{policy:?} {ago:?}"
            );
        }
    }
}
