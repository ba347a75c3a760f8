// vite-plugin-pwa injectManifest: src/sw.js (workbox-precaching) gets the
// precache manifest; the entry registers it through `virtual:pwa-register`.
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
      strategies: 'injectManifest',
      srcDir: 'src',
      filename: 'sw.js',
      registerType: 'autoUpdate',
      injectRegister: false,
      manifest: { name: 'miniapp', short_name: 'miniapp', start_url: '/', display: 'standalone' },
      injectManifest: { globPatterns: ['**/*.{html,js,css,webmanifest}'] },
    }),
  ],
})
