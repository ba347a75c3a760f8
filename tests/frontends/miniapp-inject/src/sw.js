// The service worker vite-plugin-pwa compiles in injectManifest mode: it
// replaces self.__WB_MANIFEST with the precache manifest of the build.
import { cleanupOutdatedCaches, precacheAndRoute } from 'workbox-precaching'
import { clientsClaim } from 'workbox-core'

cleanupOutdatedCaches()
precacheAndRoute(self.__WB_MANIFEST)

// Take over at once: the page's `activated` listener (registerType
// 'autoUpdate') then reloads open tabs into the new bundle.
self.skipWaiting()
clientsClaim()
