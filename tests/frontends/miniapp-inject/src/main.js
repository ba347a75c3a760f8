import { registerSW } from 'virtual:pwa-register'
import './style.css'

// Counted on every page load, so a test can tell how often the page reloaded.
sessionStorage.setItem('loads', String(Number(sessionStorage.getItem('loads') || 0) + 1))
// APP_VERSION, replaced at build time: a new version changes this chunk's hash.
window.BUNDLE = __APP_VERSION__

registerSW({
  // Register at once and reload when a new service worker takes over.
  immediate: true,
  onRegisteredSW(url, reg) {
    // An open tab notices a deploy only when it checks; the tests want ~1 s.
    if (reg) setInterval(() => reg.update(), 1000)
  },
})
