use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn load(dir: &Path, files: &[&str]) -> Result<ComposeProject> {
    let files: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    ComposeProject::load(&files, "proj", &LoadOptions::default())
}

fn err(dir: &Path, files: &[&str]) -> String {
    format!("{:#}", load(dir, files).unwrap_err())
}

#[test]
fn reads_services_builds_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "docker-compose.yml",
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
    );
    let p = load(dir.path(), &["docker-compose.yml"]).unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(p.service_names(), "api, web, redis");
    let api = p.service("api").unwrap();
    assert_eq!(api.build.as_ref().unwrap().context, root.join("api"));
    assert_eq!(api.image_tag("honeychat"), "honeychat-api");
    let web = p.service("web").unwrap().build.as_ref().unwrap();
    assert_eq!(web.dockerfile, "Dockerfile.prod");
    assert_eq!(web.args.get("MODE").map(String::as_str), Some("prod"));
    assert_eq!(p.service("redis").unwrap().image_tag("x"), "redis:7");
    assert_eq!(p.networks["default"].name, "proj_default");
    assert_eq!(p.service("api").unwrap().location.line, 4);
}

#[test]
fn env_files_anchors_interpolation_and_override_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        ".env",
        "GREETING=hello from .env # note\nexport TAG='v1'\n# comment\nQ=\"a\\tb\"\n",
    );
    write(d, "api.env", "FROM_FILE=1\nSHARED=file\n");
    write(
        d,
        "docker-compose.yml",
        r#"
x-common: &common
  restart: unless-stopped
  labels:
    team: core
services:
  api:
    <<: *common
    image: "registry.local/api:${TAG}"
    env_file: api.env
    environment:
      SHARED: env
      GREETING: ${GREETING}
      PRICE: "$$5"
      PORT: ${SLIPWAY_TEST_UNSET_PORT:-8000}
      FROM_SHELL:
    volumes:
      - ./data:/data
      - cache:/cache
    x-notes: ignored
  worker:
    <<: *common
    image: busybox
    command: ["sleep", "1"]
    profiles: [jobs]
volumes:
  cache:
"#,
    );
    write(
        d,
        "docker-compose.override.yml",
        "services:\n  api:\n    environment: [EXTRA=yes]\n    labels: [tier=web]\n  worker:\n    command: [sleep, '2']\n",
    );
    let p = load(d, &["docker-compose.yml", "docker-compose.override.yml"]).unwrap();
    let api = p.service("api").unwrap();
    assert_eq!(api.image.as_deref(), Some("registry.local/api:v1"));
    let env: Vec<(&str, &str)> = api
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("FROM_FILE", "1"),
            ("SHARED", "env"),
            ("GREETING", "hello from .env"),
            ("PRICE", "$5"),
            ("PORT", "8000"),
            ("EXTRA", "yes"),
        ],
        "FROM_SHELL is unset everywhere, so it is dropped"
    );
    assert_eq!(api.service.restart.as_deref(), Some("unless-stopped"));
    let docker_compose_types::Labels::Map(labels) = &api.service.labels else {
        panic!("labels normalize to a map");
    };
    assert_eq!(labels.get("team").map(String::as_str), Some("core"));
    assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
    let root = std::fs::canonicalize(d).unwrap();
    let docker_compose_types::Volumes::Simple(bind) = &api.service.volumes[0] else {
        panic!("short syntax");
    };
    assert_eq!(bind, &format!("{}/data:/data", root.display()));
    assert_eq!(p.volumes["cache"].name, "proj_cache");
    let worker = p.service("worker").unwrap();
    assert!(!worker.active, "profile jobs is not active");
    match &worker.service.command {
        Some(docker_compose_types::Command::Args(args)) => assert_eq!(args, &["sleep", "2"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_keys_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "c.yml",
        "services:\n  api:\n    image: x\n    links:\n      - db\n  db:\n    image: y\n",
    );
    let e = err(d, &["c.yml"]);
    assert!(
        e.contains("c.yml:4:") && e.contains("`services.api.links`"),
        "{e}"
    );
    assert!(e.contains("service name"), "advice: {e}");
    write(
        d,
        "d.yml",
        "services:\n  api:\n    image: x\n    build:\n      context: .\n      network: host\n",
    );
    let e = err(d, &["d.yml"]);
    assert!(e.contains("d.yml:6:") && e.contains("build.network"), "{e}");
    write(
        d,
        "e.yml",
        "services:\n  api:\n    image: x\nsecrets:\n  s: {}\n",
    );
    let e = err(d, &["e.yml"]);
    assert!(
        e.contains("e.yml:5:") && e.contains("needs one of `file`, `environment`"),
        "{e}"
    );
    write(
        d,
        "e2.yml",
        "services:\n  api:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {}\n",
    );
    let e = err(d, &["e2.yml"]);
    assert!(e.contains("e2.yml:6:") && e.contains("needs one of"), "{e}");
    write(
        d,
        "f.yml",
        "services:\n  api:\n    image: x\n    network_mode: service:db\n",
    );
    assert!(err(d, &["f.yml"]).contains("f.yml:4:"));
}

#[test]
fn bad_files_name_their_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = err(d, &["nope.yml"]);
    assert!(missing.contains("cannot read compose file"), "{missing}");
    write(d, "a.yml", "services:\n  api:\n    image: [x\n");
    let e = err(d, &["a.yml"]);
    assert!(e.contains("a.yml:") && e.contains("not valid YAML"), "{e}");
    write(
        d,
        "b.yml",
        "services:\n  api:\n    image: x\n    environment:\n      K: ${SLIPWAY_TEST_NOPE:?set it in .env}\n",
    );
    let e = err(d, &["b.yml"]);
    assert!(
        e.contains("b.yml:5:") && e.contains("set it in .env"),
        "{e}"
    );
    write(
        d,
        "c.yml",
        "services:\n  api:\n    image: x\n    env_file: missing.env\n",
    );
    let e = err(d, &["c.yml"]);
    assert!(e.contains("c.yml:4:") && e.contains("missing.env"), "{e}");
    write(
        d,
        "d.yml",
        "services:\n  api:\n    ports: 80\n    image: x\n",
    );
    let e = err(d, &["d.yml"]);
    assert!(e.contains("d.yml:2:") && e.contains("service `api`"), "{e}");
    assert!(e.contains("`ports`"), "the key: {e}");
    write(
        d,
        "f.yml",
        "services:\n  api:\n    image: x\n    init: ${INIT:-maybe}\n",
    );
    let e = err(d, &["f.yml"]);
    assert!(
        e.contains("f.yml:4:") && e.contains("`maybe` is not a boolean"),
        "{e}"
    );
    write(d, "e.yml", "services:\n  api:\n    restart: always\n");
    assert!(err(d, &["e.yml"]).contains("neither `build` nor `image`"));
}

