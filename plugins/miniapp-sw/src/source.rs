//! How sw.js changes bytes with the bundle: a version line slipway stamps,
//! or a Workbox precache manifest whose revisions already change them.

use crate::build::Build;
use crate::stamp::VersionLine;
use crate::toolchain::{Strategy, Toolchain};
use crate::workbox::{self, Found};
use std::ops::Range;

#[derive(Debug)]
pub enum Source {
    /// Hand-written: the stamp goes at `span`.
    VersionLine { span: Range<usize> },
    /// Workbox: sw.js is published as built, its manifest checked.
    Workbox { toolchain: Toolchain },
}

impl Source {
    pub fn toolchain(&self) -> Toolchain {
        match self {
            Source::VersionLine { .. } => Toolchain::HandWritten,
            Source::Workbox { toolchain } => *toolchain,
        }
    }
}

/// Tell how sw.js (`sw_name` in `build`) follows the bundle, and refuse a
/// build where it does not: no version line, or a precache manifest that
/// does not describe the files being published.
pub fn detect(
    build: &Build,
    sw_name: &str,
    index: &str,
    line: &VersionLine,
) -> Result<Source, String> {
    let bytes = build
        .files
        .get(sw_name)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(bytes);
    match workbox::find(&text) {
        Found::Manifest(manifest) => {
            let toolchain = Toolchain::workbox(build, sw_name, manifest.strategy);
            workbox::check(build, sw_name, index, toolchain, &manifest)?;
            Ok(Source::Workbox { toolchain })
        }
        Found::NotInjected => Err(not_injected(build, sw_name)),
        Found::Unreadable => match line.find(sw_name, bytes) {
            Ok(span) => Ok(Source::VersionLine { span }),
            Err(_) => Err(format!(
                "{sw_name} runs Workbox's precaching, but slipway finds no precache manifest in \
                 it (an array of {{url, revision}} entries) and no version line, so it cannot \
                 tell whether its bytes change with the bundle. Build it with Workbox's \
                 generateSW or injectManifest (e.g. vite-plugin-pwa) and deploy the output \
                 unchanged, or add a version line:\n\n{}\n",
                crate::stamp::LINE_TO_ADD
            )),
        },
        Found::None => line
            .find(sw_name, bytes)
            .map(|span| Source::VersionLine { span })
            .map_err(|e| {
                format!(
                    "{} (no Workbox precache manifest found): {e}",
                    Toolchain::HandWritten.name()
                )
            }),
    }
}

/// `self.__WB_MANIFEST` left in place: the source service worker was
/// published without the injectManifest step, so it precaches nothing.
fn not_injected(build: &Build, sw_name: &str) -> String {
    let toolchain = Toolchain::workbox(build, sw_name, Strategy::Inject);
    let fix = if toolchain.is_vite() {
        "let vite-plugin-pwa build it: `VitePWA({ strategies: 'injectManifest', srcDir: 'src', \
         filename: 'sw.js' })` in vite.config, with the source outside public/, and deploy \
         vite's output"
    } else {
        "run `workbox injectManifest` (swSrc, swDest and globDirectory in workbox-config.js) \
         after the build, and deploy its swDest"
    };
    format!(
        "{}: {sw_name} still contains `self.__WB_MANIFEST`, so the precache manifest was never \
         injected and the service worker precaches nothing; {fix}",
        toolchain.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::fixture;
    use crate::stamp::DEFAULT_PATTERN;

    fn detect_in(build: &Build) -> Result<Source, String> {
        let line = VersionLine::new(DEFAULT_PATTERN).unwrap();
        detect(build, "sw.js", "index.html", &line)
    }

    #[test]
    fn real_workbox_builds_are_recognised() {
        for (name, toolchain) in [
            ("generate", Toolchain::VitePwaGenerate),
            ("inject", Toolchain::VitePwaInject),
            ("autoupdate-script", Toolchain::VitePwaGenerate),
        ] {
            let source = detect_in(&fixture(name)).unwrap();
            assert_eq!(source.toolchain(), toolchain, "{name}");
        }
    }

    #[test]
    fn an_uninjected_manifest_is_refused() {
        let mut build = fixture("inject");
        let src = "import { precacheAndRoute } from 'workbox-precaching';\nprecacheAndRoute(self.__WB_MANIFEST);\n";
        build.files.insert("sw.js".into(), src.as_bytes().to_vec());
        let e = detect_in(&build).unwrap_err();
        assert!(e.starts_with("vite-plugin-pwa (Workbox injectManifest): sw.js still contains `self.__WB_MANIFEST`"), "{e}");
        assert!(e.contains("strategies: 'injectManifest'"), "{e}");
    }

    #[test]
    fn a_hand_written_worker_needs_its_line() {
        let mut build = fixture("generate");
        let sw = "const SW_VERSION = \"dev\"; // slipway replaces \"dev\" on every deploy\nself.addEventListener('install', () => {});\n";
        build.files.insert("sw.js".into(), sw.as_bytes().to_vec());
        assert!(matches!(detect_in(&build), Ok(Source::VersionLine { .. })));
        build.files.insert(
            "sw.js".into(),
            b"self.addEventListener('fetch', () => {});".to_vec(),
        );
        let e = detect_in(&build).unwrap_err();
        assert!(e.starts_with("hand-written service worker (no Workbox precache manifest found): sw.js has no version line"), "{e}");
    }
}
