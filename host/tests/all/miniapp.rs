//! Rule 5 in a real headless Chromium, against the example's Mini App served
//! by a real nginx from the released directory: every user sees a deploy
//! exactly once, and the seed's two failures are reproduced.

use crate::browser::{Chromium, after, close, wait_for};
use crate::harness::{Stack, http_get, json, repo_root, sh, text};
use std::time::{Duration, Instant};

/// Make miniapp/dist release `version` (the example ships "v1").
pub(crate) fn set_release(stack: &Stack, version: &str) {
    for file in ["index.html", "app.js"] {
        let original = std::fs::read_to_string(
            repo_root()
                .join("host/tests/fixtures/stack/miniapp/dist")
                .join(file),
        )
        .unwrap();
        let path = stack.path().join("miniapp/dist").join(file);
        std::fs::write(path, original.replace("v1", version)).unwrap();
    }
}

/// The seed's listener (decision D217): its guard swallows the first
/// `controllerchange` of every page load.
fn use_seed_listener(stack: &Stack, version: &str) {
    let app = format!(
        r#"const BUNDLE = "{version}";
window.BUNDLE = BUNDLE;
sessionStorage.setItem("loads", String(Number(sessionStorage.getItem("loads") || 0) + 1));
if ("serviceWorker" in navigator) {{ let firstInstall = true; navigator.serviceWorker.addEventListener("controllerchange", () => {{ if (firstInstall) {{ firstInstall = false; return; }} window.location.reload(); }});}}
navigator.serviceWorker.register("/sw.js").then((reg) => setInterval(() => reg.update(), 1000));
"#
    );
    std::fs::write(stack.path().join("miniapp/dist/app.js"), app).unwrap();
}

