//! A real headless Chromium, driven over CDP, with one profile per
//! `Chromium`: what a Mini App user's browser does with service workers.

use chromiumoxide::cdp::browser_protocol::service_worker::{
    EnableParams, UpdateRegistrationParams,
};
use chromiumoxide::cdp::browser_protocol::target::SetAutoAttachParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::{Duration, Instant};

pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

/// What a tab shows, read from the page itself.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Tab {
    /// `data-version` of the page's heading: which index.html it runs.
    pub html: Option<String>,
    /// `window.BUNDLE`: which app.js it runs.
    pub js: Option<String>,
    /// Page loads in this tab (counted in sessionStorage by app.js).
    pub loads: u32,
    /// Whether a service worker controls the page.
    pub controlled: bool,
    /// The Cache Storage names the origin holds.
    pub caches: Vec<String>,
}

const READ_TAB: &str = r#"(async () => ({
  html: document.getElementById("version")?.dataset.version ?? null,
  js: window.BUNDLE ?? null,
  loads: Number(sessionStorage.getItem("loads") || 0),
  controlled: !!navigator.serviceWorker?.controller,
  caches: await caches.keys(),
}))()"#;

impl Chromium {
    pub async fn launch() -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable("/usr/bin/chromium")
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            // The machine's network is closed: keep Chromium off it.
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .launch_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let (browser, mut events) = Browser::launch(config)
            .await
            .expect("launch /usr/bin/chromium (scripts/setup installs it)");
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        Chromium {
            browser,
            handler,
            _profile: profile,
        }
    }

    /// Open `url` in a new tab.
    pub async fn open(&self, url: &str) -> Page {
        let page = self.blank_tab().await;
        within("navigating", page.goto(url)).await.unwrap();
        page
    }

    /// Open `url` in a new tab as the browser begins checking for a new
    /// service worker, as it does on its own when a returning visitor
    /// navigates: the check that races the page's own registration.
    pub async fn open_as_the_browser_checks(&self, url: &str) -> Page {
        let page = self.blank_tab().await;
        within(
            "enabling the ServiceWorker domain",
            page.execute(EnableParams::default()),
        )
        .await
        .unwrap();
        let check = UpdateRegistrationParams::new(url);
        within("asking for an update check", page.execute(check))
            .await
            .unwrap();
        within("navigating", page.goto(url)).await.unwrap();
        page
    }

    async fn blank_tab(&self) -> Page {
        let page = within("opening a tab", self.browser.new_page("about:blank"))
            .await
            .unwrap();
        // chromiumoxide auto-attaches with waitForDebuggerOnStart, which can
        // leave the first service worker hanging in "starting". Override it
        // before the first navigation.
        let attach = SetAutoAttachParams::builder()
            .auto_attach(true)
            .wait_for_debugger_on_start(false)
            .flatten(true)
            .build()
            .unwrap();
        within("setting auto-attach", page.execute(attach))
            .await
            .unwrap();
        page
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.close()).await;
        let _ = self.browser.kill().await;
        self.handler.abort();
    }
}

/// Read the tab; `None` while it is between documents (e.g. reloading).
pub async fn read(page: &Page) -> Option<Tab> {
    let result = tokio::time::timeout(Duration::from_secs(2), page.evaluate(READ_TAB))
        .await
        .ok()?
        .ok()?;
    result.into_value().ok()
}

/// Close a tab.
pub async fn close(page: Page) {
    within("closing a tab", page.close()).await.unwrap();
}

/// CDP calls can hang on a wedged browser; fail the test instead.
async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap_or_else(|_| panic!("Chromium did not finish {what} within 20 s"))
}

/// Poll the tab until `done` holds, or panic with what it last showed.
pub async fn wait_for(page: &Page, what: &str, done: impl Fn(&Tab) -> bool) -> Tab {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(tab) = read(page).await {
            if done(&tab) {
                return tab;
            }
            last = Some(tab);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}; the tab showed {last:?}");
}

/// Read the tab after `quiet` has passed, proving nothing more happened.
pub async fn after(page: &Page, quiet: Duration) -> Tab {
    tokio::time::sleep(quiet).await;
    wait_for(page, "the tab answers", |_| true).await
}