#[test]
fn shell_environment_wins_over_dot_env() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // PATH is set in every test process; .env must not override it.
    write(d, ".env", "PATH=from-dot-env\n");
    write(
        d,
        "c.yml",
        "services:\n  api:\n    image: x\n    environment: ['P=${PATH}']\n",
    );
    let p = load(d, &["c.yml"]).unwrap();
    let value = &p.service("api").unwrap().environment["P"];
    assert_eq!(value, &std::env::var("PATH").unwrap());
}

#[test]
fn update_order_is_read_from_deploy_update_config() {
    let dir = tempfile::tempdir().unwrap();
    let compose = |order: &str| {
        format!(
            "services:\n  api:\n    image: x\n    deploy:\n      update_config:\n        order: {order}\n        parallelism: 1\n  bot:\n    image: x\n"
        )
    };
    write(dir.path(), "docker-compose.yml", &compose("start-first"));
    let p = load(dir.path(), &["docker-compose.yml"]).unwrap();
    assert_eq!(
        p.services["api"].extra.update_order,
        Some(UpdateOrder::StartFirst)
    );
    assert_eq!(p.services["bot"].extra.update_order, None);
    write(dir.path(), "docker-compose.yml", &compose("blue-green"));
    let e = err(dir.path(), &["docker-compose.yml"]);
    assert!(
        e.contains("docker-compose.yml:2: service `api`: deploy.update_config.order")
            && e.contains("`blue-green` is neither"),
        "{e}"
    );
}

