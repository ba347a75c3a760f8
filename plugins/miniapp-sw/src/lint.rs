//! Static checks of the built client: a stamped service worker helps only if
//! the page reloads into it, and only if the browser looks for it.

use crate::toolchain::Toolchain;
use crate::workbox::{self, Takeover};
use regex::Regex;

/// The listener every page of the app should carry.
pub const SNIPPET: &str = r#"if ("serviceWorker" in navigator) {
  // A page with no controller at load is a first visit: its first
  // controllerchange is the install, not a deploy, so it must not reload.
  let hadController = !!navigator.serviceWorker.controller;
  let reloading = false;
  navigator.serviceWorker.addEventListener("controllerchange", () => {
    if (!hadController) { hadController = true; return; }
    if (reloading) return;
    reloading = true;
    window.location.reload();
  });
  navigator.serviceWorker.register("/sw.js").then((reg) => {
    // A tab left open learns about a deploy only when it checks.
    setInterval(() => reg.update(), 60 * 60 * 1000);
  });
}"#;

/// What a page that reloads on workbox-window's `activated` event needs
/// beside it (in its entry module): `controllerchange` also fires for a
/// worker the browser found before the page registered, which workbox-window
/// never sees; and a worker that took over before the script ran is caught by
/// asking it for the page, which then no longer loads this script.
pub const EARLY_WORKER_SNIPPET: &str = "if (navigator.serviceWorker?.controller) {
  const reload = () => { if (!reload.done) { reload.done = true; window.location.reload(); } };
  navigator.serviceWorker.addEventListener('controllerchange', reload);
  // A worker that took over before this script ran fired its controllerchange
  // unheard: reload, once, if the page it serves no longer loads this script.
  const script = new URL(import.meta.url).pathname;
  fetch(location.href).then((r) => r.text()).then((html) => {
    if (html.includes(script) || sessionStorage.getItem('stale-script') === script) return;
    sessionStorage.setItem('stale-script', script);
    reload();
  });
}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Always fails the step.
    Error,
    /// Fails the step when the manifest sets `strict = true`.
    Warning,
}

#[derive(Debug)]
pub struct Finding {
    pub level: Level,
    pub message: String,
}

/// Lint the client (`(path, text)` of the HTML and JS files) and the
/// service worker's text, knowing which toolchain wrote the worker.
pub fn lint(
    client: &[(String, String)],
    sw_name: &str,
    sw: &str,
    toolchain: Toolchain,
) -> Vec<Finding> {
    let mut findings = reload_findings(client, sw_name, sw, toolchain);
    findings.extend(via_cache_findings(client, sw_name));
    // Workbox precaches with its own revisioned requests, never the
    // default-mode `cache.addAll` this warns about.
    if !toolchain.is_workbox()
        && let Some(problem) = precache_problem(sw)
    {
        findings.push(Finding {
            level: Level::Warning,
            message: format!("{sw_name}: {problem}"),
        });
    }
    // Every message says which toolchain it judged the build as.
    for finding in &mut findings {
        finding.message = format!("{}: {}", toolchain.name(), finding.message);
    }
    findings
}

/// Something in the page must reload it into a new bundle: a workbox-window
/// listener that reloads on `isUpdate`, or a guarded `controllerchange`.
fn reload_findings(
    client: &[(String, String)],
    sw_name: &str,
    sw: &str,
    toolchain: Toolchain,
) -> Vec<Finding> {
    let listeners: Vec<Listener> = client
        .iter()
        .flat_map(|(path, text)| workbox_listeners(path, text))
        .collect();
    let reloads: Vec<&Listener> = listeners.iter().filter(|l| l.reloads_on_update()).collect();
    let hand: Vec<&(String, String)> = client
        .iter()
        .filter(|(path, text)| {
            text.contains("controllerchange")
                && !is_workbox_window(text)
                && !reloads.iter().any(|l| &l.path == path)
                // With a workbox-window reload elsewhere, a listener that does
                // not reload is someone's library, not the app's only hope.
                && (reloads.is_empty() || text.contains("location.reload"))
        })
        .collect();
    if reloads.is_empty() && hand.is_empty() {
        return vec![no_reload(client, sw_name, toolchain)];
    }
    let mut findings: Vec<Finding> = hand
        .iter()
        .filter_map(|(path, text)| controllerchange_finding(path, text))
        .collect();
    if toolchain.is_workbox() {
        findings.extend(takeover_finding(
            client, &listeners, &reloads, sw_name, sw, toolchain,
        ));
    }
    findings.extend(early_worker_finding(client, &reloads, sw_name));
    findings
}

