// readLiveBitmap() itself, on one QMP session: interrupted after every step it still leaves
// nothing behind, repeated calls work, and a transient bitmap (no offline twin) reads too.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { readLiveBitmap, NbdServerRunningError, TEMP_PREFIX } from '../../electron/core/bitmaps/live-contents.ts';
import { toExtents } from '../../electron/core/extents.ts';
import { tempDir, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { buildSeed, clusters } from '../core/seed-chain.ts';

async function state(q: QmpClient) {
  const exports = await q.execute<unknown[]>('query-block-exports');
  const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
  const bitmaps = nodes.flatMap((n) => ((n['dirty-bitmaps'] ?? []) as any[]).map((b) => `${n['node-name']}/${b.name}${b.busy ? ' (busy)' : ''}`)).sort();
  return { exports, bitmaps };
}

async function nbdServerRunning(q: QmpClient): Promise<boolean> {
  try {
    await q.execute('nbd-server-stop');
    return true;
  } catch (e) {
    if (/not running/.test((e as Error).message)) return false;
    throw e;
  }
}

async function setup(t: Cleanup) {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  const q = await QmpClient.connect(d.socket);
  t.onTestFinished(() => q.close());
  return { dir, top, q, runtimeDir: path.join(dir, 'run') };
}

test('interrupted after each step, the read cleans up everything it made; then a full read works', { timeout: 60000 }, async (t) => {
  const { q, runtimeDir } = await setup(t);
  const before = await state(q);
  const steps = ['query-named-block-nodes', 'transaction (add copy + merge)', 'nbd-server-start', 'block-export-add', 'NBD handshake'];
  for (const at of steps) {
    const ac = new AbortController();
    await assert.rejects(
      readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, signal: ac.signal, trace: (s) => s === at && ac.abort() }),
      (e: any) => e.code === 'E_QMP_INTERRUPTED' && /interrupted/.test(e.message),
      at,
    );
    assert.deepEqual(await state(q), before, `after an abort at ${at}`);
    assert.equal(await nbdServerRunning(q), false, `NBD server after an abort at ${at}`);
    assert.deepEqual(fs.existsSync(runtimeDir) ? fs.readdirSync(runtimeDir) : [], [], `socket folder after an abort at ${at}`);
  }
  const seen: string[] = [];
  const r = await readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, trace: (s) => seen.push(s) });
  assert.equal(clusters(toExtents(r.extents)), '---1-11-');
  assert.equal(r.recording, true);
  assert.deepEqual(seen, [
    'query-named-block-nodes',
    'transaction (add copy + merge)',
    'nbd-server-start',
    'block-export-add',
    'NBD handshake',
    'NBD block status',
    'block-export-del + BLOCK_EXPORT_DELETED',
    'block-dirty-bitmap-remove',
    'nbd-server-stop',
  ]);
  assert.deepEqual(await state(q), before);
});

test('a transient bitmap, and many reads in a row on one session, leave the node as it was', { timeout: 60000 }, async (t) => {
  const { q, runtimeDir } = await setup(t);
  await q.execute('block-dirty-bitmap-add', { node: 'top', name: 'scratch', persistent: false, granularity: 65536 });
  await q.execute('block-dirty-bitmap-merge', { node: 'top', target: 'scratch', bitmaps: ['bitmap3'] });
  const before = await state(q);
  for (let i = 0; i < 10; i++) {
    const r = await readLiveBitmap(q, 'top', i % 2 ? 'scratch' : 'bitmap3', { runtimeDir });
    assert.equal(clusters(toExtents(r.extents)), '---1-11-');
    assert.equal(r.persistent, i % 2 === 0);
  }
  assert.deepEqual(await state(q), before);
  assert.ok(!before.bitmaps.some((b) => b.includes(TEMP_PREFIX)));
});

test('an NBD server already running gives NbdServerRunningError and the copy is removed', { timeout: 60000 }, async (t) => {
  const { dir, q, runtimeDir } = await setup(t);
  await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: path.join(dir, 'other.sock') } } });
  const before = await state(q);
  await assert.rejects(readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, where: 'vm.qmp' }), (e: any) => e instanceof NbdServerRunningError && e.message.startsWith('vm.qmp: '));
  assert.deepEqual(await state(q), before);
  assert.equal(await nbdServerRunning(q), true, 'their server still runs (and is stopped here by the probe)');
});

/** The pid of a process that has exited (reaped): what a killed Strata's temporary names carry. */
function deadPid(): number {
  const r = spawnSync('true');
  assert.ok(r.pid);
  return r.pid!;
}

/** What a Strata killed in the middle of a live read leaves in QEMU: its server, its export of a transient copy. */
async function leftoverOf(q: QmpClient, dir: string, pid: number): Promise<string> {
  const name = `${TEMP_PREFIX}${pid}-leftover`;
  await q.execute('block-dirty-bitmap-add', { node: 'top', name, granularity: 65536, persistent: false, disabled: true });
  await q.execute('block-dirty-bitmap-merge', { node: 'top', target: name, bitmaps: ['bitmap3'] });
  await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: path.join(dir, 'killed.sock') } } });
  await q.execute('block-export-add', { type: 'nbd', id: name, 'node-name': 'top', name, writable: false, bitmaps: [name] });
  return name;
}

test('the NBD server a killed Strata left (only its strata-show-PID- exports, that pid gone) is reclaimed: the read works and leaves nothing', { timeout: 60000 }, async (t) => {
  const { dir, q, runtimeDir } = await setup(t);
  const clean = await state(q);
  const expected = await readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, where: 'vm.qmp' });
  await leftoverOf(q, dir, deadPid());
  const steps: string[] = [];
  const r = await readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, where: 'vm.qmp', trace: (s) => steps.push(s) });
  assert.deepEqual(r.extents, expected.extents, 'the same contents as before the leftover');
  assert.ok(steps.some((s) => /^reclaimed the NBD server a killed Strata left \(strata-show-\d+-leftover\)$/.test(s)), steps.join(' | '));
  assert.deepEqual(await state(q), clean, 'its export and its copy are gone too');
  assert.equal(await nbdServerRunning(q), false, 'no server is left running');
});

test('a server is not reclaimed when an export is not a dead Strata\'s: a running Strata\'s, or one with none proves nothing', { timeout: 60000 }, async (t) => {
  const { dir, q, runtimeDir } = await setup(t);
  // A Strata still running (this test's own sleeping child stands in for it).
  const sleeper = spawn('sleep', ['60']);
  t.onTestFinished(() => void sleeper.kill('SIGKILL'));
  await leftoverOf(q, dir, sleeper.pid!);
  const held = await state(q);
  await assert.rejects(readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, where: 'vm.qmp' }), (e: any) => e instanceof NbdServerRunningError);
  assert.deepEqual(await state(q), held, 'its export and copy untouched');
  assert.equal(await nbdServerRunning(q), true);

  // A dead Strata's export beside someone else's: someone else's server is in use; nothing touched.
  const name = await leftoverOf(q, dir, deadPid());
  await q.execute('block-export-add', { type: 'nbd', id: 'their-backup', 'node-name': 'top', name: 'their-backup', writable: false });
  const mixed = await state(q);
  await assert.rejects(readLiveBitmap(q, 'top', 'bitmap3', { runtimeDir, where: 'vm.qmp' }), (e: any) => e instanceof NbdServerRunningError);
  assert.deepEqual(await state(q), mixed);
  assert.ok((mixed.exports as { id: string }[]).some((x) => x.id === name));
});
