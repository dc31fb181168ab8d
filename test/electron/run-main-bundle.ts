// Child-process helper for main-bundle.test.ts (not a test itself): loads a bundled main process
// (dist/electron/main.cjs) under plain Node with require('electron') answered by the fake, drives it
// to ready, and prints what it did as one JSON line.
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { fakeMain, frame } from './fake-electron.ts';

const mainFile = path.resolve(process.argv[2]);
const f = fakeMain();
const M = Module as unknown as { _load: (request: string, parent: unknown, isMain: boolean) => unknown };
const load = M._load;
M._load = function (request, parent, isMain) {
  if (request === 'electron') return f.electron;
  return load.call(this, request, parent, isMain);
};

createRequire(import.meta.url)(mainFile);
f.app.fireReady();
for (let i = 0; i < 100 && f.windows.length === 0 && f.app.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20));

const indexHtml = path.join(path.dirname(mainFile), '..', 'renderer', 'index.html');
const out = {
  exitCode: f.app.exitCode,
  errorBoxes: f.dialog.errorBoxes,
  channels: [...f.ipcMain.handlers.keys()].sort(),
  windows: f.windows.map((w) => ({ webPreferences: w.options.webPreferences, loaded: w.loaded })),
  indexHtml,
  info: f.ipcMain.handlers.has('app:info') ? await f.ipcMain.invoke('app:info', frame(pathToFileURL(indexHtml).href)) : null,
  foreign: f.ipcMain.handlers.has('app:info') ? await f.ipcMain.invoke('app:info', frame('https://evil.example/')) : null,
  csp: f.session.headersListener ? f.session.respond('file:///x').responseHeaders : null,
};
f.app.quit();
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