#[test]
fn update_order_follows_anchors_dot_env_and_override_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".env", "ORDER=start-first\n");
    write(
        dir.path(),
        "docker-compose.yml",
        "x-rolling: &rolling\n  update_config:\n    order: \"${ORDER:-stop-first}\"\n\
         services:\n  api:\n    image: x\n    deploy: *rolling\n  bot:\n    image: x\n    deploy:\n      <<: *rolling\n",
    );
    write(
        dir.path(),
        "docker-compose.prod.yml",
        "services:\n  bot:\n    deploy:\n      update_config:\n        order: stop-first\n",
    );
    let p = load(
        dir.path(),
        &["docker-compose.yml", "docker-compose.prod.yml"],
    )
    .unwrap();
    assert_eq!(
        p.services["api"].extra.update_order,
        Some(UpdateOrder::StartFirst)
    );
    assert_eq!(
        p.services["bot"].extra.update_order,
        Some(UpdateOrder::StopFirst)
    );
}

#[test]
fn the_rest_of_deploy_is_read_only_for_a_swarm_stack() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "docker-compose.yml",
        "services:\n  api:\n    image: x\n    deploy:\n      replicas: 3\n      endpoint_mode: dnsrr\n      \
         update_config: {order: start-first, monitor: 4s}\n",
    );
    let e = err(dir.path(), &["docker-compose.yml"]);
    assert!(
        e.contains("endpoint_mode") && e.contains("slipway reads `deploy.update_config`"),
        "{e}"
    );
    let files = [dir.path().join("docker-compose.yml")];
    let swarm = LoadOptions {
        swarm: true,
        ..Default::default()
    };
    // What `docker stack deploy` would not read is refused for a stack.
    for (text, key) in [
        (
            "include: [other.yml]\nservices:\n  api:\n    image: x\n",
            "include",
        ),
        (
            "services:\n  api:\n    image: x\n  b:\n    extends: api\n",
            "extends",
        ),
    ] {
        write(dir.path(), "stack.yml", text);
        let stack = [dir.path().join("stack.yml")];
        let e = format!(
            "{:#}",
            ComposeProject::load(&stack, "p", &swarm).unwrap_err()
        );
        assert!(e.contains(&format!("does not read `{key}`")), "{e}");
    }
    let p = ComposeProject::load(&files, "proj", &swarm).unwrap();
    assert_eq!(
        p.services["api"].extra.update_order,
        Some(UpdateOrder::StartFirst)
    );
    // A profile would be ignored by `docker stack deploy`, not honoured.
    write(
        dir.path(),
        "docker-compose.yml",
        "services:\n  api:\n    image: x\n  seed:\n    image: x\n    profiles: [jobs]\n",
    );
    let e = ComposeProject::load(&files, "proj", &swarm)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("services.seed.profiles") && e.contains("ignores profiles"),
        "{e}"
    );
}

