//! Rule 4 across the nodes of a swarm: the astro step publishes a release
//! in this machine's directory, and `site_image` ships it as an image of the
//! `website` service, whose 3 tasks (nginx serving /srv/site) Swarm rolls
//! start-first. The stack's own nginx, on the manager, balances over the
//! tasks' addresses (`dnsrr`), so a page and the stylesheet it names are
//! served by different tasks, old and new, all through the update.

use crate::astro::generate;
use crate::harness::{free_port, json, sh, slipway, text, unique};
use crate::swarm::{MANAGER, NODES, REGISTRY, RemovedStack, SWARM};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const COMPOSE: &str = r#"version: "3.8"
services:
  website:
    build: ./server
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 1s
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      update_config: {parallelism: 1, order: start-first, delay: 1s, monitor: 2s, failure_action: rollback}
  nginx:
    image: slipway-test/nginx:latest
    command: ["nginx"]
    volumes: ["./front.conf:/etc/nginx/nginx.conf:ro"]
    ports:
      - target: 80
        published: ${FRONT_PORT}
        mode: host
    deploy:
      placement: {constraints: [node.role == manager]}
"#;

/// The site's server, the user's: nginx with its own config, serving the
/// release from ROOT with LOCATIONS.
const SERVER_CONF: &str = "daemon off; worker_processes 1; pid /run/nginx.pid; error_log /dev/stderr;\n\
events {}\n\
http { include /etc/nginx/mime.types; access_log off;\n\
  server { listen 80; root ROOT; index index.html;\n\
    location = /health { return 200 \"ok\\n\"; } LOCATIONS } }\n";

/// The front door: one `location`, `website` resolved at start and reload,
/// and a connect timeout short enough to try the next task when one has
/// stopped before nginx forgot its address (docs/swarm.md: this manager's
/// DNS can lag past the 2 s Swarm waits; with nginx's default 60 s, such a
/// request hangs).
const FRONT_CONF: &str = "daemon off; pid /run/nginx.pid; events {}\n\
http { access_log off; server { listen 80;\n\
  location / { proxy_pass http://website:80; proxy_connect_timeout 1s; } } }\n";

const PAGES: usize = 50;

struct SiteStack {
    _removed: RemovedStack,
    dir: tempfile::TempDir,
    name: String,
    front: SocketAddr,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// A site served by the `website` service: its server's `locations`, the
/// publishing step (`step`, given the front door's `host:port`) with its
/// plugin, and more of `site_image` (`extra`).
struct Site<'a> {
    root: &'a str,
    locations: &'a str,
    plugin: &'a str,
    step: &'a dyn Fn(&str) -> String,
    extra: &'a str,
}

