//! The user's docker-compose.yml: which services exist, how each is built and
//! which image tag it runs. slipway never shells out to compose; it reads the
//! file for what it needs and finds containers by compose's labels.

use anyhow::{Context as _, Result, bail};
use docker_compose_types::{BuildArgs, BuildStep, Compose};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What slipway needs to know about one compose service.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    pub name: String,
    /// `image:` from the compose file, if set.
    pub image: Option<String>,
    pub build: Option<BuildDef>,
}

#[derive(Debug, Clone)]
pub struct BuildDef {
    /// Absolute path of the build context.
    pub context: PathBuf,
    /// Dockerfile path relative to the context.
    pub dockerfile: String,
    pub args: HashMap<String, String>,
    pub target: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ComposeProject {
    /// The compose project name (label `com.docker.compose.project`).
    pub name: String,
    pub file: PathBuf,
    pub services: IndexMap<String, ServiceDef>,
}

impl ComposeProject {
    pub fn load(file: &Path, project: &str) -> Result<ComposeProject> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read compose file {}", file.display()))?;
        let compose: Compose = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a valid compose file", file.display()))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut services = IndexMap::new();
        for (name, service) in compose.services.0 {
            let service = service.unwrap_or_default();
            let build = match service.build_ {
                None => None,
                Some(step) => Some(build_def(dir, &name, step)?),
            };
            if build.is_none() && service.image.is_none() {
                bail!(
                    "{}: service `{name}` has neither `build` nor `image`",
                    file.display()
                );
            }
            services.insert(
                name.clone(),
                ServiceDef {
                    name,
                    image: service.image,
                    build,
                },
            );
        }
        Ok(ComposeProject {
            name: project.to_owned(),
            file: file.to_owned(),
            services,
        })
    }

    pub fn service(&self, name: &str) -> Option<&ServiceDef> {
        self.services.get(name)
    }

    pub fn service_names(&self) -> String {
        let names: Vec<&str> = self.services.keys().map(String::as_str).collect();
        names.join(", ")
    }
}

impl ServiceDef {
    /// The tag compose gives the service's image: `image:` when set, otherwise
    /// `<project>-<service>` (compose v2) or `<project>_<service>` (compose
    /// v1, which `legacy_separator` selects).
    pub fn image_tag(&self, project: &str, legacy_separator: bool) -> String {
        match &self.image {
            Some(image) => image.clone(),
            None => {
                let sep = if legacy_separator { '_' } else { '-' };
                format!("{project}{sep}{}", self.name)
            }
        }
    }
}

fn build_def(dir: &Path, service: &str, step: BuildStep) -> Result<BuildDef> {
    let (context, dockerfile, args, target) = match step {
        BuildStep::Simple(context) => (context, None, None, None),
        BuildStep::Advanced(adv) => {
            if adv.dockerfile_inline.is_some() {
                bail!(
                    "service `{service}`: `dockerfile_inline` is not supported; use a Dockerfile"
                );
            }
            (adv.context, adv.dockerfile, adv.args, adv.target)
        }
    };
    let args = match args {
        None => HashMap::new(),
        Some(BuildArgs::Simple(arg)) => parse_args(std::iter::once(arg)),
        Some(BuildArgs::List(list)) => parse_args(list.into_iter()),
        Some(BuildArgs::KvPair(map)) => map.into_iter().collect(),
    };
    Ok(BuildDef {
        context: dir.join(context),
        dockerfile: dockerfile.unwrap_or_else(|| "Dockerfile".to_owned()),
        args,
        target,
    })
}

fn parse_args(items: impl Iterator<Item = String>) -> HashMap<String, String> {
    items
        .filter_map(|item| match item.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            // `- NAME` alone takes the value from the environment, as compose does.
            None => std::env::var(&item).ok().map(|v| (item, v)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_services_builds_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(
            &file,
            r#"
version: "2.4"
services:
  api:
    build: ./api
  web:
    build:
      context: web
      dockerfile: Dockerfile.prod
      args: ["MODE=prod"]
  redis:
    image: redis:7
"#,
        )
        .unwrap();
        let p = ComposeProject::load(&file, "honeychat").unwrap();
        assert_eq!(p.service_names(), "api, web, redis");
        let api = p.service("api").unwrap();
        assert_eq!(
            api.build.as_ref().unwrap().context,
            dir.path().join("./api")
        );
        assert_eq!(api.image_tag("honeychat", true), "honeychat_api");
        assert_eq!(api.image_tag("honeychat", false), "honeychat-api");
        let web = p.service("web").unwrap().build.as_ref().unwrap();
        assert_eq!(web.dockerfile, "Dockerfile.prod");
        assert_eq!(web.args.get("MODE").map(String::as_str), Some("prod"));
        assert_eq!(p.service("redis").unwrap().image_tag("x", false), "redis:7");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ComposeProject::load(&dir.path().join("nope.yml"), "p").unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read compose file"));
        let file = dir.path().join("c.yml");
        std::fs::write(&file, "services: [1, 2").unwrap();
        let bad = ComposeProject::load(&file, "p").unwrap_err();
        assert!(
            format!("{bad:#}").contains("not a valid compose file"),
            "{bad:#}"
        );
    }
}