/// Shapes that public projects use and compose v2 loads: integer `expose`
/// items, `${VAR}` in number and boolean fields (compose converts them,
/// `yes` included), bare build args (from `.env`; left out when unset) and an
/// empty host IP in a port. The values are what `docker compose config` of
/// compose v2.40.3 prints for this file.
#[test]
fn shapes_real_projects_use_load_as_compose_v2_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        ".env",
        "RO=true\nRETRIES=5\nSLIPWAY_TEST_IMAGE=getsentry/sentry:nightly\n",
    );
    write(
        d,
        "docker-compose.yml",
        r#"
services:
  db:
    image: postgres:16
    expose:
      - 5432
      - "5433"
    read_only: ${RO}
    tty: ${SLIPWAY_TEST_TTY:-yes}
    healthcheck:
      test: ["CMD", "true"]
      retries: $RETRIES
  web:
    build:
      context: .
      args:
        - SLIPWAY_TEST_IMAGE
        - SLIPWAY_TEST_UNSET
    ports:
      - "${SLIPWAY_TEST_BIND:-}:443:443"
"#,
    );
    let p = load(d, &["docker-compose.yml"]).unwrap();
    let db = crate::desired::desired(&p, "db", "postgres:16").unwrap();
    assert_eq!(db.expose.iter().collect::<Vec<_>>(), ["5432", "5433"]);
    assert!(db.read_only && db.tty);
    assert_eq!(db.healthcheck.unwrap().retries, Some(5));
    let args = &p.service("web").unwrap().build.as_ref().unwrap().args;
    assert_eq!(
        args.iter().collect::<Vec<_>>(),
        [(
            &"SLIPWAY_TEST_IMAGE".to_owned(),
            &"getsentry/sentry:nightly".to_owned()
        )]
    );
    let web = crate::desired::desired(&p, "web", "proj-web").unwrap();
    let bind = &web.ports["443/tcp"];
    assert_eq!(
        (bind[0].host_ip.as_str(), bind[0].host_port.as_str()),
        ("", "443")
    );
}

/// Defaults built on defaults (Sentry's `<<: *app` where `app` has its own
/// `<<: *restart`): the inner merge applies, keys written win over merged
/// ones, and the first of several sources wins.
#[test]
fn merge_keys_inside_merged_mappings_apply() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "docker-compose.yml",
        r#"
x-restart: &restart
  restart: unless-stopped
  stop_signal: SIGINT
x-app: &app
  <<: *restart
  image: example/app:1
  stop_signal: SIGTERM
x-labels: &labels
  labels: {a: "1"}
services:
  web:
    <<: [*app, *labels]
    command: ["run", "web"]
  worker:
    <<: *app
    restart: always
"#,
    );
    let p = load(dir.path(), &["docker-compose.yml"]).unwrap();
    let web = crate::desired::desired(&p, "web", "example/app:1").unwrap();
    assert_eq!(web.restart.unwrap().name, "unless-stopped");
    assert_eq!(web.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(web.labels["a"], "1");
    let worker = crate::desired::desired(&p, "worker", "example/app:1").unwrap();
    assert_eq!(worker.restart.unwrap().name, "always");
    write(
        dir.path(),
        "bad.yml",
        "services:\n  a:\n    <<: [1]\n    image: x\n",
    );
    assert!(err(dir.path(), &["bad.yml"]).contains("`<<` merges a mapping"));
}

/// `env_file` in compose's long form: a missing file with `required: false`
/// is skipped; a required one is an error naming it.
#[test]
fn env_files_in_the_long_form() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.env", "A=1\nB=from-a\n");
    write(dir.path(), "b.env", "B=from-b\n");
    write(
        dir.path(),
        "docker-compose.yml",
        r#"
services:
  app:
    image: x
    env_file:
      - a.env
      - path: ./missing.env
        required: false
      - path: b.env
        required: ${B_REQUIRED:-true}
"#,
    );
    let p = load(dir.path(), &["docker-compose.yml"]).unwrap();
    let env = &p.service("app").unwrap().environment;
    assert_eq!(env["A"], "1");
    assert_eq!(env["B"], "from-b");
    write(
        dir.path(),
        "missing.yml",
        "services:\n  app:\n    image: x\n    env_file:\n      - path: ./missing.env\n",
    );
    let e = err(dir.path(), &["missing.yml"]);
    assert!(
        e.contains("missing.yml:4") && e.contains("missing.env"),
        "{e}"
    );
    write(
        dir.path(),
        "format.yml",
        "services:\n  app:\n    image: x\n    env_file:\n      - {path: a.env, format: raw}\n",
    );
    assert!(err(dir.path(), &["format.yml"]).contains("unsupported key `format`"));
}

