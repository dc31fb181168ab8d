// scripts/launch-plan.mjs: which mode `npm start` picks, and the one line that says why.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import {
  NOT_INSTALLED,
  earlyExitReason,
  fallbackLine,
  hasDisplay,
  lastErrorLine,
  planLaunch,
  type LaunchFacts,
} from '../../scripts/launch-plan.mjs';

const usable: LaunchFacts = {
  webFlag: false,
  electronInstalled: true,
  electronPath: '/p/node_modules/electron/dist/electron',
  binaryExists: true,
  display: true,
  platform: 'linux',
};

test('plan: a usable Electron with a display runs the desktop app', () => {
  assert.deepEqual(planLaunch(usable), { mode: 'electron', reason: null });
  assert.deepEqual(planLaunch({ ...usable, platform: 'darwin' }), { mode: 'electron', reason: null });
});

test('plan: --web goes straight to browser mode, silently, whatever else holds', () => {
  assert.deepEqual(planLaunch({ ...usable, webFlag: true }), { mode: 'web', reason: null });
  assert.deepEqual(planLaunch({ ...usable, webFlag: true, electronInstalled: false }), { mode: 'web', reason: null });
});

test('plan: package absent (as on this machine and CI)', () => {
  const p = planLaunch({ ...usable, electronInstalled: false, electronPath: null, binaryExists: false });
  assert.equal(p.mode, 'web');
  assert.equal(p.reason, NOT_INSTALLED);
  assert.equal(
    fallbackLine(p.reason!),
    'Electron is not available (the electron package is not installed: its binary could not be downloaded); starting browser mode instead.',
  );
});

test('plan: package present but require("electron") threw (no path.txt: download failed)', () => {
  const p = planLaunch({ ...usable, electronPath: null, binaryExists: false, electronError: 'Electron failed to install correctly, please delete node_modules/electron and try installing again\n    at x' });
  assert.equal(p.mode, 'web');
  assert.equal(p.reason, 'the electron package is installed but its binary is missing: Electron failed to install correctly, please delete node_modules/electron and try installing again');
});

test('plan: binary path named but the file is not there', () => {
  const p = planLaunch({ ...usable, binaryExists: false });
  assert.equal(p.mode, 'web');
  assert.match(p.reason!, /the Electron binary \/p\/node_modules\/electron\/dist\/electron does not exist/);
});

test('plan: no display on Linux', () => {
  const p = planLaunch({ ...usable, display: false });
  assert.equal(p.mode, 'web');
  assert.equal(p.reason, 'there is no display: neither DISPLAY nor WAYLAND_DISPLAY is set');
});

test('plan: STRATA_ELECTRON=0 forces browser mode with its own reason', () => {
  assert.deepEqual(planLaunch({ ...usable, electronDisabled: true }), { mode: 'web', reason: 'STRATA_ELECTRON=0 is set' });
});

test('plan: the first missing fact is the one reported', () => {
  assert.equal(planLaunch({ ...usable, electronInstalled: false, display: false }).reason, NOT_INSTALLED);
});

test('hasDisplay: X11 or Wayland on Linux; always on macOS and Windows', () => {
  assert.equal(hasDisplay({}, 'linux'), false);
  assert.equal(hasDisplay({ DISPLAY: '' }, 'linux'), false);
  assert.equal(hasDisplay({ DISPLAY: ':0' }, 'linux'), true);
  assert.equal(hasDisplay({ WAYLAND_DISPLAY: 'wayland-0' }, 'linux'), true);
  assert.equal(hasDisplay({}, 'freebsd'), false);
  assert.equal(hasDisplay({}, 'darwin'), true);
  assert.equal(hasDisplay({}, 'win32'), true);
});

test('early exit: a crash or error code is a failure with its telling stderr line; a clean exit is not', () => {
  const libs = '[123:0101/000000.000:WARNING:x] noise\n/p/electron: error while loading shared libraries: libnss3.so: cannot open shared object file: No such file or directory\n';
  assert.equal(
    earlyExitReason(127, null, libs),
    'Electron exited with code 127 at start: /p/electron: error while loading shared libraries: libnss3.so: cannot open shared object file: No such file or directory',
  );
  assert.equal(
    earlyExitReason(null, 'SIGTRAP', '[1:2:FATAL:electron_main_delegate.cc(294)] Running as root without --no-sandbox is not supported.\n'),
    'Electron was killed by SIGTRAP at start: [1:2:FATAL:electron_main_delegate.cc(294)] Running as root without --no-sandbox is not supported.',
  );
  assert.equal(earlyExitReason(1, null, ''), 'Electron exited with code 1 at start');
  assert.equal(earlyExitReason(0, null, 'whatever'), null, 'second instance handing over');
});

test('lastErrorLine: prefers a line that names a failure, trims long ones', () => {
  assert.equal(lastErrorLine('a\nFailed to open X\nb\n'), 'Failed to open X');
  assert.equal(lastErrorLine('just text\nlast\n'), 'last');
  assert.equal(lastErrorLine(''), '');
  assert.equal(lastErrorLine(undefined), '');
  assert.equal(lastErrorLine('error ' + 'x'.repeat(400)).length, 300);
});