/// Point the miniapp surface at another plugin (and its config).
fn use_step(stack: &Stack, plugin: &str, config: &str) {
    let path = stack.path().join("slipway.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let start = manifest.find("[[surface.miniapp.step]]").unwrap();
    let (head, _) = manifest.split_at(start);
    let grants = manifest[start..]
        .lines()
        .find(|l| l.starts_with("grants"))
        .unwrap()
        .to_owned();
    let step =
        format!("[[surface.miniapp.step]]\nplugin = \"{plugin}\"\nconfig = {config}\n{grants}\n");
    std::fs::write(path, format!("{head}{step}")).unwrap();
}

/// `slipway deploy miniapp`; the stamp it published.
fn deploy(stack: &Stack) -> String {
    let out = stack.slipway(&["deploy", "miniapp", "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = json(&out);
    let outputs = &report["surfaces"][0]["steps"][0]["outputs"];
    outputs["sw_stamp"].as_str().unwrap_or("").to_owned()
}

fn app_url(stack: &Stack) -> String {
    format!("http://127.0.0.1:{}/", stack.app_port)
}

fn v(s: &str) -> Option<String> {
    Some(s.to_owned())
}

const QUIET: Duration = Duration::from_secs(2);

/// PIDs of the nginx workers in the stack's nginx container.
fn nginx_workers(stack: &Stack) -> Vec<String> {
    let ps = sh(
        &format!("docker exec {} ps -o pid,args", stack.container("nginx")),
        stack.path(),
        &[],
    );
    ps.lines()
        .filter(|l| l.contains("nginx: worker process"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `nginx -s reload`, then wait until every worker from before it is gone,
/// as the plugins do (`slipway_sdk::nginx::reload_gracefully`): the command
/// returns before the master acts on it, and until an old worker exits it
/// may still answer by the old config.
fn reload_nginx(stack: &Stack) {
    let old = nginx_workers(stack);
    assert!(!old.is_empty(), "nginx runs no workers");
    sh(
        &format!("docker exec {} nginx -s reload", stack.container("nginx")),
        stack.path(),
        &[],
    );
    let start = Instant::now();
    loop {
        let alive = nginx_workers(stack);
        if !old.iter().any(|pid| alive.contains(pid)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nginx's old workers {old:?} still run 30 s after `nginx -s reload` (workers now: \
             {alive:?}); is the new nginx.conf valid?"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn first_time_returning_and_open_tab_users_each_see_a_deploy_once() {
    let stack = Stack::up();
    let url = app_url(&stack);
    set_release(&stack, "v1");
    let s1 = deploy(&stack);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let chromium = Chromium::launch().await;

        // A first-time visitor sees v1 and is not reloaded when the worker
        // installs and takes control.
        let tab = chromium.open(&url).await;
        let cache1 = vec![format!("honeychat-{s1}")];
        let seen = wait_for(&tab, "the first visit is controlled", |t| {
            t.controlled && t.caches == cache1
        })
        .await;
        assert_eq!((seen.html, seen.js), (v("v1"), v("v1")));
        assert_eq!(
            after(&tab, QUIET).await.loads,
            1,
            "a first visit was reloaded"
        );
        close(tab).await;

        // A returning visitor opens the app after a deploy: the old worker
        // answers with v1, the new one takes over, one reload shows v2.
        set_release(&stack, "v2");
        let s2 = deploy(&stack);
        assert_ne!(s1, s2, "a new bundle must change the stamp");
        let tab = chromium.open(&url).await;
        let seen = wait_for(&tab, "the returning visitor sees v2", |t| {
            t.html == v("v2") && t.js == v("v2")
        })
        .await;
        assert_eq!(seen.loads, 2, "expected exactly one reload");
        let quiet = after(&tab, QUIET).await;
        assert_eq!(quiet.loads, 2, "reload loop: {quiet:?}");
        assert_eq!(quiet.caches, vec![format!("honeychat-{s2}")]);

        // The same tab, left open: the next deploy reloads it once more.
        set_release(&stack, "v3");
        let s3 = deploy(&stack);
        let seen = wait_for(&tab, "the open tab sees v3", |t| {
            t.html == v("v3") && t.js == v("v3")
        })
        .await;
        assert_eq!(seen.loads, 3, "expected exactly one more reload");
        assert_eq!(after(&tab, QUIET).await.loads, 3, "reload loop");

        // Deploying the same bundle again keeps the stamp: nobody reloads.
        assert_eq!(deploy(&stack), s3);
        let quiet = after(&tab, QUIET).await;
        assert_eq!((quiet.loads, quiet.html), (3, v("v3")));
        chromium.close().await;
    });
}

#[test]
fn without_the_stamp_or_with_the_seed_guard_a_returning_visitor_stays_on_the_old_bundle() {
    let stack = Stack::up();
    let url = app_url(&stack);
    let rt = tokio::runtime::Runtime::new().unwrap();

    // The same atomic switch without stamping: sw.js keeps its bytes.
    use_step(&stack, "astro", "{}");
    set_release(&stack, "v1");
    deploy(&stack);
    rt.block_on(async {
        let chromium = Chromium::launch().await;
        let tab = chromium.open(&url).await;
        wait_for(&tab, "the first visit is controlled", |t| t.controlled).await;
        close(tab).await;

        set_release(&stack, "v2");
        deploy(&stack);
        let (_, served) = http_get(stack.app_port, "/index.html");
        assert!(
            served.contains("data-version=\"v2\""),
            "nginx serves: {served}"
        );
        let tab = chromium.open(&url).await;
        let stuck = after(&tab, Duration::from_secs(3)).await;
        assert_eq!(
            (stuck.html, stuck.js, stuck.loads),
            (v("v1"), v("v1"), 1),
            "without a stamp the returning visitor should stay on v1"
        );
        chromium.close().await;
    });

    // Stamped, but with the seed's guard: the worker updates, the page that
    // was controlled at load swallows the reload.
    use_step(&stack, "miniapp-sw", "{ url = \"http://nginx:8082/\" }");
    set_release(&stack, "v3");
    use_seed_listener(&stack, "v3");
    let out = stack.slipway(&["deploy", "miniapp"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("guard skips the first event"),
        "{}",
        text(&out)
    );
    rt.block_on(async {
        let chromium = Chromium::launch().await;
        let tab = chromium.open(&url).await;
        wait_for(&tab, "the first visit is controlled", |t| t.controlled).await;
        close(tab).await;
        let tab = chromium.open(&url).await;
        wait_for(&tab, "the returning visitor is controlled", |t| {
            t.controlled
        })
        .await;

        set_release(&stack, "v4");
        use_seed_listener(&stack, "v4");
        let s4 = deploy(&stack);
        let cache4 = vec![format!("honeychat-{s4}")];
        wait_for(&tab, "the v4 worker took over", |t| t.caches == cache4).await;
        let stuck = after(&tab, QUIET).await;
        assert_eq!(
            (stuck.html, stuck.js, stuck.loads),
            (v("v3"), v("v3"), 1),
            "the seed's guard should leave the controlled page on v3"
        );
        chromium.close().await;
    });
}

#[test]
fn stamping_changes_only_the_version_line_and_failures_name_their_fix() {
    let stack = Stack::up();
    let build_sw = std::fs::read_to_string(stack.path().join("miniapp/dist/sw.js")).unwrap();

    // No reload listener: refused before anything is published.
    std::fs::write(
        stack.path().join("miniapp/dist/app.js"),
        "window.BUNDLE = 'v1';\n",
    )
    .unwrap();
    let out = stack.slipway(&["deploy", "miniapp"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no `controllerchange` listener"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("if (!hadController) { hadController = true; return; }"),
        "the error should carry the correct snippet: {}",
        text(&out)
    );
    assert!(!stack.path().join("frontend/miniapp/current").exists());

    // Strict: the seed's guard and `updateViaCache: 'all'` fail the deploy.
    use_step(
        &stack,
        "miniapp-sw",
        "{ url = \"http://nginx:8082/\", strict = true }",
    );
    use_seed_listener(&stack, "v1");
    let app = stack.path().join("miniapp/dist/app.js");
    let seed = std::fs::read_to_string(&app).unwrap();
    std::fs::write(
        &app,
        seed.replace(
            "register(\"/sw.js\")",
            "register(\"/sw.js\", { updateViaCache: 'all' })",
        ),
    )
    .unwrap();
    let out = stack.slipway(&["deploy", "miniapp"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("guard skips the first event"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("updateViaCache: 'all'"),
        "{}",
        text(&out)
    );
    assert!(!stack.path().join("frontend/miniapp/current").exists());

    // The correct listener passes; sw.js differs from the build only in its
    // stamp. The step reloads nginx after the switch (granted exactly the
    // commands it declares) and waits for the old workers before `verify`
    // checks the headers.
    use_step(
        &stack,
        "miniapp-sw",
        "{ url = \"http://nginx:8082/\", nginx = \"nginx\" }",
    );
    stack.edit_manifest(
        "probe = [\"nginx:8082\"] }",
        "probe = [\"nginx:8082\"], docker = [{ service = \"nginx\", exec = [[\"nginx\", \"-t\"], [\"nginx\", \"-s\", \"reload\"], [\"ps\", \"-o\", \"pid,args\"]] }] }",
    );
    set_release(&stack, "v1");
    let workers = nginx_workers(&stack);
    let stamp = deploy(&stack);
    assert_eq!(stamp.len(), 16);
    let now = nginx_workers(&stack);
    assert!(
        !workers.iter().any(|pid| now.contains(pid)),
        "the deploy did not reload nginx and wait for its old workers: {workers:?} -> {now:?}"
    );
    let (status, served) = http_get(stack.app_port, "/sw.js");
    assert_eq!(status, 200);
    assert_eq!(served.replace(&stamp, "dev"), build_sw);
    assert!(served.contains(&format!("const SW_VERSION = \"{stamp}\";")));
    assert_eq!(deploy(&stack), stamp, "the same bundle must keep its stamp");

    // sw.js cached for a day: reported with the nginx fix, v1 stays live.
    let conf = stack.path().join("nginx/nginx.conf");
    let cached = std::fs::read_to_string(&conf).unwrap().replacen(
        "add_header Cache-Control \"no-cache\";",
        "add_header Cache-Control \"max-age=86400\";",
        1,
    );
    std::fs::write(&conf, cached).unwrap();
    let nginx = stack.container("nginx");
    sh(
        &format!("docker cp nginx/nginx.conf {nginx}:/etc/nginx/nginx.conf"),
        stack.path(),
        &[],
    );
    reload_nginx(&stack);
    let headers = sh(
        &format!("curl -sI http://127.0.0.1:{}/sw.js", stack.app_port),
        stack.path(),
        &[],
    );
    assert!(headers.contains("max-age=86400"), "{headers}");
    set_release(&stack, "v2");
    let out = stack.slipway(&["deploy", "miniapp"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Cache-Control: max-age=86400"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("location = /sw.js {\n    add_header Cache-Control \"no-cache\";\n}"),
        "{}",
        text(&out)
    );
    let (_, page) = http_get(stack.app_port, "/index.html");
    assert!(page.contains("data-version=\"v1\""), "{page}");
}