/// workbox-window dispatches `activated` only for a worker it watched
/// install, and it starts watching when `register()` resolves. A returning
/// visitor's browser checks for a new worker as the page loads; when that
/// check wins, the new worker installs unwatched, takes over, and the page
/// never reloads (GoogleChrome/workbox#2199; reproduced in Chromium by
/// host/tests/all/pwa.rs). `controllerchange` fires either way.
fn early_worker_finding(
    client: &[(String, String)],
    reloads: &[&Listener],
    sw_name: &str,
) -> Option<Finding> {
    let only_activated = reloads.iter().all(|l| l.event == "activated");
    let guarded = client.iter().any(|(_, text)| {
        text.contains("controllerchange")
            && text.contains("location.reload")
            && !is_workbox_window(text)
            && guard_problem(text).is_none()
    });
    let first = reloads.first()?;
    (only_activated && !guarded).then(|| Finding {
        level: Level::Error,
        message: format!(
            "{}: the page reloads on workbox-window's `activated` event (vite-plugin-pwa's \
             registerType 'autoUpdate'), which never fires for a new {sw_name} that the \
             browser found before `register()` resolved: a returning visitor's browser checks \
             for one as the page loads, and when it wins, the new worker takes over unseen and \
             that visitor keeps the old bundle (GoogleChrome/workbox#2199). Add this next to \
             the registration, in the app's entry:\n\n{EARLY_WORKER_SNIPPET}\n",
            first.path
        ),
    })
}

/// What today's hand-written `controllerchange` listener gets wrong, if anything.
fn controllerchange_finding(path: &str, text: &str) -> Option<Finding> {
    if !text.contains("location.reload") {
        return Some(Finding {
            level: Level::Error,
            message: format!(
                "{path} listens for `controllerchange` but never calls `location.reload()`. \
                 Use this listener:\n\n{SNIPPET}\n"
            ),
        });
    }
    guard_problem(text).map(|problem| Finding {
        level: Level::Warning,
        message: format!("{path}: {problem}. Use this listener:\n\n{SNIPPET}\n"),
    })
}

/// Nothing reloads: say why in the toolchain's terms.
fn no_reload(client: &[(String, String)], sw_name: &str, toolchain: Toolchain) -> Finding {
    if toolchain == Toolchain::HandWritten {
        return Finding {
            level: Level::Error,
            message: format!(
                "no `controllerchange` listener in the HTML or JS: a new service worker takes \
                 over, but open pages keep showing the old bundle. Add this to the page:\n\n{SNIPPET}\n"
            ),
        };
    }
    let plain = plain_register_script(client);
    let why = match plain {
        Some(how) if toolchain.is_vite() => format!(
            "the page registers {sw_name} only with vite-plugin-pwa's plain register script \
             ({how}), which never reloads"
        ),
        _ => "no workbox-window `activated`/`controlling` listener reloads on `isUpdate`, and no \
              `controllerchange` listener reloads"
            .to_owned(),
    };
    Finding {
        level: Level::Error,
        message: format!(
            "nothing in the HTML or JS reloads an open page when a new service worker takes \
             over ({why}), so open tabs and returning visitors keep the old bundle. Fix: {}",
            toolchain.reload_fix()
        ),
    }
}

/// vite-plugin-pwa's register script without reload: `registerSW.js` from
/// `injectRegister: 'script'` (or 'auto' with no `virtual:pwa-register`
/// import) or the inline one from `injectRegister: 'inline'`.
fn plain_register_script(client: &[(String, String)]) -> Option<&'static str> {
    let html = client.iter().filter(|(path, _)| path.ends_with(".html"));
    for (_, text) in html {
        if text.contains("vite-plugin-pwa:register-sw") || text.contains("registerSW.js") {
            return Some(
                "registerSW.js, from `injectRegister: 'script'`, or 'auto' without an import of \
                 `virtual:pwa-register`",
            );
        }
        if text.contains("vite-plugin-pwa:inline-sw") {
            return Some("inline, from `injectRegister: 'inline'`");
        }
    }
    None
}

