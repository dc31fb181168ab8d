// Bitmap changes on real QEMU: planned without touching the image, applied as one transaction,
// journaled, and read back both offline (after the daemon stored them) and live over NBD.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { inspect } from '../../electron/core/inspect.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { Operations } from '../../electron/core/store/operations.ts';
import { runBitmapOp, openTarget, planOn } from '../../electron/core/bitmaps/run.ts';
import { NbdClient } from '../../electron/core/nbd/client.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { ExtentBuilder, toExtents } from '../../electron/core/extents.ts';
import { tempDir } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { buildSeed, clusters } from '../core/seed-chain.ts';

const root = path.resolve(import.meta.dirname, '../..');
const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const strata = (home: string, ...args: string[]) => {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/strata.cjs'), ...args], { encoding: 'utf8', env: { ...process.env, STRATA_HOME: home } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const bitmapsOf = (img: string, layer = 0) => inspect(img).layers[layer].bitmaps.map((b) => [b.name, b.flags.join(',')]);

test('without --yes the plan is printed and the image is byte-for-byte unchanged', { timeout: 60000 }, (t) => {
  const dir = tempDir(t);
  const { top, base } = buildSeed(dir);
  const before = [sha(top), sha(base)];
  const r = strata(path.join(dir, 'home'), 'bitmap', 'merge', top, 'bitmap3', `${base}:bitmap1`, '--json');
  assert.equal(r.code, 0, r.err);
  const plan = JSON.parse(r.out);
  assert.equal(plan.applied, false);
  assert.equal(plan.qmp.execute, 'transaction');
  assert.equal(plan.qmp.arguments.actions[0].type, 'block-dirty-bitmap-merge');
  assert.match(plan.summary, new RegExp(`${base}:bitmap1`));
  assert.deepEqual([sha(top), sha(base)], before);
});

test('add, disable, merge, clear, enable, remove through the CLI, read back offline', { timeout: 120000 }, (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top, base } = buildSeed(dir);
  const ok = (...args: string[]) => {
    const r = strata(home, 'bitmap', ...args, '--yes');
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
    return r.out;
  };
  ok('add', top, 'weekly', '--granularity', '64K', '--disabled');
  assert.deepEqual(bitmapsOf(top), [['bitmap3', 'auto'], ['weekly', '']]);
  ok('merge', top, 'weekly', `${base}:bitmap1`, 'bitmap3');
  const merged = JSON.parse(strata(home, 'bitmap', 'show', top, 'weekly', '--json').out);
  assert.equal(clusters(merged.extents), '--11-11-'); // bitmap1 --11---- | bitmap3 ---1-11-
  ok('clear', top, 'weekly');
  assert.equal(inspect(top).layers[0].bitmaps[1].dirtyBytes, 0);
  ok('enable', top, 'weekly');
  assert.deepEqual(bitmapsOf(top), [['bitmap3', 'auto'], ['weekly', 'auto']]);
  ok('disable', top, 'bitmap3');
  assert.deepEqual(bitmapsOf(top), [['bitmap3', ''], ['weekly', 'auto']]);
  ok('remove', top, 'weekly');
  assert.deepEqual(bitmapsOf(top), [['bitmap3', '']]);
  // Nothing is left in-use: every daemon stopped with SIGTERM and stored its bitmaps.
  assert.ok(inspect(top).layers.every((l) => l.bitmaps.every((b) => !b.flags.includes('in-use'))));
  // Every change is in the journal, done, with the QMP exchanged.
  const db = openDb(path.join(home, 'strata.db'));
  t.onTestFinished(() => {
    db.close();
  });
  const ops = new Operations(db).list();
  assert.deepEqual(ops.map((o) => [o.kind, o.state]).reverse(), [
    ['bitmap-add', 'done'], ['bitmap-merge', 'done'], ['bitmap-clear', 'done'], ['bitmap-enable', 'done'], ['bitmap-disable', 'done'], ['bitmap-remove', 'done'],
  ]);
  assert.ok(ops[0].log.some((l) => l.dir === 'out' && l.line.includes('"execute":"transaction"')));
  // The same journal through the command line.
  const hist = strata(home, 'history', '--json');
  assert.equal(hist.code, 0, hist.err);
  assert.deepEqual(JSON.parse(hist.out).map((o: any) => o.summary), ops.map((o) => o.summary));
  assert.match(strata(home, 'history').out, /remove bitmap 'weekly' in .*top\.qcow2/);
});

test('history with no database yet says so and creates nothing', (t) => {
  const home = path.join(tempDir(t), 'fresh-home');
  const r = strata(home, 'history');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /No changes recorded yet/);
  assert.equal(fs.existsSync(home), false);
});

