// The build slipway must refuse: vite-plugin-pwa with registerType 'autoUpdate'
// and injectRegister 'script'. The page loads only the plain registerSW.js,
// which registers sw.js and never reloads an open page into a new bundle.
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
      injectRegister: 'script',
      manifest: { name: 'miniapp', short_name: 'miniapp', start_url: '/', display: 'standalone' },
      workbox: { globPatterns: ['**/*.{html,js,css,webmanifest}'] },
    }),
  ],
})
