const path = require("node:path");

/** The bridging fixture: two static pages, one link between them. */
module.exports = {
  output: "standalone",
  // node_modules is tests/frontends', shared by every fixture.
  outputFileTracingRoot: path.join(__dirname, "../.."),
  env: { APP_VERSION: process.env.APP_VERSION || "dev" },
  eslint: { ignoreDuringBuilds: true },
};