test('refusals: transient on an offline image, duplicates, unknown names, bad granularity', { timeout: 60000 }, (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top } = buildSeed(dir);
  const before = sha(top);
  for (const [args, re] of [
    [['add', top, 'x', '--transient', '--yes'], /transient bitmap on an offline image would vanish/],
    [['add', top, 'bitmap3', '--yes'], /already exists/],
    [['remove', top, 'nope', '--yes'], /no bitmap named 'nope'/],
    [['add', top, 'g', '--granularity', '1000', '--yes'], /power of two/],
    [['enable', top, 'bitmap3', '--yes'], /already recording/],
  ] as [string[], RegExp][]) {
    const r = strata(home, 'bitmap', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}${r.err}`);
    assert.match(r.err, re);
    assert.ok(r.err.includes(top) || /transient/.test(r.err), r.err);
  }
  assert.equal(sha(top), before);
});

test('live target: a persistent bitmap on a read-only node is refused; a failed transaction is journaled', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=ro,read-only=on,file.driver=file,file.filename=${top}`]);
  const db = openDb(path.join(dir, 'home', 'strata.db'));
  t.onTestFinished(() => {
    db.close();
  });
  const ops = new Operations(db);
  await assert.rejects(
    runBitmapOp({ kind: 'socket', socket: d.socket, node: 'ro' }, { op: 'add', name: 'p', persistent: true, disabled: false }, ops, path.join(dir, 'run')),
    (e: any) => e.code === 'E_BAD_INPUT' && /read-only: a persistent bitmap would be accepted by QEMU and silently lost/.test(e.message),
  );
  // Transient is fine on a read-only node.
  await runBitmapOp({ kind: 'socket', socket: d.socket, node: 'ro' }, { op: 'add', name: 'tmp', persistent: false, disabled: false }, ops, path.join(dir, 'run'));
  // A transaction QEMU refuses (the check raced): journaled as failed, with QEMU's class in the error.
  const s = await openTarget({ kind: 'socket', socket: d.socket, node: 'ro' }, { runtimeDir: path.join(dir, 'run'), readOnly: false });
  const plan = await planOn(s, { op: 'add', name: 'twice', persistent: false, disabled: false });
  await s.qmp.execute('block-dirty-bitmap-add', { node: 'ro', name: 'twice' });
  await s.close();
  const bad = { kind: 'socket' as const, socket: d.socket, node: 'ro' };
  await assert.rejects(runBitmapOp(bad, { op: 'add', name: 'twice', persistent: false, disabled: false }, ops, path.join(dir, 'run')), (e: any) => /already exists/.test(e.message));
  assert.equal(plan.actions[0].type, 'block-dirty-bitmap-add');
  const q = await QmpClient.connect(d.socket);
  t.onTestFinished(() => q.close());
  const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
  assert.deepEqual(nodes.find((n) => n['node-name'] === 'ro')['dirty-bitmaps'].map((b: any) => b.name).sort(), ['bitmap3', 'tmp', 'twice']);
});

test('a bitmap added live is readable over NBD with the same contents as offline after stop', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=n,file.driver=file,file.filename=${top}`]);
  const db = openDb(path.join(dir, 'home', 'strata.db'));
  t.onTestFinished(() => {
    db.close();
  });
  await runBitmapOp({ kind: 'socket', socket: d.socket, node: 'n' }, { op: 'add', name: 'copy', persistent: true, disabled: true }, new Operations(db), path.join(dir, 'run'));
  await runBitmapOp({ kind: 'socket', socket: d.socket, node: 'n' }, { op: 'merge', target: 'copy', sources: [{ where: null, name: 'bitmap3' }] }, new Operations(db), path.join(dir, 'run'));
  const q = await QmpClient.connect(d.socket);
  const sock = path.join(dir, 'nbd.sock');
  await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: sock } } });
  await q.execute('block-export-add', { type: 'nbd', id: 'e', 'node-name': 'n', name: 'n', writable: false, bitmaps: ['copy'] });
  const c = await NbdClient.open(sock, 'n', ['qemu:dirty-bitmap:copy']);
  const b = new ExtentBuilder();
  await c.blockStatus('qemu:dirty-bitmap:copy', (o, l, f) => f & 1 && b.push(o, o + l));
  await c.close();
  assert.equal(clusters(toExtents(b.finish())), '---1-11-');
  await q.execute('block-export-del', { id: 'e' });
  await q.close();
  d.child.kill('SIGTERM');
  await new Promise((r) => d.child.once('exit', r));
  const show = JSON.parse(strata(path.join(dir, 'home'), 'bitmap', 'show', top, 'copy', '--json').out);
  assert.equal(clusters(show.extents), '---1-11-');
  assert.deepEqual(show.flags, []);
});
