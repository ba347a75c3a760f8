//! Workbox service workers (generateSW, injectManifest, as vite-plugin-pwa or
//! workbox-cli write them). Their precache manifest lists every file with a
//! revision (MD5) or a hashed name, so sw.js already changes bytes exactly
//! when the bundle does: slipway leaves it alone and checks instead that the
//! manifest describes the files being published.

use crate::build::{Build, resolve};
use crate::toolchain::{Strategy, Toolchain};
use md5::{Digest, Md5};
use regex::Regex;
use std::collections::BTreeSet;

/// One precache entry: `{url, revision}`; `revision` is `None` for files
/// whose name carries their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub url: String,
    pub revision: Option<String>,
}

#[derive(Debug)]
pub struct Manifest {
    pub strategy: Strategy,
    pub entries: Vec<Entry>,
}

/// What sw.js says about Workbox.
#[derive(Debug)]
pub enum Found {
    Manifest(Manifest),
    /// `self.__WB_MANIFEST` is still there: injectManifest never ran.
    NotInjected,
    /// Workbox code, but no manifest this plugin can read.
    Unreadable,
    /// Not a Workbox precaching service worker.
    None,
}

/// Find the precache manifest in sw.js.
pub fn find(sw: &str) -> Found {
    if sw.contains("self.__WB_MANIFEST") {
        return Found::NotInjected;
    }
    let mut manifest: Option<Manifest> = None;
    let bytes = sw.as_bytes();
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == b'[') {
        let start = at + offset;
        match Parser::new(bytes, start).manifest() {
            Some((entries, strategy, end)) => {
                let found = manifest.get_or_insert(Manifest {
                    strategy,
                    entries: Vec::new(),
                });
                found.entries.extend(entries);
                at = end;
            }
            None => at = start + 1,
        }
    }
    if let Some(manifest) = manifest {
        return Found::Manifest(manifest);
    }
    if Regex::new(r"precacheAndRoute\(\s*\[\s*\]")
        .expect("valid regex")
        .is_match(sw)
    {
        // generateSW found nothing to precache.
        return Found::Manifest(Manifest {
            strategy: Strategy::Generate,
            entries: Vec::new(),
        });
    }
    let workbox = ["precacheAndRoute", "workbox:precaching:", "__WB_REVISION__"];
    if workbox.iter().any(|mark| sw.contains(mark)) {
        return Found::Unreadable;
    }
    Found::None
}