/// A Workbox worker that waits is never reloaded into by a page that
/// reloads when it activates: check that it takes over.
fn takeover_finding(
    client: &[(String, String)],
    listeners: &[Listener],
    reloads: &[&Listener],
    sw_name: &str,
    sw: &str,
    toolchain: Toolchain,
) -> Option<Finding> {
    let asks = listeners.iter().any(Listener::asks_to_skip_waiting)
        || client
            .iter()
            .any(|(_, text)| text.contains("SKIP_WAITING") && !is_workbox_window(text));
    let prompted = !reloads.is_empty()
        && reloads.iter().all(|l| l.event == "controlling")
        && listeners.iter().any(|l| l.event == "waiting");
    let waits = match workbox::takeover(sw) {
        Takeover::AtOnce => return None,
        Takeover::OnMessage if asks => return None,
        Takeover::OnMessage if prompted => return Some(prompt_warning(sw_name, toolchain)),
        Takeover::OnMessage => {
            "activates it only when a page posts a `SKIP_WAITING` message, and nothing in the \
             page posts one"
        }
        Takeover::WhenTabsClose => {
            "never calls `skipWaiting()`, so it activates only when every tab of the app is closed"
        }
    };
    Some(Finding {
        level: Level::Error,
        message: format!(
            "the page reloads when a new service worker takes over, but {sw_name} {waits}: \
             open tabs and returning visitors keep the old bundle. Fix: {}",
            toolchain.takeover_fix()
        ),
    })
}

/// `registerType: 'prompt'`: the reload waits for the app's `updateSW()`.
fn prompt_warning(sw_name: &str, toolchain: Toolchain) -> Finding {
    let fix = match toolchain {
        Toolchain::VitePwaGenerate => {
            "in vite.config: `VitePWA({ registerType: 'autoUpdate', workbox: { skipWaiting: \
             true, clientsClaim: true } })`"
        }
        Toolchain::VitePwaInject => {
            "in vite.config: `VitePWA({ strategies: 'injectManifest', registerType: \
             'autoUpdate' })`, and in the service worker source call `self.skipWaiting()` and \
             `clientsClaim()`"
        }
        _ => toolchain.takeover_fix(),
    };
    let how = if toolchain.is_vite() {
        "vite-plugin-pwa's registerType 'prompt': the page reloads only after the app calls \
         `updateSW()` (the function `registerSW()` returns, typically from `onNeedRefresh`)"
    } else {
        "the page reloads only after it calls `wb.messageSkipWaiting()`"
    };
    Finding {
        level: Level::Warning,
        message: format!(
            "{how}; until a user accepts, or every tab is closed, the new {sw_name} waits and \
             open tabs and returning visitors keep the old bundle. If the app does not prompt, \
             make every deploy reload on its own; {fix}"
        ),
    }
}

