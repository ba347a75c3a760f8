import { registerSW } from 'virtual:pwa-register'
import './style.css'

// Counted on every page load, so a test can tell how often the page reloaded.
sessionStorage.setItem('loads', String(Number(sessionStorage.getItem('loads') || 0) + 1))
// APP_VERSION, replaced at build time: a new version changes this chunk's hash.
window.BUNDLE = __APP_VERSION__

// workbox-window's `activated` event, which registerSW reloads on, misses a
// worker the browser found before register() resolved; these do not (the
// listener miniapp-sw asks for).
if (navigator.serviceWorker?.controller) {
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
}

registerSW({
  // Register at once and reload when a new service worker takes over.
  immediate: true,
  onRegisteredSW(url, reg) {
    // An open tab notices a deploy only when it checks; the tests want ~1 s.
    if (reg) setInterval(() => reg.update(), 1000)
  },
})
