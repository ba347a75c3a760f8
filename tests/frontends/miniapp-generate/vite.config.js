// vite-plugin-pwa generateSW, registerType 'autoUpdate', registered from the
// entry through `virtual:pwa-register` (injectRegister false). With
// injectRegister false the plugin no longer sets skipWaiting/clientsClaim for
// autoUpdate (it does so only for 'auto'), and without them the new worker
// waits until every tab is closed: the page's `activated` reload never fires.
import { defineConfig } from 'vite'
import { VitePWA } from 'vite-plugin-pwa'

const version = process.env.APP_VERSION
if (!version) throw new Error('set APP_VERSION (e.g. APP_VERSION=v1) to build this fixture')

export default defineConfig({
  define: { __APP_VERSION__: JSON.stringify(version) },
  plugins: [
    {
      name: 'app-version',
      transformIndexHtml: (html) => html.replaceAll('%APP_VERSION%', version),
    },
    VitePWA({
      registerType: 'autoUpdate',
      injectRegister: false,
      manifest: { name: 'miniapp', short_name: 'miniapp', start_url: '/', display: 'standalone' },
      workbox: {
        globPatterns: ['**/*.{html,js,css,webmanifest}'],
        skipWaiting: true,
        clientsClaim: true,
      },
    }),
  ],
})