fn via_cache_findings(client: &[(String, String)], sw_name: &str) -> Vec<Finding> {
    let via_cache = Regex::new(r#"updateViaCache\s*:\s*["']all["']"#).expect("valid regex");
    client
        .iter()
        .filter(|(_, text)| via_cache.is_match(text))
        .map(|(path, _)| Finding {
            level: Level::Warning,
            message: format!(
                "{path} registers the service worker with `updateViaCache: 'all'`: with any \
                 max-age on {sw_name}, browsers stop seeing new versions. Drop the option \
                 (the default, 'imports', checks {sw_name} past the HTTP cache)"
            ),
        })
        .collect()
}

/// A workbox-window `addEventListener(event, handler)` call in the client.
#[derive(Debug)]
struct Listener {
    path: String,
    event: String,
    /// The handler's source: an inline function, or just its name.
    handler: String,
}

impl Listener {
    /// Reloads when a new worker replaces an old one (`isUpdate`), which a
    /// first visit's install never is.
    fn reloads_on_update(&self) -> bool {
        self.event != "waiting"
            && self.handler.contains("isUpdate")
            && self.handler.contains("location.reload")
    }

    /// A `waiting` handler that tells the new worker to take over at once.
    fn asks_to_skip_waiting(&self) -> bool {
        self.event == "waiting"
            && (self.handler.contains("messageSkipWaiting")
                || self.handler.contains("SKIP_WAITING"))
    }
}

fn workbox_listeners(path: &str, text: &str) -> Vec<Listener> {
    let call = Regex::new(
        r#"addEventListener\(\s*["'`](controlling|activated|installed|waiting)["'`]\s*,"#,
    )
    .expect("valid regex");
    call.captures_iter(text)
        .filter_map(|caps| {
            let whole = caps.get(0)?;
            Some(Listener {
                path: path.to_owned(),
                event: caps[1].to_owned(),
                handler: argument(text, whole.end()).to_owned(),
            })
        })
        .collect()
}

/// The text from `start` up to the `)` that closes the call it is in,
/// skipping strings and nested brackets; at most a few kilobytes.
fn argument(text: &str, start: usize) -> &str {
    const LIMIT: usize = 4096;
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < bytes.len() && i - start < LIMIT {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' | b'`' => quote = Some(b),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' if depth == 0 => break,
                b')' | b']' | b'}' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    text.get(start..i.min(bytes.len())).unwrap_or_default()
}

/// The workbox-window library itself listens for `controllerchange` without
/// reloading; it is not the app's listener.
fn is_workbox_window(text: &str) -> bool {
    text.contains("workbox:window:") && !text.contains("location.reload")
}

/// What is wrong with how a listener decides to reload, if anything.
fn guard_problem(text: &str) -> Option<String> {
    // Reading the controller tells a first visit from a returning one.
    let controller = Regex::new(r"serviceWorker\??\.controller(?:[^A-Za-z0-9_]|$)").expect("valid");
    if controller.is_match(text) {
        return None;
    }
    let flag = Regex::new(r"(?:let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*true\b").expect("valid");
    let seed = flag.captures_iter(text).any(|c| {
        let assign = format!(r"\b{}\s*=\s*false\b", regex::escape(&c[1]));
        Regex::new(&assign).is_ok_and(|r| r.is_match(text))
    });
    Some(if seed {
        "the `controllerchange` guard skips the first event of every page load, whether or not \
         the page was controlled at load; a returning visitor's page is, so it misses the \
         deploy's reload and stays on the old bundle"
            .to_owned()
    } else {
        "the `controllerchange` listener reloads unguarded: a first-time visitor is reloaded \
         when the service worker first takes control"
            .to_owned()
    })
}

/// A precache request in default fetch mode may be answered from the HTTP
/// cache, filling the new release's cache with the old bundle.
fn precache_problem(sw: &str) -> Option<String> {
    let precache = Regex::new(r"\.addAll\s*\(|cache\.add\s*\(").expect("valid");
    let bypass = Regex::new(r#"cache\s*:\s*["'](?:reload|no-store|no-cache)["']"#).expect("valid");
    (precache.is_match(sw) && !bypass.is_match(sw)).then(|| {
        "the precache (`cache.addAll`) fetches in default mode, so it can be filled from the \
         browser's HTTP cache with the previous release's files. Request them with \
         `new Request(url, { cache: \"reload\" })`"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const HAND: Toolchain = Toolchain::HandWritten;

    const SW_OK: &str = "const SW_VERSION = \"x\";\nself.addEventListener('install', (e) => e.waitUntil(caches.open(SW_VERSION).then((c) => c.addAll(FILES.map((u) => new Request(u, { cache: 'reload' }))))));\n";

    const SEED: &str = r#"if ("serviceWorker" in navigator) { let firstInstall = true; navigator.serviceWorker.addEventListener("controllerchange", () => { if (firstInstall) { firstInstall = false; return; } window.location.reload(); });}"#;

    fn client(js: &str) -> Vec<(String, String)> {
        vec![
            ("index.html".into(), "<script src=app.js></script>".into()),
            ("app.js".into(), js.into()),
        ]
    }

    fn levels(findings: &[Finding]) -> Vec<Level> {
        findings.iter().map(|f| f.level).collect()
    }

    #[test]
    fn the_snippet_passes() {
        let findings = lint(&client(SNIPPET), "sw.js", SW_OK, HAND);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn the_seed_guard_is_caught_and_the_snippet_offered() {
        let findings = lint(&client(SEED), "sw.js", SW_OK, HAND);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(
            findings[0]
                .message
                .contains("app.js: the `controllerchange` guard skips")
        );
        assert!(findings[0].message.contains(SNIPPET));
    }

    #[test]
    fn an_unguarded_listener_is_caught() {
        let js = r#"navigator.serviceWorker.addEventListener("controllerchange", () => location.reload());"#;
        let findings = lint(&client(js), "sw.js", SW_OK, HAND);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(findings[0].message.contains("reloads unguarded"));
    }

    #[test]
    fn a_missing_listener_is_an_error() {
        let findings = lint(&client("console.log('hi')"), "sw.js", SW_OK, HAND);
        assert_eq!(levels(&findings), [Level::Error]);
        assert!(findings[0].message.contains(SNIPPET));
        let no_reload =
            r#"navigator.serviceWorker.addEventListener("controllerchange", () => {});"#;
        assert_eq!(
            levels(&lint(&client(no_reload), "sw.js", SW_OK, HAND)),
            [Level::Error]
        );
    }

    #[test]
    fn update_via_cache_all_is_caught() {
        let js = format!(
            "{SNIPPET}\nnavigator.serviceWorker.register('/sw.js', {{ updateViaCache: 'all' }});"
        );
        let findings = lint(&client(&js), "sw.js", SW_OK, HAND);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(findings[0].message.contains("updateViaCache: 'all'"));
        let imports = format!("{SNIPPET}\nregister('/sw.js', {{ updateViaCache: \"imports\" }});");
        assert!(lint(&client(&imports), "sw.js", SW_OK, HAND).is_empty());
    }

    #[test]
    fn a_precache_from_the_http_cache_is_caught() {
        let sw = "const SW_VERSION = \"x\";\ncaches.open(SW_VERSION).then((c) => c.addAll(['/', '/app.js']));\n";
        let findings = lint(&client(SNIPPET), "sw.js", sw, HAND);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(
            findings[0].message.contains("cache: \\\"reload\\\"")
                || findings[0].message.contains("cache: \"reload\"")
        );
    }

    /// The lint of a real build under tests/data, as the step runs it.
    fn lint_fixture(name: &str) -> Vec<Finding> {
        lint_fixture_with(name, "")
    }

    /// The lint of a real build with `extra` appended to its entry chunk
    /// (the one that holds the page's listeners).
    fn lint_fixture_with(name: &str, extra: &str) -> Vec<Finding> {
        let build = crate::build::tests::fixture(name);
        let sw = build.text("sw.js").unwrap_or_default();
        let toolchain = match crate::workbox::find(&sw) {
            crate::workbox::Found::Manifest(m) => Toolchain::workbox(&build, "sw.js", m.strategy),
            _ => HAND,
        };
        let mut client = build.client("sw.js");
        if !extra.is_empty() {
            let entry = client
                .iter_mut()
                .find(|(path, text)| {
                    path.starts_with("assets/index-") && text.contains("activated")
                })
                .expect("the entry chunk holds registerSW");
            entry.1.push_str(extra);
        }
        lint(&client, "sw.js", &sw, toolchain)
    }

    /// vite-plugin-pwa's registerSW as its docs show it, built by vite.
    const REGISTER_SW_ONLY: &str = "inject-registersw-only";

    #[test]
    fn vite_pwa_auto_update_alone_misses_a_worker_found_before_register() {
        let findings = lint_fixture(REGISTER_SW_ONLY);
        assert_eq!(levels(&findings), [Level::Error], "{findings:?}");
        let message = &findings[0].message;
        assert!(message.contains("assets/index-"), "{message}");
        assert!(message.contains("GoogleChrome/workbox#2199"), "{message}");
        assert!(message.contains(EARLY_WORKER_SNIPPET), "{message}");
        // The seed's guard does not count: it skips returning visitors.
        assert_eq!(
            levels(&lint_fixture_with(REGISTER_SW_ONLY, SEED)),
            [Level::Error]
        );
        // The listener the message asks for is all it takes.
        let fixed = lint_fixture_with(REGISTER_SW_ONLY, EARLY_WORKER_SNIPPET);
        assert!(fixed.is_empty(), "{fixed:?}");
    }

    #[test]
    fn vite_pwa_auto_update_with_the_early_worker_listener_passes() {
        for name in ["generate", "inject"] {
            let findings = lint_fixture(name);
            assert!(findings.is_empty(), "{name}: {findings:?}");
            // The browser tests run the listener as the error gives it.
            let entry = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/frontends")
                .join(format!("miniapp-{name}/src/main.js"));
            let source = std::fs::read_to_string(&entry).unwrap();
            assert!(source.contains(EARLY_WORKER_SNIPPET), "{}", entry.display());
        }
    }

    #[test]
    fn the_plain_register_script_is_refused_with_the_vite_fix() {
        let findings = lint_fixture("autoupdate-script");
        assert_eq!(levels(&findings), [Level::Error]);
        let message = &findings[0].message;
        for part in [
            "vite-plugin-pwa (Workbox generateSW): nothing in the HTML or JS reloads",
            "plain register script (registerSW.js, from `injectRegister: 'script'`",
            "VitePWA({ registerType: 'autoUpdate', injectRegister: false, workbox: { skipWaiting: true, clientsClaim: true } })",
            "import { registerSW } from 'virtual:pwa-register';",
            "registerSW({ immediate: true });",
        ] {
            assert!(message.contains(part), "{part:?} not in {message}");
        }
    }

    #[test]
    fn prompt_mode_warns_that_it_waits_for_the_app() {
        let findings = lint_fixture("prompt");
        assert_eq!(levels(&findings), [Level::Warning], "{findings:?}");
        let message = &findings[0].message;
        assert!(message.contains("registerType 'prompt'"), "{message}");
        assert!(message.contains("`updateSW()`"), "{message}");
        assert!(message.contains("registerType: 'autoUpdate'"), "{message}");
    }

    #[test]
    fn auto_update_with_a_waiting_worker_is_refused() {
        // injectRegister: false without workbox.skipWaiting: the worker
        // waits for a SKIP_WAITING message the autoUpdate client never sends.
        let findings = lint_fixture_with("generate-no-skip-waiting", EARLY_WORKER_SNIPPET);
        assert_eq!(levels(&findings), [Level::Error], "{findings:?}");
        let message = &findings[0].message;
        assert!(
            message.contains("posts a `SKIP_WAITING` message, and nothing"),
            "{message}"
        );
        assert!(
            message.contains("workbox: { skipWaiting: true, clientsClaim: true }"),
            "{message}"
        );
    }

    #[test]
    fn workbox_window_recipes_are_recognised() {
        let sw = "self.skipWaiting();precacheAndRoute([{url:'index.html',revision:null}])";
        let wb = Toolchain::WorkboxGenerate;
        let recipe = "const wb = new Workbox('/sw.js');\nwb.addEventListener('controlling', (event) => {\n  if (event.isUpdate) {\n    window.location.reload();\n  }\n});\nwb.register();";
        assert!(lint(&client(recipe), "sw.js", sw, wb).is_empty());
        let waiting = "precacheAndRoute([]);self.addEventListener('message',(e)=>{if(e.data&&e.data.type==='SKIP_WAITING')self.skipWaiting()})";
        let asks =
            format!("{recipe}\nwb.addEventListener('waiting', () => wb.messageSkipWaiting());");
        assert!(lint(&client(&asks), "sw.js", waiting, wb).is_empty());
        let findings = lint(&client(recipe), "sw.js", waiting, wb);
        assert_eq!(levels(&findings), [Level::Error]);
        assert!(
            findings[0].message.contains("workbox-config.js"),
            "{findings:?}"
        );
        let none = lint(&client("new Workbox('/sw.js').register()"), "sw.js", sw, wb);
        assert_eq!(levels(&none), [Level::Error]);
        assert!(
            none[0].message.starts_with("Workbox generateSW: nothing"),
            "{none:?}"
        );
        assert!(
            none[0]
                .message
                .contains("import { Workbox } from 'workbox-window';"),
            "{none:?}"
        );
    }

    #[test]
    fn a_guarded_controllerchange_works_with_workbox_too() {
        let sw = "self.skipWaiting();";
        let findings = lint(&client(SNIPPET), "sw.js", sw, Toolchain::VitePwaGenerate);
        assert!(findings.is_empty(), "{findings:?}");
    }
}
