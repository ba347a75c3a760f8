//! Static checks of the built client: a stamped service worker helps only if
//! the page reloads into it, and only if the browser looks for it.

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
/// service worker's text.
pub fn lint(client: &[(String, String)], sw_name: &str, sw: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let listeners: Vec<&(String, String)> = client
        .iter()
        .filter(|(_, text)| text.contains("controllerchange"))
        .collect();
    if listeners.is_empty() {
        findings.push(Finding {
            level: Level::Error,
            message: format!(
                "no `controllerchange` listener in the HTML or JS: a new service worker takes \
                 over, but open pages keep showing the old bundle. Add this to the page:\n\n{SNIPPET}\n"
            ),
        });
    }
    for (path, text) in listeners {
        if !text.contains("location.reload") {
            findings.push(Finding {
                level: Level::Error,
                message: format!(
                    "{path} listens for `controllerchange` but never calls `location.reload()`. \
                     Use this listener:\n\n{SNIPPET}\n"
                ),
            });
        } else if let Some(problem) = guard_problem(text) {
            findings.push(Finding {
                level: Level::Warning,
                message: format!("{path}: {problem}. Use this listener:\n\n{SNIPPET}\n"),
            });
        }
    }
    let via_cache = Regex::new(r#"updateViaCache\s*:\s*["']all["']"#).expect("valid regex");
    for (path, text) in client {
        if via_cache.is_match(text) {
            findings.push(Finding {
                level: Level::Warning,
                message: format!(
                    "{path} registers the service worker with `updateViaCache: 'all'`: with any \
                     max-age on {sw_name}, browsers stop seeing new versions. Drop the option \
                     (the default, 'imports', checks {sw_name} past the HTTP cache)"
                ),
            });
        }
    }
    if let Some(problem) = precache_problem(sw) {
        findings.push(Finding {
            level: Level::Warning,
            message: format!("{sw_name}: {problem}"),
        });
    }
    findings
}

/// What is wrong with how a listener decides to reload, if anything.
fn guard_problem(text: &str) -> Option<String> {
    // Reading the controller tells a first visit from a returning one.
    let controller = Regex::new(r"serviceWorker\.controller(?:[^A-Za-z0-9_]|$)").expect("valid");
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
        let findings = lint(&client(SNIPPET), "sw.js", SW_OK);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn the_seed_guard_is_caught_and_the_snippet_offered() {
        let findings = lint(&client(SEED), "sw.js", SW_OK);
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
        let findings = lint(&client(js), "sw.js", SW_OK);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(findings[0].message.contains("reloads unguarded"));
    }

    #[test]
    fn a_missing_listener_is_an_error() {
        let findings = lint(&client("console.log('hi')"), "sw.js", SW_OK);
        assert_eq!(levels(&findings), [Level::Error]);
        assert!(findings[0].message.contains(SNIPPET));
        let no_reload =
            r#"navigator.serviceWorker.addEventListener("controllerchange", () => {});"#;
        assert_eq!(
            levels(&lint(&client(no_reload), "sw.js", SW_OK)),
            [Level::Error]
        );
    }

    #[test]
    fn update_via_cache_all_is_caught() {
        let js = format!(
            "{SNIPPET}\nnavigator.serviceWorker.register('/sw.js', {{ updateViaCache: 'all' }});"
        );
        let findings = lint(&client(&js), "sw.js", SW_OK);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(findings[0].message.contains("updateViaCache: 'all'"));
        let imports = format!("{SNIPPET}\nregister('/sw.js', {{ updateViaCache: \"imports\" }});");
        assert!(lint(&client(&imports), "sw.js", SW_OK).is_empty());
    }

    #[test]
    fn a_precache_from_the_http_cache_is_caught() {
        let sw = "const SW_VERSION = \"x\";\ncaches.open(SW_VERSION).then((c) => c.addAll(['/', '/app.js']));\n";
        let findings = lint(&client(SNIPPET), "sw.js", sw);
        assert_eq!(levels(&findings), [Level::Warning]);
        assert!(
            findings[0].message.contains("cache: \\\"reload\\\"")
                || findings[0].message.contains("cache: \"reload\"")
        );
    }
}
