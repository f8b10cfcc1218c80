// osdface's service worker: caches the app and the model on install (precache.json lists every
// file of the build), then answers this origin's requests from the cache, so the page works
// offline after the first visit. Nothing else is fetched or sent anywhere.
const CACHE = 'osdface-__OSDFACE_VERSION__';

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const list = await (await fetch('precache.json', { cache: 'no-store' })).json();
    const cache = await caches.open(CACHE);
    await cache.addAll(list.files.map((f) => new Request(f, { cache: 'reload' })));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE && key.startsWith('osdface-')) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    // the page itself: the network first (a new version), the cache when offline
    if (req.mode === 'navigate') {
      try {
        return await fetch(req);
      } catch {
        return (await cache.match(req, { ignoreSearch: true })) ?? (await cache.match('./')) ?? Response.error();
      }
    }
    const hit = await cache.match(req, { ignoreSearch: true });
    if (hit) return hit;
    const res = await fetch(req);
    if (res.ok && res.status === 200) cache.put(req, res.clone()).catch(() => undefined);
    return res;
  })());
});