/// `extra_hosts` as a mapping, which compose v2 takes as well as a list.
#[test]
fn extra_hosts_as_a_mapping() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "docker-compose.yml",
        "services:\n  app:\n    image: x\n    extra_hosts:\n      db.internal: 10.0.0.5\n      gw: host-gateway\n",
    );
    let p = load(dir.path(), &["docker-compose.yml"]).unwrap();
    let app = crate::desired::desired(&p, "app", "x").unwrap();
    assert_eq!(app.extra_hosts, ["db.internal:10.0.0.5", "gw:host-gateway"]);
}

/// `deploy.resources` keys with no container setting outside a swarm are
/// refused at their own line.
#[test]
fn deploy_resources_beyond_limits_are_refused_by_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "docker-compose.yml",
        "services:\n  api:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          memory: 64M\n          devices:\n            - capabilities: [gpu]\n",
    );
    let e = err(dir.path(), &["docker-compose.yml"]);
    write(
        dir.path(),
        "replicas.yml",
        "services:\n  api:\n    image: x\n    deploy:\n      replicas: ${N:-3}\n",
    );
    let r = err(dir.path(), &["replicas.yml"]);
    assert!(
        r.contains("replicas.yml:5") && r.contains("`3` replicas"),
        "{r}"
    );
    assert!(
        e.contains("docker-compose.yml:8")
            && e.contains("`services.api.deploy.resources.reservations.devices`")
            && e.contains("deploy.resources"),
        "{e}"
    );
}

/// `extends` in the same file and from another one (whose relative paths
/// are its own), chains of it, and the errors: a loop, a missing base.
#[test]
fn extends_in_the_same_file_and_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "common/base.yml",
        "services:\n  web:\n    image: example/web:1\n    volumes: [\"./data:/data\"]\n    environment: {A: base, B: base}\n",
    );
    write(
        d,
        "docker-compose.yml",
        r#"
services:
  app:
    extends: {file: common/base.yml, service: web}
    environment: {B: app}
  worker:
    extends: app
    command: ["work"]
"#,
    );
    let p = load(d, &["docker-compose.yml"]).unwrap();
    let root = std::fs::canonicalize(d).unwrap();
    for name in ["app", "worker"] {
        let spec = crate::desired::desired(&p, name, "example/web:1").unwrap();
        assert!(spec.environment.contains(&"A=base".to_owned()), "{name}");
        assert!(spec.environment.contains(&"B=app".to_owned()), "{name}");
        let bind = format!("{}/common/data", root.display());
        assert!(
            matches!(&spec.volumes[0], crate::desired::Volume::Bind { source, .. } if *source == bind),
            "{name}: {:?}",
            spec.volumes
        );
    }
    write(
        d,
        "loop.yml",
        "services:\n  a:\n    image: x\n    extends: b\n  b:\n    image: x\n    extends: a\n",
    );
    let e = err(d, &["loop.yml"]);
    assert!(e.contains("loop.yml:4") && e.contains("a → b → a"), "{e}");
    write(
        d,
        "missing.yml",
        "services:\n  a:\n    image: x\n    extends: {service: nope}\n",
    );
    let e = err(d, &["missing.yml"]);
    assert!(
        e.contains("missing.yml:4") && e.contains("no service `nope`"),
        "{e}"
    );
}

