//! Which tool wrote the service worker: it decides how sw.js changes bytes
//! with the bundle, and every fix is given in that tool's terms (a config
//! line, never an edit to generated code).

use crate::build::Build;
use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// sw.js carries a version line that slipway stamps.
    HandWritten,
    /// vite-plugin-pwa, `strategies: 'generateSW'` (the default).
    VitePwaGenerate,
    /// vite-plugin-pwa, `strategies: 'injectManifest'`.
    VitePwaInject,
    /// Workbox's own generateSW (workbox-cli, workbox-build, a bundler plugin).
    WorkboxGenerate,
    /// Workbox's own injectManifest.
    WorkboxInject,
}

/// How Workbox wrote the precache manifest into sw.js.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Object literals with bare keys: `{url:"index.html",revision:"…"}`.
    Generate,
    /// JSON where `self.__WB_MANIFEST` was: `{"revision":"…","url":"…"}`.
    Inject,
}

impl Toolchain {
    /// The Workbox toolchain of a build whose sw.js has a precache manifest
    /// written by `strategy`.
    pub fn workbox(build: &Build, sw_name: &str, strategy: Strategy) -> Toolchain {
        match (is_vite_pwa(build, sw_name), strategy) {
            (true, Strategy::Generate) => Toolchain::VitePwaGenerate,
            (true, Strategy::Inject) => Toolchain::VitePwaInject,
            (false, Strategy::Generate) => Toolchain::WorkboxGenerate,
            (false, Strategy::Inject) => Toolchain::WorkboxInject,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Toolchain::HandWritten => "hand-written service worker",
            Toolchain::VitePwaGenerate => "vite-plugin-pwa (Workbox generateSW)",
            Toolchain::VitePwaInject => "vite-plugin-pwa (Workbox injectManifest)",
            Toolchain::WorkboxGenerate => "Workbox generateSW",
            Toolchain::WorkboxInject => "Workbox injectManifest",
        }
    }