/// Check the manifest against the build: every entry is a file being
/// published, with its MD5 as revision, and the page's entry files are all
/// precached. Every problem is reported, not just the first.
pub fn check(
    build: &Build,
    sw_name: &str,
    index: &str,
    toolchain: Toolchain,
    manifest: &Manifest,
) -> Result<(), String> {
    let mut problems = entry_problems(build, sw_name, toolchain, manifest);
    problems.extend(runtime_problems(build, sw_name, toolchain));
    if let Some(problem) = coverage_problem(build, sw_name, index, toolchain, manifest) {
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Entries whose file is missing or whose revision is not the file's MD5.
fn entry_problems(
    build: &Build,
    sw_name: &str,
    toolchain: Toolchain,
    manifest: &Manifest,
) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for entry in &manifest.entries {
        let Some(path) = resolve(sw_name, &entry.url) else {
            continue;
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        let Some(bytes) = build.files.get(&path) else {
            problems.push(format!(
                "{}: the precache manifest in {sw_name} lists {}, which is not in the build, so \
                 the new service worker fails to install and nobody gets the deploy; {}",
                toolchain.name(),
                entry.url,
                toolchain.rebuild_fix()
            ));
            continue;
        };
        let Some(revision) = &entry.revision else {
            continue;
        };
        let md5 = md5_hex(bytes);
        if !revision.eq_ignore_ascii_case(&md5) {
            problems.push(format!(
                "{}: the precache manifest in {sw_name} gives {} the revision {revision}, but the \
                 file being published has MD5 {md5}: the manifest is stale, and browsers would \
                 keep serving their cached copy; {}",
                toolchain.name(),
                entry.url,
                toolchain.rebuild_fix()
            ));
        }
    }
    problems
}

/// generateSW loads the Workbox runtime from a sibling file
/// (`define(["./workbox-1a2b3c4d"], …)`); without it the worker never runs.
fn runtime_problems(build: &Build, sw_name: &str, toolchain: Toolchain) -> Vec<String> {
    let Some(sw) = build.text(sw_name) else {
        return Vec::new();
    };
    let define = Regex::new(r#"define\(\s*\[([^\]]*)\]"#).expect("valid regex");
    let module = Regex::new(r#"["'](\.{1,2}/[^"']+)["']"#).expect("valid regex");
    let mut problems = Vec::new();
    for deps in define.captures_iter(&sw) {
        for dep in module.captures_iter(&deps[1]) {
            let file = format!("{}.js", dep[1].trim_end_matches(".js"));
            match resolve(sw_name, &file) {
                Some(path) if !build.files.contains_key(&path) => problems.push(format!(
                    "{}: {sw_name} loads the Workbox runtime {file}, which is not in the build, \
                     so the service worker cannot start; {}",
                    toolchain.name(),
                    toolchain.rebuild_fix()
                )),
                _ => {}
            }
        }
    }
    problems
}

/// The index page and the scripts and styles it loads must be precached,
/// or the precached page starts with files from the network (or none).
fn coverage_problem(
    build: &Build,
    sw_name: &str,
    index: &str,
    toolchain: Toolchain,
    manifest: &Manifest,
) -> Option<String> {
    let listed: BTreeSet<String> = manifest
        .entries
        .iter()
        .filter_map(|e| resolve(sw_name, &e.url))
        .collect();
    let html = build.text(index).unwrap_or_default();
    let mut needed = vec![index.to_owned()];
    needed.extend(crate::page::entry_files(index, &html));
    let missing: Vec<String> = needed
        .into_iter()
        .filter(|path| !listed.contains(path))
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "{}: the precache manifest in {sw_name} does not cover {}, which {index} needs to start; \
         an offline or returning visitor gets a page without them. For each, {}",
        toolchain.name(),
        missing.join(", "),
        toolchain.glob_fix()
    ))
}

pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a new Workbox service worker replaces the one controlling open pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// It calls `skipWaiting()` unconditionally: it activates at once.
    AtOnce,
    /// Only when a page posts `{type: "SKIP_WAITING"}`.
    OnMessage,
    /// Never: it waits until every tab of the app is closed.
    WhenTabsClose,
}

pub fn takeover(sw: &str) -> Takeover {
    let call = Regex::new(r"\bskipWaiting\(\s*\)").expect("valid regex");
    let mut takeover = Takeover::WhenTabsClose;
    for found in call.find_iter(sw) {
        // Workbox's message handler tests the type just before the call.
        let before = &sw.as_bytes()[found.start().saturating_sub(200)..found.start()];
        if before.windows(12).any(|w| w == b"SKIP_WAITING") {
            takeover = Takeover::OnMessage;
        } else {
            return Takeover::AtOnce;
        }
    }
    takeover
}

/// A tolerant reader of the two manifest forms: JavaScript object literals
/// with bare keys (generateSW) and JSON (injectManifest).
struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a [u8], at: usize) -> Parser<'a> {
        Parser { text, at }
    }

    /// An array of at least one `{url, …}` object starting at `[`: its
    /// entries, how its keys are written, and where it ends.
    fn manifest(mut self) -> Option<(Vec<Entry>, Strategy, usize)> {
        self.eat(b'[')?;
        let mut entries = Vec::new();
        let mut quoted = false;
        loop {
            self.space();
            let (entry, quoted_keys) = self.object()?;
            quoted |= quoted_keys;
            entries.push(entry);
            self.space();
            if self.eat(b']').is_some() {
                break;
            }
            self.eat(b',')?;
        }
        let strategy = if quoted {
            Strategy::Inject
        } else {
            Strategy::Generate
        };
        Some((entries, strategy, self.at))
    }

    fn object(&mut self) -> Option<(Entry, bool)> {
        self.eat(b'{')?;
        let (mut url, mut revision, mut quoted) = (None, None, false);
        loop {
            self.space();
            if self.eat(b'}').is_some() {
                break;
            }
            let (key, key_quoted) = self.key()?;
            quoted |= key_quoted;
            self.space();
            self.eat(b':')?;
            self.space();
            let value = self.value()?;
            match key.as_str() {
                "url" => url = Some(value?),
                "revision" => revision = value,
                _ => {}
            }
            self.space();
            if self.eat(b',').is_none() {
                self.space();
                self.eat(b'}')?;
                break;
            }
        }
        Some((
            Entry {
                url: url?,
                revision,
            },
            quoted,
        ))
    }

    fn key(&mut self) -> Option<(String, bool)> {
        if matches!(self.peek()?, b'"' | b'\'') {
            return Some((self.string()?, true));
        }
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        {
            self.at += 1;
        }
        (self.at > start)
            .then(|| String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
            .map(|key| (key, false))
    }

    /// A string (`Some`), or `null` (`None`); numbers and booleans are
    /// skipped as `None`; anything else is not a manifest.
    fn value(&mut self) -> Option<Option<String>> {
        match self.peek()? {
            b'"' | b'\'' => self.string().map(Some),
            _ => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                {
                    self.at += 1;
                }
                let word = &self.text[start..self.at];
                let scalar = word == b"null"
                    || word == b"true"
                    || word == b"false"
                    || word
                        .first()
                        .is_some_and(|b| b.is_ascii_digit() || *b == b'-');
                scalar.then_some(None)
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let byte = self.peek()?;
            self.at += 1;
            match byte {
                b'\\' => {
                    let escaped = self.peek()?;
                    self.at += 1;
                    out.push(match escaped {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                }
                b'\n' => return None,
                b if b == quote => break,
                b => out.push(b),
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::fixture;

    fn manifest_of(build: &Build) -> Manifest {
        match find(&build.text("sw.js").unwrap_or_default()) {
            Found::Manifest(m) => m,
            other => panic!("no manifest: {other:?}"),
        }
    }

    fn check_fixture(build: &Build) -> Result<(), String> {
        let manifest = manifest_of(build);
        let toolchain = Toolchain::workbox(build, "sw.js", manifest.strategy);
        check(build, "sw.js", "index.html", toolchain, &manifest)
    }

    #[test]
    fn reads_both_literal_forms() {
        let generate = manifest_of(&fixture("generate"));
        assert_eq!(generate.strategy, Strategy::Generate);
        assert_eq!(generate.entries.len(), 6);
        assert_eq!(
            generate.entries[1],
            Entry {
                url: "index.html".into(),
                revision: Some("75b03447017dff699c607d3a5f24685f".into())
            }
        );
        assert_eq!(generate.entries[3].revision, None);
        let inject = manifest_of(&fixture("inject"));
        assert_eq!(inject.strategy, Strategy::Inject);
        assert_eq!(inject.entries, generate.entries);
    }

    #[test]
    fn real_builds_pass() {
        for name in ["generate", "inject", "prompt", "autoupdate-script"] {
            check_fixture(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn md5_is_workboxs_revision() {
        // `md5sum index.html` of the real generate build.
        let build = fixture("generate");
        let index = build.files.get("index.html").cloned().unwrap_or_default();
        assert_eq!(md5_hex(&index), "75b03447017dff699c607d3a5f24685f");
    }

    #[test]
    fn a_stale_revision_is_refused() {
        let mut build = fixture("generate");
        build.files.insert(
            "index.html".into(),
            b"<h1>edited after the build</h1>".to_vec(),
        );
        let e = check_fixture(&build).unwrap_err();
        assert!(
            e.starts_with("vite-plugin-pwa (Workbox generateSW): "),
            "{e}"
        );
        assert!(
            e.contains("gives index.html the revision 75b03447017dff699c607d3a5f24685f"),
            "{e}"
        );
        assert!(e.contains("rebuild, don't edit dist"), "{e}");
    }

    #[test]
    fn a_missing_entry_file_is_refused() {
        let mut build = fixture("inject");
        build.files.remove("assets/index-3DakjXlX.css");
        let e = check_fixture(&build).unwrap_err();
        assert!(
            e.starts_with("vite-plugin-pwa (Workbox injectManifest): "),
            "{e}"
        );
        assert!(
            e.contains("lists assets/index-3DakjXlX.css, which is not in the build"),
            "{e}"
        );
        assert!(e.contains("rebuild, don't edit dist"), "{e}");
    }

    #[test]
    fn a_manifest_without_the_pages_script_is_refused() {
        let mut build = fixture("generate");
        let sw = build
            .text("sw.js")
            .unwrap_or_default()
            .replace(r#"{url:"assets/index-DHlfWws-.js",revision:null},"#, "");
        build.files.insert("sw.js".into(), sw.into_bytes());
        let e = check_fixture(&build).unwrap_err();
        assert!(
            e.contains("does not cover assets/index-DHlfWws-.js, which index.html needs"),
            "{e}"
        );
        assert!(e.contains("`workbox.globPatterns` in vite.config"), "{e}");
        let mut inject = fixture("inject");
        let sw = inject.text("sw.js").unwrap_or_default().replace(
            r#"{"revision":"75b03447017dff699c607d3a5f24685f","url":"index.html"},"#,
            "",
        );
        inject.files.insert("sw.js".into(), sw.into_bytes());
        let e = check_fixture(&inject).unwrap_err();
        assert!(e.contains("does not cover index.html"), "{e}");
        assert!(
            e.contains("`injectManifest.globPatterns` in vite.config"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_workbox_runtime_is_refused() {
        let mut build = fixture("generate");
        build.files.remove("workbox-9c191d2f.js");
        let e = check_fixture(&build).unwrap_err();
        assert!(
            e.contains("loads the Workbox runtime ./workbox-9c191d2f.js"),
            "{e}"
        );
    }

    #[test]
    fn an_uninjected_manifest_is_found() {
        let sw = "import { precacheAndRoute } from 'workbox-precaching';\nprecacheAndRoute(self.__WB_MANIFEST);\n";
        assert!(matches!(find(sw), Found::NotInjected));
        assert!(matches!(find("precacheAndRoute(x)"), Found::Unreadable));
        assert!(matches!(
            find("const SW_VERSION = \"x\"; caches.open([1])"),
            Found::None
        ));
    }

    #[test]
    fn tolerant_of_odd_manifests() {
        for (sw, urls) in [
            (
                r#"precacheAndRoute([ { url: '/index.html?v=2', revision: "a" } , {url:"b.js"} ])"#,
                vec!["/index.html?v=2", "b.js"],
            ),
            (
                r#"x([{"url":"a\"b.js","revision":null,"integrity":"sha-1"}])"#,
                vec!["a\"b.js"],
            ),
            (r#"[{url:"a.js",size:12,ok:true}]"#, vec!["a.js"]),
        ] {
            let Found::Manifest(m) = find(sw) else {
                panic!("{sw}");
            };
            let got: Vec<&str> = m.entries.iter().map(|e| e.url.as_str()).collect();
            assert_eq!(got, urls, "{sw}");
        }
        for not in [
            r#"[{urlPattern:/x/,handler:"NetworkFirst"}]"#,
            "[{url:",
            "[{url:\"",
            "[{",
            "[",
        ] {
            assert!(!matches!(find(not), Found::Manifest(_)), "{not}");
        }
        assert!(
            matches!(find("e.precacheAndRoute([],{})"), Found::Manifest(m) if m.entries.is_empty())
        );
    }

    #[test]
    fn takeover_modes_of_real_service_workers() {
        let sw = |name: &str| fixture(name).text("sw.js").unwrap_or_default();
        assert_eq!(takeover(&sw("generate")), Takeover::AtOnce);
        assert_eq!(takeover(&sw("inject")), Takeover::AtOnce);
        assert_eq!(takeover(&sw("prompt")), Takeover::OnMessage);
        assert_eq!(
            takeover(&sw("generate-no-skip-waiting")),
            Takeover::OnMessage
        );
        assert_eq!(takeover("precacheAndRoute([])"), Takeover::WhenTabsClose);
    }
}
