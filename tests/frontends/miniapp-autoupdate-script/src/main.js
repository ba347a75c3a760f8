import './style.css'

// Counted on every page load, so a test can tell how often the page reloaded.
sessionStorage.setItem('loads', String(Number(sessionStorage.getItem('loads') || 0) + 1))
// APP_VERSION, replaced at build time: a new version changes this chunk's hash.
window.BUNDLE = __APP_VERSION__

// No `virtual:pwa-register` import: vite-plugin-pwa's registerSW.js (a plain
// navigator.serviceWorker.register) is all the page gets, and it never reloads.
