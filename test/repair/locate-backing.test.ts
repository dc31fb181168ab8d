// Locating a missing backing file through the contract, as the app does it: repair:check-backing
// reads only (what the file is, whether it fits, the exact command), repair:rebase needs the user's
// confirmation, refuses a held image, and is journaled; the chain then reads whole again.
import { afterEach, beforeEach, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { imageLockState } from '../../electron/core/daemon/image-lock.ts';
import { inspect } from '../../electron/core/inspect.ts';
import { qemuImg, tempDir } from '../helpers/qemu.ts';
import { buildSeed } from '../core/seed-chain.ts';

let service: Service;
let dir: string;
let top: string;
let moved: string;
const scanned: string[] = [];
const sum = (p: string) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

beforeEach((t) => {
  dir = tempDir(t);
  fs.mkdirSync(path.join(dir, 'vm'));
  ({ top } = buildSeed(path.join(dir, 'vm')));
  fs.mkdirSync(path.join(dir, 'elsewhere'));
  moved = path.join(dir, 'elsewhere', 'base-renamed.qcow2');
  fs.renameSync(path.join(dir, 'vm', 'base.qcow2'), moved);
  scanned.length = 0;
  service = createService({ dataDir: path.join(dir, 'home'), mode: 'browser' });
  service.subscribe((e, p) => void (e === 'chain:scanned' && scanned.push((p as { image: string }).image)));
});
afterEach(async () => {
  await service.close();
});

async function call(channel: string, arg: unknown): Promise<any> {
  const r = await dispatch(service, channel as any, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

test('check: the missing file and where it was expected; a wrong file is explained; nothing is written', async () => {
  const before = sum(top);
  const nowhere = await call('repair:check-backing', { image: top, backing: path.join(dir, 'nope.qcow2') });
  expect(nowhere.missing).toEqual({ file: 'base.qcow2', expectedAt: path.join(dir, 'vm', 'base.qcow2'), referencedBy: top });
  expect(nowhere.problems).toEqual([`${path.join(dir, 'nope.qcow2')} does not exist`]);
  expect(nowhere.command).toBeNull();

  const other = path.join(dir, 'other.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', other, '1M');
  const wrongSize = await call('repair:check-backing', { image: top, backing: other });
  expect(wrongSize.format).toBe('qcow2');
  expect(wrongSize.virtualSize).toBe(1 << 20);
  expect(wrongSize.problems).toHaveLength(1);
  expect(wrongSize.problems[0]).toMatch(/virtual size is 1048576 bytes; the layer above it has 524288/);
  expect(wrongSize.command).toBeNull();

  const raw = path.join(dir, 'disk.raw');
  qemuImg('create', '-q', '-f', 'raw', raw, '512K');
  expect((await call('repair:check-backing', { image: top, backing: raw })).problems[0]).toMatch(/it is a raw image; the layer names a qcow2 backing file/);
  expect((await call('repair:check-backing', { image: top, backing: top })).problems[0]).toMatch(/already a layer of this chain/);

  const right = await call('repair:check-backing', { image: top, backing: moved });
  expect(right.problems).toEqual([]);
  expect(right.held).toBe(false);
  expect(right.command).toEqual(['qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', moved, '-F', 'qcow2', top]);
  expect(sum(top)).toBe(before);
});

test('rebase: refused without confirm; with it the layer points at the file, the chain reads whole, the plan is in the history', async () => {
  const before = sum(top);
  await expect(call('repair:rebase', { image: top, backing: moved })).rejects.toMatchObject({ code: 'E_BAD_INPUT', message: expect.stringContaining('confirm') });
  await expect(call('repair:rebase', { image: top, backing: moved, confirm: false })).rejects.toMatchObject({ code: 'E_BAD_INPUT' });
  expect(sum(top)).toBe(before);

  const out = await call('repair:rebase', { image: top, backing: moved, confirm: true });
  expect(out.applied).toBe(true);
  expect(qemuImg('info', '--output=json', top)).toContain(`"backing-filename": "${moved}"`);
  const r = inspect(top);
  expect(r.layers.map((l) => l.path)).toEqual([top, moved]);
  expect(r.checkpoints.map((c) => [c.name, c.state])).toEqual([
    ['bitmap1', 'ok'],
    ['bitmap2', 'ok'],
    ['bitmap3', 'ok'],
  ]);
  expect(scanned).toContain(top);
  const plans = await call('history:plans', { limit: 10 });
  const p = plans.find((x: any) => x.id === out.plan);
  expect(p.kind).toBe('repair');
  expect(p.state).toBe('done');
  expect(JSON.stringify(p.steps)).toContain('rebase');
});

test('rebase of a wrong file is refused naming it; a held image is refused and left alone', async () => {
  const other = path.join(dir, 'other.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', other, '1M');
  await expect(call('repair:rebase', { image: top, backing: other, confirm: true })).rejects.toMatchObject({ code: 'E_BAD_INPUT', message: expect.stringContaining(other) });

  // a QEMU holding the top open read-write (without its backing: it is missing). The holder is a
  // fixture: if it is gone before the checks ran (a loaded machine), it is started again, and the
  // checks count only while it is alive and holding the lock.
  for (let attempt = 1; ; attempt++) {
    let stderr = '';
    const holder = spawn('qemu-io', ['-c', 'sleep 60000', `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: top } })}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    holder.stderr!.on('data', (d) => (stderr += d));
    let gone = false;
    const exited = new Promise((r) => holder.once('exit', (code, sig) => { gone = true; r([code, sig]); }));
    try {
      // until it holds the lock and has written its own open (bitmaps marked in-use): from then on the file is still
      const settled = async () => (await imageLockState(top)) === 'locked' && qemuImg('info', '-U', '--output=json', top).includes('in-use');
      let ok = false;
      for (let i = 0; i < 100 && !gone && !(ok = await settled()); i++) await new Promise((r) => setTimeout(r, 100));
      if (!ok || gone) {
        if (attempt < 3) continue;
        throw new Error(`the holder never held ${top} (exited: ${gone}; stderr: ${stderr})`);
      }
      const before = sum(top);
      const check = await call('repair:check-backing', { image: top, backing: moved });
      if (gone && attempt < 3) continue;
      expect(check.held).toBe(true);
      expect(check.command).toBeNull();
      await expect(call('repair:rebase', { image: top, backing: moved, confirm: true })).rejects.toMatchObject({ code: 'E_BUSY', message: expect.stringContaining(top) });
      expect(sum(top)).toBe(before);
      break;
    } finally {
      holder.kill('SIGKILL');
      await exited;
    }
  }
});