impl SiteStack {
    fn new(site: &Site) -> SiteStack {
        let turn = SWARM.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let name = unique("site");
        let port = free_port();
        let at = |p: &str| dir.path().join(p);
        std::fs::create_dir_all(at("server")).unwrap();
        std::fs::create_dir_all(at("release")).unwrap();
        std::fs::write(
            at("server/Dockerfile"),
            "FROM slipway-test/nginx:latest\nCOPY nginx.conf /etc/nginx/nginx.conf\nCMD [\"nginx\"]\n",
        )
        .unwrap();
        let server = SERVER_CONF
            .replace("ROOT", site.root)
            .replace("LOCATIONS", site.locations);
        std::fs::write(at("server/nginx.conf"), server).unwrap();
        std::fs::write(at("front.conf"), FRONT_CONF).unwrap();
        std::fs::write(at("docker-compose.yml"), COMPOSE).unwrap();
        std::fs::write(at(".env"), format!("FRONT_PORT={port}\n")).unwrap();
        let plugin = |p: &str| {
            slipway_fixtures::plugins_dir()
                .join(p)
                .display()
                .to_string()
        };
        let front = format!("{}:{port}", NODES[0]);
        let manifest = format!(
            r#"[project]
name = "{name}"
engine = "swarm"
registry = "{REGISTRY}"

[plugins.publish]
path = "{publish}"
[plugins.nginx]
path = "{nginx}"

[surface.site]
services = ["website"]
ready_timeout_secs = 120
site_image = {{ service = "website", site = "release", path = "{root}"{extra} }}

[[surface.site.step]]
plugin = "publish"
{step}grants = {{ fs = [{{ host = "dist", guest = "/build", mode = "ro" }}, {{ host = "release", guest = "/site", mode = "rw" }}], probe = ["{front}"] }}

[[surface.site.step]]
plugin = "nginx"
config = {{ service = "nginx" }}
grants = {{ docker = [{{ service = "nginx", exec = [["nginx", "-t"], ["nginx", "-T"], ["nginx", "-s", "reload"], ["ps", "-o", "pid,args"]] }}, "website"] }}
"#,
            publish = plugin(site.plugin),
            nginx = plugin("nginx-reload.wasm"),
            root = site.root,
            extra = site.extra,
            step = (site.step)(&front),
        );
        std::fs::write(at("slipway.toml"), manifest).unwrap();
        SiteStack {
            _removed: RemovedStack(name.clone()),
            front: front.parse().unwrap(),
            dir,
            name,
            _turn: turn,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn build(&self, version: u32) {
        generate(&self.path().join("dist"), version, PAGES, 2);
    }

    fn slipway(&self, args: &[&str]) -> std::process::Output {
        slipway(self.path(), args, &[("DOCKER_HOST", MANAGER)])
    }

    fn deploy_ok(&self, what: &str) -> serde_json::Value {
        let out = self.slipway(&["deploy", "site", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{what} deploy:\n{}", text(&out));
        json(&out)
    }

    fn docker(&self, cmd: &str) -> String {
        sh(cmd, self.path(), &[("DOCKER_HOST", MANAGER)])
    }

    /// The website service's spec image and the images and nodes of the
    /// tasks Swarm wants running.
    fn website(&self) -> (String, Vec<(String, String)>) {
        let service = format!("{}_website", self.name);
        let spec = self.docker(&format!(
            "docker service inspect {service} --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}'"
        ));
        let tasks = self.docker(&format!(
            "docker service ps {service} --filter desired-state=running --format '{{{{.ID}}}}' | xargs -r docker inspect --format '{{{{.NodeID}}}} {{{{.Spec.ContainerSpec.Image}}}}'"
        ));
        let tasks = tasks
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(node, image)| (node.to_owned(), image.to_owned()))
            .collect();
        (spec.trim().to_owned(), tasks)
    }

    /// The live release of the site directory, as `current` names it.
    fn live(&self) -> String {
        let target = std::fs::read_link(self.path().join("release/current")).unwrap();
        target
            .to_string_lossy()
            .trim_start_matches("releases/")
            .to_owned()
    }

    /// The tags of the website images the manager committed.
    fn site_tags(&self) -> String {
        self.docker(&format!(
            "docker image ls {REGISTRY}/{}/website --format '{{{{.Tag}}}}'",
            self.name
        ))
    }
}

/// Every task Swarm wants runs the spec's image, which ships `release`, on
/// at least two nodes; returns the image.
fn assert_ships(stack: &SiteStack, release: &str) -> String {
    let (spec, tasks) = stack.website();
    assert!(
        spec.contains(&format!(":site-{release}-on-")) && spec.contains("@sha256:"),
        "{spec}"
    );
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert!(
        tasks.iter().all(|(_, image)| *image == spec),
        "{spec}: {tasks:?}"
    );
    let nodes: BTreeSet<&String> = tasks.iter().map(|(node, _)| node).collect();
    assert!(
        nodes.len() >= 2,
        "the tasks spread over the nodes: {tasks:?}"
    );
    spec
}

/// A GET through the front door: status and body.
fn get(front: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect_timeout(&front, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: site\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {response:?}"))?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Ok((status, body.unwrap_or_default()))
}

/// What readers saw: reads that succeeded, the builds they were from, and
/// every read that failed.
#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    /// Reads that took over a second: a request nginx sent to a stopped
    /// task first, then to the next one after `proxy_connect_timeout`.
    slow: u64,
    builds: BTreeSet<String>,
    failed: u64,
    first_failures: Vec<String>,
}

impl Seen {
    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.first_failures.len() < 5 {
            self.first_failures.push(what);
        }
    }
}

/// One read, the `n`th of a reader, through the front door.
type OneRead = dyn Fn(SocketAddr, usize, &mut Seen) + Send + Sync;

/// Four readers at about 100 requests a second, each read two requests.
struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Seen>>,
}

impl Readers {
    fn start(front: SocketAddr, read: Arc<OneRead>) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..4)
            .map(|t| {
                let (stop, read) = (stop.clone(), read.clone());
                std::thread::spawn(move || {
                    let mut seen = Seen::default();
                    // 2 requests per 80 ms, 4 readers: 100 requests a second.
                    let period = Duration::from_millis(80);
                    let mut n = t;
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        n += 7;
                        read(front, n, &mut seen);
                        if start.elapsed() > Duration::from_secs(1) {
                            seen.slow += 1;
                        }
                        if let Some(rest) = period.checked_sub(start.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                    seen
                })
            })
            .collect();
        Readers { stop, threads }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for thread in self.threads {
            let seen = thread.join().unwrap();
            all.reads += seen.reads;
            all.slow += seen.slow;
            all.failed += seen.failed;
            all.builds.extend(seen.builds);
            all.first_failures.extend(seen.first_failures);
        }
        all.first_failures.truncate(5);
        all
    }
}

