// The pid an earlier Strata recorded for its storage daemon may belong to another program by now:
// recovery waits for, and signals, only a qemu-storage-daemon whose command line names the image.
import { test, expect } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { qemuImg } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { isStorageDaemonFor, stopStorageDaemon, processAlive } from '../../electron/core/processes.ts';

test('a real storage daemon for the image is recognised and stopped with SIGTERM (its bitmaps stored); another process with that pid, or a daemon for another image, is not', { timeout: 30000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-proc-'));
  t.onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'disk.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
  qemuImg('bitmap', '--add', img, 'c1');
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${img}`]);
  const pid = d.child.pid!;
  expect(isStorageDaemonFor(pid, img)).toBe(true);
  expect(isStorageDaemonFor(pid, path.join(dir, 'other.qcow2')), 'a daemon for another image').toBe(false);

  // a recycled pid: any other program, even one whose arguments name the image
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', img], { stdio: 'ignore' });
  t.onTestFinished(() => void other.kill('SIGKILL'));
  await new Promise((r) => other.once('spawn', r));
  expect(isStorageDaemonFor(other.pid!, img)).toBe(false);
  expect(isStorageDaemonFor(null, img)).toBe(false);

  expect(await stopStorageDaemon(pid)).toBe(true);
  expect(processAlive(pid)).toBe(false);
  expect(isStorageDaemonFor(pid, img), 'gone: not a daemon any more').toBe(false);
  expect(processAlive(other.pid!), 'the other program was left alone').toBe(true);
});
