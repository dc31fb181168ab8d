// Electron main process entry (bundled to dist/electron/main.cjs, next to preload.cjs; the renderer
// is dist/renderer/index.html). Everything testable lives in app.ts and the modules it uses; this
// file only binds them to the real Electron module and the real file layout.
import fs from 'node:fs';
import path from 'node:path';
import { startApp } from './app.ts';
import { createService } from './core/service.ts';
import type { ElectronMain } from './electron-api.ts';

const electron = require('electron') as ElectronMain;

startApp(electron, {
  env: process.env,
  platform: process.platform,
  paths: {
    preload: path.join(__dirname, 'preload.cjs'),
    indexHtml: path.join(__dirname, '..', 'renderer', 'index.html'),
    icon: path.join(electron.app.getAppPath(), 'resources', 'icon.png'),
  },
  createService,
  exists: (file) => fs.existsSync(file),
  log: (message) => console.error(`strata: ${message}`),
  announce: (line) => process.stdout.write(`${line}\n`),
}).catch((e: unknown) => {
  console.error(`strata: ${(e as Error)?.stack ?? e}`);
  electron.app.exit(1);
});
