// Bundles the dashboard into one folder (default `dist`, or the first argument): index.html,
// app.js (src/main.js with ECharts, minified) and app.css. daemon/build.rs runs this into
// the daemon's OUT_DIR, and the binary serves those files: nothing is fetched at run time.
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const out = process.argv[2] ?? 'dist';
mkdirSync(out, { recursive: true });
const common = { bundle: true, minify: true, legalComments: 'none', logLevel: 'warning' };
await esbuild.build({
  ...common,
  entryPoints: ['src/main.js'],
  format: 'iife',
  // Debian's Chromium and what command centres run on their wall PCs.
  target: ['chrome109', 'firefox115'],
  outfile: `${out}/app.js`,
});
await esbuild.build({ ...common, entryPoints: ['src/style.css'], outfile: `${out}/app.css` });
copyFileSync('index.html', `${out}/index.html`);
