// Bundles everything that runs without TypeScript at run time:
//   dist/cli.cjs            the strata command (bin/strata.cjs requires it)
//   dist/web.mjs            browser mode (npm run web, and npm start's fallback)
//   dist/electron/*.cjs     Electron main process and sandboxed preload
//   dist/renderer/          the Vue app (Vite)
// Runs from npm's prepare script, so `npm install` leaves a working `npx strata`.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const root = path.resolve(import.meta.dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const only = process.argv.slice(2);
const want = (name) => only.length === 0 || only.includes(name);
const t0 = Date.now();

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  define: { __STRATA_VERSION__: JSON.stringify(pkg.version) },
  external: ['electron', 'better-sqlite3'],
  absWorkingDir: root,
};
// ESM bundles still meet require() in CommonJS dependencies (ws): give them one.
const esmBanner = { js: "import { createRequire as __strataCreateRequire } from 'node:module'; const require = __strataCreateRequire(import.meta.url);" };

const jobs = [];
// CommonJS: the command starts faster than through the ESM loader.
if (want('cli')) jobs.push(build({ ...common, entryPoints: ['electron/core/cli/main.ts'], outfile: 'dist/cli.cjs', format: 'cjs', sourcemap: false }));
if (want('web')) jobs.push(build({ ...common, entryPoints: ['electron/core/server/web-main.ts'], outfile: 'dist/web.mjs', format: 'esm', banner: esmBanner }));
if (want('electron')) {
  if (fs.existsSync(path.join(root, 'electron/main.ts'))) {
    jobs.push(build({ ...common, entryPoints: ['electron/main.ts'], outfile: 'dist/electron/main.cjs', format: 'cjs' }));
  }
  if (fs.existsSync(path.join(root, 'electron/preload.ts'))) {
    // A sandboxed preload may require nothing but 'electron': bundle everything else in.
    jobs.push(build({ ...common, entryPoints: ['electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs', platform: 'browser', external: ['electron'] }));
  }
}
await Promise.all(jobs);

if (want('renderer') && fs.existsSync(path.join(root, 'renderer/vite.config.ts'))) {
  const vite = path.join(root, 'node_modules/vite/bin/vite.js');
  const r = spawnSync(process.execPath, [vite, 'build', '--config', 'renderer/vite.config.ts', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
console.log(`strata: built in ${Date.now() - t0} ms`);
