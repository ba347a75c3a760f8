// The marketing site nginx serves from frontend/website/current. Astro's
// defaults, stated: a directory per page (en/index.html), and stylesheets
// as hashed files under /_astro/, which the astro plugin keeps for pages
// still open from the previous release.
import { defineConfig } from "astro/config";

export default defineConfig({
  build: { format: "directory", inlineStylesheets: "never" },
});
