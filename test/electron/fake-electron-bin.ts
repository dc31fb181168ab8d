// Stand-in for the Electron binary in start-electron.test.ts (not a test itself). Started by
// scripts/start.mjs as `electron <appDir>` through a small wrapper script. FAKE_ELECTRON_MODE:
//   crash   die at start the way Electron does without its shared libraries (exit 127)
//   ok      load the app's real main bundle (package.json "main") with a fake Electron API, show the
//           window, record what it was given in $FAKE_ELECTRON_RECORD, then quit as if the user closed it
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { fakeMain } from './fake-electron.ts';

const mode = process.env.FAKE_ELECTRON_MODE ?? 'ok';
if (process.env.ELECTRON_RUN_AS_NODE === '1') {
  process.stderr.write('fake electron: ELECTRON_RUN_AS_NODE leaked into the app launch\n');
  process.exit(3);
}
if (mode === 'crash') {
  process.stderr.write('/opt/electron/electron: error while loading shared libraries: libnss3.so: cannot open shared object file: No such file or directory\n');
  process.exit(127);
}

const appDir = path.resolve(process.argv[2]);
const pkg = JSON.parse(fs.readFileSync(path.join(appDir, 'package.json'), 'utf8'));
const f = fakeMain();
const M = Module as unknown as { _load: (request: string, parent: unknown, isMain: boolean) => unknown };
const load = M._load;
M._load = function (request, parent, isMain) {
  return request === 'electron' ? f.electron : load.call(this, request, parent, isMain);
};
createRequire(import.meta.url)(path.join(appDir, pkg.main));
f.app.fireReady();
for (let i = 0; i < 200 && f.windows.length === 0 && f.app.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20));
if (f.app.exitCode !== null) process.exit(f.app.exitCode);
fs.writeFileSync(
  process.env.FAKE_ELECTRON_RECORD!,
  JSON.stringify({
    argv: process.argv.slice(2),
    binding: process.env.STRATA_SQLITE_BINDING ?? null,
    launcher: process.env.STRATA_LAUNCHER ?? null,
    channels: f.ipcMain.handlers.size,
    webPreferences: f.windows[0].options.webPreferences,
  }),
);
f.windows[0].emit('ready-to-show'); // the app announces the ready marker on stdout
setTimeout(() => {
  f.windows[0].close();
  f.app.emit('window-all-closed');
  process.exit(0);
}, 300);