/// `include`: the included file's services join the model with its own
/// relative paths and `.env`; one the including file also defines is
/// refused, as compose refuses it.
#[test]
fn include_adds_another_projects_services() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "infra/.env", "CACHE_TAG=7-alpine\n");
    write(
        d,
        "infra/compose.yaml",
        "services:\n  cache:\n    image: redis:${CACHE_TAG}\n    volumes: [\"./redis.conf:/etc/redis.conf:ro\"]\n",
    );
    write(
        d,
        "compose.yaml",
        "include:\n  - infra/compose.yaml\nservices:\n  app:\n    image: example/app:1\n",
    );
    let p = load(d, &["compose.yaml"]).unwrap();
    assert_eq!(p.service_names(), "cache, app");
    assert_eq!(p.files.len(), 1);
    let cache = crate::desired::desired(&p, "cache", "redis:7-alpine").unwrap();
    let root = std::fs::canonicalize(d).unwrap();
    let bind = format!("{}/infra/redis.conf", root.display());
    assert!(
        matches!(&cache.volumes[0], crate::desired::Volume::Bind { source, .. } if *source == bind),
        "{:?}",
        cache.volumes
    );
    assert_eq!(
        p.service("cache").unwrap().image.as_deref(),
        Some("redis:7-alpine")
    );
    write(
        d,
        "conflict.yaml",
        "include:\n  - infra/compose.yaml\nservices:\n  cache:\n    image: redis:6\n",
    );
    let e = err(d, &["conflict.yaml"]);
    assert!(
        e.contains("conflict.yaml:4") && e.contains("also defined by the included"),
        "{e}"
    );
}

/// Secrets and configs from files: bound read-only where compose v2 mounts
/// them (`/run/secrets/<name>`, `/<name>`, or the `target`), a volume on
/// the same path winning; other sources refused at their own line.
#[test]
fn secrets_and_configs_from_files_are_bound_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "secrets/db.txt", "pw\n");
    write(d, "app.conf", "x=1\n");
    write(
        d,
        "docker-compose.yml",
        r#"
services:
  api:
    image: x
    secrets:
      - db
      - source: db
        target: db_copy
      - source: db
        target: /etc/api/db
    configs:
      - app
      - source: app
        target: /srv/data
    volumes: ["./data:/srv/data"]
secrets:
  db:
    file: ./secrets/db.txt
configs:
  app:
    file: app.conf
"#,
    );
    let p = load(d, &["docker-compose.yml"]).unwrap();
    let spec = crate::desired::desired(&p, "api", "x").unwrap();
    let root = std::fs::canonicalize(d).unwrap().display().to_string();
    let mounts: Vec<(String, String, bool)> = spec
        .volumes
        .iter()
        .filter_map(|v| match v {
            crate::desired::Volume::Mount(m) => {
                Some((m.source.clone().unwrap(), m.target.clone(), m.read_only))
            }
            _ => None,
        })
        .collect();
    let db = format!("{root}/secrets/db.txt");
    let app = format!("{root}/app.conf");
    assert_eq!(
        mounts,
        [
            (db.clone(), "/run/secrets/db".to_owned(), true),
            (db.clone(), "/run/secrets/db_copy".to_owned(), true),
            (db, "/etc/api/db".to_owned(), true),
            (app, "/app".to_owned(), true),
        ]
    );
    write(
        d,
        "external.yml",
        "services:\n  api:\n    image: x\n    secrets: [token]\nsecrets:\n  token:\n    external: true\n",
    );
    let e = err(d, &["external.yml"]);
    assert!(
        e.contains("external.yml:7") && e.contains("`external`") && e.contains("`file:`"),
        "{e}"
    );
    write(
        d,
        "undeclared.yml",
        "services:\n  api:\n    image: x\n    secrets: [nope]\n",
    );
    let p = load(d, &["undeclared.yml"]).unwrap();
    let e = format!("{:#}", crate::desired::desired(&p, "api", "x").unwrap_err());
    assert!(
        e.contains("`nope` is not declared in the top-level `secrets:`"),
        "{e}"
    );
}