    /// The `sw_source` output: how sw.js changes bytes with the bundle.
    pub fn sw_source(self) -> &'static str {
        match self {
            Toolchain::HandWritten => "version-line",
            Toolchain::VitePwaGenerate | Toolchain::WorkboxGenerate => "workbox-generate-sw",
            Toolchain::VitePwaInject | Toolchain::WorkboxInject => "workbox-inject-manifest",
        }
    }

    pub fn is_vite(self) -> bool {
        matches!(self, Toolchain::VitePwaGenerate | Toolchain::VitePwaInject)
    }

    pub fn is_workbox(self) -> bool {
        self != Toolchain::HandWritten
    }

    /// How to add a file to the precache.
    pub fn glob_fix(self) -> &'static str {
        match self {
            Toolchain::VitePwaGenerate => {
                "add its pattern to `workbox.globPatterns` in vite.config, e.g. \
                 `workbox: { globPatterns: ['**/*.{html,js,css,webmanifest}'] }`"
            }
            Toolchain::VitePwaInject => {
                "add its pattern to `injectManifest.globPatterns` in vite.config, e.g. \
                 `injectManifest: { globPatterns: ['**/*.{html,js,css,webmanifest}'] }`"
            }
            Toolchain::WorkboxGenerate | Toolchain::WorkboxInject => {
                "add its pattern to `globPatterns` in workbox-config.js (or the Workbox \
                 plugin's options), e.g. `globPatterns: ['**/*.{html,js,css,webmanifest}']`"
            }
            Toolchain::HandWritten => "list it in the service worker's precache",
        }
    }

    /// What to do when the manifest and the files disagree.
    pub fn rebuild_fix(self) -> &'static str {
        if self.is_vite() {
            "the build directory was changed after `vite build`: rebuild, don't edit dist"
        } else {
            "the build directory was changed after Workbox wrote sw.js: run the build (and \
             workbox) again, don't edit its output"
        }
    }

    /// How to make the new service worker take over without waiting for
    /// every tab to close.
    pub fn takeover_fix(self) -> &'static str {
        match self {
            Toolchain::VitePwaGenerate => {
                "in vite.config add `workbox: { skipWaiting: true, clientsClaim: true }` to \
                 `VitePWA({ registerType: 'autoUpdate', … })` (vite-plugin-pwa sets both by \
                 itself only with `injectRegister: 'auto'`)"
            }
            Toolchain::WorkboxGenerate => {
                "in workbox-config.js (or the Workbox plugin's options) set \
                 `skipWaiting: true, clientsClaim: true`"
            }
            Toolchain::VitePwaInject | Toolchain::WorkboxInject => {
                "in the service worker source call `self.skipWaiting()` and `clientsClaim()` \
                 (`import { clientsClaim } from 'workbox-core'`)"
            }
            Toolchain::HandWritten => "call `self.skipWaiting()` in the install handler",
        }
    }

    /// How to make the page reload when a new service worker takes over.
    pub fn reload_fix(self) -> String {
        let entry = format!(
            "and in the app's entry (e.g. src/main.js):\n\n  import {{ registerSW }} from \
             'virtual:pwa-register';\n  registerSW({{ immediate: true }});\n  {}\n",
            crate::lint::EARLY_WORKER_SNIPPET.replace('\n', "\n  ")
        );
        match self {
            Toolchain::VitePwaGenerate => format!(
                "register through vite-plugin-pwa's client, which reloads on an update. In \
                 vite.config:\n\n  VitePWA({{ registerType: 'autoUpdate', injectRegister: \
                 false, workbox: {{ skipWaiting: true, clientsClaim: true }} }})\n\n{entry}"
            ),
            Toolchain::VitePwaInject => format!(
                "register through vite-plugin-pwa's client, which reloads on an update. In \
                 vite.config:\n\n  VitePWA({{ strategies: 'injectManifest', registerType: \
                 'autoUpdate', injectRegister: false }})\n\n{entry}\nand {}",
                self.takeover_fix()
            ),
            Toolchain::WorkboxGenerate | Toolchain::WorkboxInject => format!(
                "register through workbox-window and reload on an update:\n\n  import {{ \
                 Workbox }} from 'workbox-window';\n  const wb = new Workbox('/sw.js');\n  \
                 wb.addEventListener('controlling', (event) => {{\n    if (event.isUpdate) \
                 window.location.reload();\n  }});\n  wb.register();\n\nand {}",
                self.takeover_fix()
            ),
            Toolchain::HandWritten => {
                format!("add this to the page:\n\n{}\n", crate::lint::SNIPPET)
            }
        }
    }
}

/// vite-plugin-pwa leaves its marks on the page: its register script's id,
/// its `registerSW.js`, or its compiled `virtual:pwa-register` client (the
/// only code that builds a Workbox with an explicit `type: "classic"`).
fn is_vite_pwa(build: &Build, sw_name: &str) -> bool {
    let client = Regex::new(
        r#"new\s+[\w$]+\(\s*["'][^"']*["']\s*,\s*\{\s*scope\s*:\s*["'][^"']*["']\s*,\s*type\s*:\s*["'](?:classic|module)["']\s*\}\s*\)"#,
    )
    .expect("valid regex");
    build.client(sw_name).iter().any(|(path, text)| {
        (path.ends_with(".html") && text.contains("vite-plugin-pwa:"))
            || (path == "registerSW.js" && text.contains("serviceWorker.register"))
            || client.is_match(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::fixture;

    #[test]
    fn tells_vite_plugin_pwa_from_plain_workbox() {
        for name in ["generate", "inject", "prompt", "autoupdate-script"] {
            assert!(is_vite_pwa(&fixture(name), "sw.js"), "{name}");
        }
        let mut plain = fixture("generate");
        plain
            .files
            .retain(|path, _| !path.starts_with("assets/index-"));
        assert!(!is_vite_pwa(&plain, "sw.js"));
    }
}
