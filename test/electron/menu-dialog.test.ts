// Small pieces: the app menu, the native image picker, the better-sqlite3 binding hand-over.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import type { MenuItemTemplate } from '../../electron/electron-api.ts';
import { menuTemplate } from '../../electron/menu.ts';
import { IMAGE_DIALOG_OPTIONS, createOpenImageDialog } from '../../electron/dialog.ts';
import { BINDING_ENV, explainStartupError, resolveNativeBinding } from '../../electron/native-sqlite.ts';
import { BINDING_ENV as LAUNCHER_BINDING_ENV } from '../../scripts/electron-sqlite.mjs';
import { FakeBrowserWindow, FakeDialog } from './fake-electron.ts';

function flat(items: MenuItemTemplate[]): MenuItemTemplate[] {
  return items.flatMap((i) => [i, ...flat(i.submenu ?? [])]);
}

test('menu: standard roles only (no links, no custom code), quit reachable, DevTools only unpackaged', () => {
  for (const platform of ['linux', 'win32', 'darwin'] as const) {
    for (const isPackaged of [false, true]) {
      const items = flat(menuTemplate({ platform, appName: 'Strata', isPackaged }));
      assert.equal(items.filter((i) => i.click).length, 0, 'no click handlers');
      const roles = new Set(items.map((i) => i.role).filter(Boolean));
      assert.ok(roles.has('quit'), `${platform}: quit`);
      for (const r of ['copy', 'paste', 'selectAll', 'undo']) assert.ok(roles.has(r as never), `${platform}: ${r}`);
      assert.equal(roles.has('toggleDevTools'), !isPackaged, `${platform} packaged=${isPackaged}: devtools`);
    }
  }
  assert.equal(menuTemplate({ platform: 'darwin', appName: 'Strata', isPackaged: true })[0].label, 'Strata');
  assert.equal(menuTemplate({ platform: 'linux', appName: 'Strata', isPackaged: true })[0].label, 'File');
});

test('image picker: one file, disk-image filters then all files, parented to the window; cancel is null', async () => {
  assert.deepEqual(IMAGE_DIALOG_OPTIONS.properties.includes('multiSelections'), false);
  assert.deepEqual(IMAGE_DIALOG_OPTIONS.filters.map((f) => f.extensions), [['qcow2', 'qcow', 'raw', 'img'], ['*']]);
  const dialog = new FakeDialog();
  const win = new FakeBrowserWindow({ webPreferences: {} as never });
  let current: FakeBrowserWindow | null = win;
  const open = createOpenImageDialog(dialog, () => current);
  assert.equal(await open(), '/images/vm.qcow2');
  assert.equal(dialog.openCalls[0].window, win);
  dialog.result = { canceled: false, filePaths: [] };
  assert.equal(await open(), null);
  dialog.result = { canceled: true, filePaths: ['/ignored'] };
  assert.equal(await open(), null);
  current = null; // no window: an unparented dialog
  dialog.result = { canceled: false, filePaths: ['/a.img', '/b.img'] };
  assert.equal(await open(), '/a.img');
  assert.equal(dialog.openCalls.at(-1)!.window, null);
});

test('native binding: from STRATA_SQLITE_BINDING when it names an existing absolute file', () => {
  assert.equal(BINDING_ENV, LAUNCHER_BINDING_ENV, 'main and scripts/start.mjs agree on the variable');
  const exists = (f: string) => f === '/cache/b.node';
  assert.equal(resolveNativeBinding({ env: {}, exists }), undefined);
  assert.equal(resolveNativeBinding({ env: { [BINDING_ENV]: '' }, exists }), undefined);
  assert.equal(resolveNativeBinding({ env: { [BINDING_ENV]: '/cache/b.node' }, exists }), '/cache/b.node');
  assert.throws(() => resolveNativeBinding({ env: { [BINDING_ENV]: '/cache/gone.node' }, exists }), /does not exist.*npm start/);
  assert.throws(() => resolveNativeBinding({ env: { [BINDING_ENV]: 'rel/b.node' }, exists }), /absolute path/);
});

test('startup errors: the ABI mismatch gets its fix spelled out', () => {
  const abi = 'was compiled against a different Node.js version using NODE_MODULE_VERSION 115';
  assert.match(explainStartupError(abi, { bindingFromEnv: false, isPackaged: false }), /Start the app with `npm start`/);
  assert.match(explainStartupError(abi, { bindingFromEnv: true, isPackaged: false }), /Delete node_modules\/\.cache\/strata/);
  assert.equal(explainStartupError('disk full', { bindingFromEnv: false, isPackaged: false }), 'disk full');
});