/// A page, then the stylesheet it names, as a browser reads them.
fn read_page(front: SocketAddr, n: usize, seen: &mut Seen) {
    let page = format!("/en/page-{}.html", n % PAGES);
    let body = match get(front, &page) {
        Ok((200, body)) => body,
        Ok((status, _)) => return seen.fail(format!("{page}: {status}")),
        Err(e) => return seen.fail(format!("{page}: {e}")),
    };
    let css = body
        .split("href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    if let Some(build) = css.strip_prefix("/_astro/app.") {
        seen.builds
            .insert(build.trim_end_matches(".css").to_owned());
    }
    match get(front, &css) {
        Ok((200, _)) => seen.reads += 1,
        Ok((status, _)) => seen.fail(format!("{css} (named by {page}): {status}")),
        Err(e) => seen.fail(format!("{css}: {e}")),
    }
}

/// Poll the front door until `page` answers with build `version`.
fn wait_for_build(front: SocketAddr, version: u32) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(90) {
        match get(front, "/en/page-0.html") {
            Ok((200, body)) if body.contains(&format!("data-build=\"v{version}\"")) => return,
            Ok((status, body)) => last = format!("{status} {body}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the front door never served build v{version}: {last}");
}

/// A new release reaches every task, in two updates: the stage (the served
/// pages with the new files next to them), then the release. Under 100
/// req/s through the stack's nginx, no page names a stylesheet that the
/// task asked for it lacks, and no request fails. A rerun ships nothing;
/// `rollback` puts the previous release back on every task.
#[test]
fn a_static_release_ships_to_every_node_as_an_image_and_no_page_misses_its_assets() {
    let stack = SiteStack::new(&Site {
        root: "/srv/site",
        locations: "",
        plugin: "astro.wasm",
        step: &|front| {
            format!(
                "config = {{ keep = 5, verify = [{{ url = \"http://{front}/en/page-0.html\", file = \"en/page-0.html\" }}] }}\n"
            )
        },
        extra: "",
    });
    stack.build(1);
    stack.deploy_ok("v1");
    let v1 = stack.live();
    let first = assert_ships(&stack, &v1);
    wait_for_build(stack.front, 1);

    stack.build(2);
    let readers = Readers::start(stack.front, Arc::new(read_page));
    let report = stack.deploy_ok("v2");
    std::thread::sleep(Duration::from_secs(2));
    let seen = readers.stop();
    eprintln!("a static release rolling over 3 tasks under load: {seen:?}");
    let v2 = stack.live();
    assert_ne!(v1, v2);
    let second = assert_ships(&stack, &v2);
    assert_ne!(first, second);
    assert_eq!(seen.failed, 0, "{seen:?}");
    assert!(seen.reads > 100, "{seen:?}");
    assert!(seen.builds.contains("v2"), "{seen:?}");
    // The stage shipped first: v1's pages with v2's new files next to them.
    let tags = stack.site_tags();
    assert!(
        tags.lines()
            .any(|t| t.starts_with(&format!("site-{v2}-over-{v1}-on-"))),
        "{tags}"
    );
    let website = &report["surfaces"][0]["services"][0];
    assert_eq!(website["action"], "replace", "{report}");
    // The release carries v1's stylesheet for pages still open.
    let (status, _) = get(stack.front, "/_astro/app.v1.css").unwrap();
    assert_eq!(status, 200);

    // Nothing changed: nothing ships, the service keeps its tasks.
    let report = stack.deploy_ok("rerun");
    assert_eq!(
        report["surfaces"][0]["services"][0]["action"], "skip",
        "{report}"
    );
    assert_eq!(stack.website().0, second);

    let out = stack.slipway(&["rollback", "site", "--json"]);
    assert_eq!(out.status.code(), Some(0), "rollback:\n{}", text(&out));
    assert_eq!(stack.live(), v1);
    assert_eq!(assert_ships(&stack, &v1), first);
    wait_for_build(stack.front, 1);
}

/// The Mini App's server: sw.js and the page are never cached.
const MINIAPP_LOCATIONS: &str = "location = /sw.js { add_header Cache-Control \"no-cache\"; }\n\
    location = /index.html { add_header Cache-Control \"no-cache\"; }";

/// The test stack's Mini App, its bundle at `version`, in `dist`.
fn miniapp_build(stack: &SiteStack, version: &str) {
    let dist = stack.path().join("dist");
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&dist).unwrap();
    let example = crate::harness::repo_root().join("host/tests/fixtures/stack/miniapp/dist");
    for entry in std::fs::read_dir(example).unwrap() {
        let path = entry.unwrap().path();
        let original = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap();
        std::fs::write(dist.join(name), original.replace("v1", version)).unwrap();
    }
}

