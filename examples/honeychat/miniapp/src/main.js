// The Mini App's entry; vite bundles it as /assets/index-<hash>.js, so a new
// release is a new file name. BUNDLE changes with every release.
const BUNDLE = "v1";
window.BUNDLE = BUNDLE;
// Page loads in this tab, so a reload is visible to whoever watches it.
sessionStorage.setItem("loads", String(Number(sessionStorage.getItem("loads") || 0) + 1));

// How often an open tab asks for a new service worker. An hour is plenty in
// production; this example checks every second so a deploy shows at once.
const UPDATE_EVERY_MS = 1000;

if ("serviceWorker" in navigator) {
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
    setInterval(() => reg.update(), UPDATE_EVERY_MS);
  });
}
