// slipway stamps SW_VERSION from the bundle's content on every deploy, so
// this file changes bytes exactly when the bundle does.
const SW_VERSION = "dev";
const CACHE = `honeychat-${SW_VERSION}`;
// The bundle's hashed files are cached as the page first loads them.
const FILES = ["/", "/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  // cache: "reload" goes past the HTTP cache, so the new cache holds the
  // new release and not whatever the browser kept from the old one.
  const requests = FILES.map((url) => new Request(url, { cache: "reload" }));
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(requests))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// Cache first: the release this worker installed is what the app shows. A
// hashed asset not cached yet is fetched once and kept: its name changes
// when its content does.
self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET") return;
  event.respondWith(
    caches.match(event.request).then((hit) => hit || fetch(event.request).then((response) => {
      if (response.ok && new URL(event.request.url).pathname.startsWith("/assets/")) {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(event.request, copy));
      }
      return response;
    })),
  );
});