/// `.env` values expand `${VAR}` as compose v2 expands them: the shell
/// first, then the file's earlier lines; single quotes keep text as it is,
/// and a `$` that does not interpolate stays as written.
#[test]
fn dotenv_values_expand_as_compose_v2_expands_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        ".env",
        "TAG=2.1\nDOUBLE=\"v${TAG}\"\nPLAIN=v$TAG # note\nSINGLE='v${TAG}'\nPASSWORD=abc$\nODD=x$1y\nDEFAULT=${SLIPWAY_TEST_NOPE:-d}\n",
    );
    write(
        dir.path(),
        "docker-compose.yml",
        "services:\n  a:\n    image: x\n    environment: [DOUBLE, PLAIN, SINGLE, PASSWORD, ODD, DEFAULT]\n",
    );
    let p = load(dir.path(), &["docker-compose.yml"]).unwrap();
    let env = &p.service("a").unwrap().environment;
    let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        got,
        [
            ("DOUBLE", "v2.1"),
            ("PLAIN", "v2.1"),
            ("SINGLE", "v${TAG}"),
            ("PASSWORD", "abc$"),
            ("ODD", "x$1y"),
            ("DEFAULT", "d"),
        ]
    );
}

/// Secrets and configs from a value (`environment:` or `content:`): copied
/// in before start where compose v2 copies them, 0444 and root's unless the
/// service says otherwise; the spec holds each value's digest and never the
/// value, and a changed value changes the spec.
#[test]
fn secrets_and_configs_from_values_are_copied_in_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, ".env", "SLIPWAY_TEST_TOKEN=s3cr3t-from-dotenv\n");
    let file = |banner: &str| {
        format!(
            r#"
services:
  api:
    image: x
    secrets:
      - token
      - source: token
        target: token_copy
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - banner
      - source: banner
        target: /etc/banner
        mode: 288
secrets:
  token:
    environment: SLIPWAY_TEST_TOKEN
configs:
  banner:
    content: "{banner} ${{SLIPWAY_TEST_TOKEN}}"
"#
        )
    };
    write(d, "docker-compose.yml", &file("hello"));
    let p = load(d, &["docker-compose.yml"]).unwrap();
    let spec = crate::desired::desired(&p, "api", "x").unwrap();
    let copied: Vec<(&str, u32, u64, u64, Option<&str>)> = spec
        .copied
        .iter()
        .map(|c| (c.target.as_str(), c.mode, c.uid, c.gid, c.value.as_deref()))
        .collect();
    let token = Some("s3cr3t-from-dotenv");
    let banner = Some("hello s3cr3t-from-dotenv");
    assert_eq!(
        copied,
        [
            ("/run/secrets/token", 0o444, 0, 0, token),
            ("/run/secrets/token_copy", 0o400, 1000, 1001, token),
            ("/banner", 0o444, 0, 0, banner),
            ("/etc/banner", 288, 0, 0, banner),
        ]
    );
    assert!(spec.volumes.is_empty(), "{:?}", spec.volumes);
    let stored = serde_json::to_string(&spec).unwrap();
    assert!(!stored.contains("s3cr3t"), "{stored}");
    assert!(!format!("{spec:?}").contains("s3cr3t"));
    let back: crate::desired::ContainerSpec = serde_json::from_str(&stored).unwrap();
    assert!(back.copied.iter().all(|c| c.value.is_none()));

    // A changed value changes the spec; a rollback to the old one finds
    // its value only while the project still has it.
    write(d, "docker-compose.yml", &file("goodbye"));
    let p = load(d, &["docker-compose.yml"]).unwrap();
    let changed = crate::desired::desired(&p, "api", "x").unwrap();
    assert_ne!(changed.hash(), spec.hash());
    let mut old = back.clone();
    let e = old.take_values_from(&changed).unwrap_err();
    assert!(
        e.contains("/banner") && e.contains("keeps no secret"),
        "{e}"
    );
    let mut old = back;
    old.take_values_from(&spec).unwrap();
    assert_eq!(old.copied, spec.copied);

    // An unset variable fails only a service that uses it, as at compose
    // v2's `up`, naming the line that reads it.
    write(
        d,
        "unset.yml",
        "services:\n  api:\n    image: x\n    secrets: [t]\n  other:\n    image: x\n\
         secrets:\n  t:\n    environment: SLIPWAY_TEST_UNSET_VAR\n",
    );
    let p = load(d, &["unset.yml"]).unwrap();
    crate::desired::desired(&p, "other", "x").unwrap();
    let e = format!("{:#}", crate::desired::desired(&p, "api", "x").unwrap_err());
    assert!(
        e.contains("unset.yml:9)")
            && e.contains("`SLIPWAY_TEST_UNSET_VAR`")
            && e.contains("not set"),
        "{e}"
    );
    // compose v2 has `content:` for configs only.
    write(
        d,
        "content.yml",
        "services:\n  api:\n    image: x\nsecrets:\n  t:\n    content: x\n",
    );
    let e = err(d, &["content.yml"]);
    assert!(
        e.contains("content.yml:6:") && e.contains("`content`") && e.contains("config only"),
        "{e}"
    );
    // A read-only service cannot take a copied value, as in compose v2.
    write(
        d,
        "ro.yml",
        "services:\n  api:\n    image: x\n    read_only: true\n    configs: [c]\nconfigs:\n  c:\n    content: x\n",
    );
    let p = load(d, &["ro.yml"]).unwrap();
    let e = format!("{:#}", crate::desired::desired(&p, "api", "x").unwrap_err());
    assert!(e.contains("read_only") && e.contains("`file:`"), "{e}");
}