/// `SW_VERSION` as sw.js carries it.
fn stamp_of(sw: &str) -> String {
    sw.lines()
        .find_map(|l| l.strip_prefix("const SW_VERSION = \""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Rule 5 across nodes. A browser that gets a new sw.js installs it at
/// once, and the install fetches `/` and `/app.js` from whichever task the
/// front door picks. So sw.js changes in an update of its own (`last`),
/// once every task serves the rest of the release: whenever a reader gets
/// the new worker, the files it would cache are the new bundle's.
#[test]
fn a_service_worker_ships_last_so_no_node_hands_it_the_old_bundle_to_cache() {
    let stack = SiteStack::new(&Site {
        root: "/srv/app",
        locations: MINIAPP_LOCATIONS,
        plugin: "miniapp-sw.wasm",
        step: &|front| format!("config = {{ url = \"http://{front}/\" }}\n"),
        extra: ", last = [\"sw.js\"]",
    });
    miniapp_build(&stack, "v1");
    stack.deploy_ok("v1");
    let (_, sw) = get(stack.front, "/sw.js").unwrap();
    let old = stamp_of(&sw);
    assert!(!old.is_empty() && old != "dev", "{sw}");

    miniapp_build(&stack, "v2");
    let old_worker = old.clone();
    let read = move |front: SocketAddr, _: usize, seen: &mut Seen| {
        let sw = match get(front, "/sw.js") {
            Ok((200, body)) => body,
            Ok((status, _)) => return seen.fail(format!("/sw.js: {status}")),
            Err(e) => return seen.fail(format!("/sw.js: {e}")),
        };
        let stamp = stamp_of(&sw);
        seen.builds.insert(stamp.clone());
        if stamp != old_worker {
            // What this worker's install caches, read as it reads it.
            for (path, new) in [("/", "data-version=\"v2\""), ("/app.js", "\"v2\"")] {
                match get(front, path) {
                    Ok((200, body)) if body.contains(new) => {}
                    Ok((status, _)) => {
                        return seen.fail(format!(
                            "worker {stamp} would cache {path} answered {status} without v2"
                        ));
                    }
                    Err(e) => return seen.fail(format!("{path}: {e}")),
                }
            }
        }
        seen.reads += 1;
    };
    let readers = Readers::start(stack.front, Arc::new(read));
    let report = stack.deploy_ok("v2");
    std::thread::sleep(Duration::from_secs(2));
    let seen = readers.stop();
    eprintln!("a service worker shipped last over 3 tasks under load: {seen:?}");
    assert_eq!(seen.failed, 0, "{seen:?}");
    assert!(seen.reads > 100, "{seen:?}");
    assert!(
        seen.builds.len() == 2 && seen.builds.contains(&old),
        "readers saw the old worker, then the new one: {seen:?}"
    );
    let live = stack.live();
    assert_ships(&stack, &live);
    let tags = stack.site_tags();
    assert!(
        tags.lines()
            .any(|t| t.contains(&format!("site-{live}-hold-"))),
        "the release but its sw.js shipped before sw.js: {tags}\n{report}"
    );
}

/// A release whose server never becomes healthy: Swarm rolls the update
/// back, the step puts `current` back, the deploy exits 1 saying what
/// serves, and every task still serves the old release.
#[test]
fn a_release_on_a_broken_server_is_rolled_back_and_the_old_release_serves() {
    let stack = SiteStack::new(&Site {
        root: "/srv/site",
        locations: "",
        plugin: "astro.wasm",
        step: &|_| "config = { keep = 5 }\n".to_owned(),
        extra: "",
    });
    stack.build(1);
    stack.deploy_ok("v1");
    let v1 = stack.live();
    let first = assert_ships(&stack, &v1);

    stack.build(2);
    // nginx starts, but the healthcheck's /health is gone.
    let conf = stack.path().join("server/nginx.conf");
    let broken = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("location = /health", "location = /gone");
    std::fs::write(&conf, broken).unwrap();
    let out = stack.slipway(&["deploy", "site", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let error = json(&out)["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("Swarm rolled it back") && error.contains("what serves is"),
        "{error}"
    );
    assert_eq!(stack.live(), v1, "the step put current back");
    assert_eq!(assert_ships(&stack, &v1), first);
    wait_for_build(stack.front, 1);
}