/// `platform` reaches the create request and the build; `pull_policy`
/// reads every policy compose v2 knows, and refuses others by name.
#[test]
fn platform_and_pull_policy_are_read_as_compose_v2_reads_them() {
    use crate::compose::PullPolicy;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let day = std::time::Duration::from_secs(24 * 3600);
    let cases = [
        ("always", PullPolicy::Always),
        ("missing", PullPolicy::Missing),
        ("if_not_present", PullPolicy::Missing),
        ("never", PullPolicy::Never),
        ("daily", PullPolicy::Refresh(day)),
        ("weekly", PullPolicy::Refresh(7 * day)),
        ("every_12h", PullPolicy::Refresh(day / 2)),
    ];
    for (text, want) in cases {
        write(
            d,
            "p.yml",
            &format!(
                "services:\n  api:\n    image: x\n    platform: linux/amd64\n    pull_policy: {text}\n"
            ),
        );
        let p = load(d, &["p.yml"]).unwrap();
        assert_eq!(p.services["api"].extra.pull_policy, want, "{text}");
        let spec = crate::desired::desired(&p, "api", "x").unwrap();
        assert_eq!(spec.platform.as_deref(), Some("linux/amd64"));
    }
    write(
        d,
        "b.yml",
        "services:\n  api:\n    build: .\n    platform: linux/amd64\n    pull_policy: build\n",
    );
    let p = load(d, &["b.yml"]).unwrap();
    let build = p.services["api"].build.as_ref().unwrap();
    assert_eq!(build.platform.as_deref(), Some("linux/amd64"));
    for (text, needle) in [
        ("sometimes", "`sometimes` is not a policy"),
        ("every_", "`every_` is not a policy"),
        ("build", "needs a `build:` section"),
    ] {
        write(
            d,
            "bad.yml",
            &format!("services:\n  api:\n    image: x\n    pull_policy: {text}\n"),
        );
        let e = err(d, &["bad.yml"]);
        assert!(
            e.contains("bad.yml:2:") && e.contains(needle),
            "{text}: {e}"
        );
    }
}
