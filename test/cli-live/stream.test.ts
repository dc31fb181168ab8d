// strata stream --socket PATH --node NODE [--base LAYER] on a running disk (a qemu-storage-daemon
// standing in for the VM, its top made by a live snapshot): the plan changes nothing; --yes carries
// the removed layers' bitmaps into the top and streams while the guest writes; afterwards every
// checkpoint Strata calls ok covers every block that differs between its raw copy and the disk now,
// qemu-img check passes, writes after are tracked; a Strata killed mid-plan is finished or rolled
// back by the next run.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { qemuInfoChain } from '../helpers/qemu.ts';
import { strata } from './helpers.ts';
import { liveChain, guestWrites, liveRawCopy, assertTruth, flags, graph, liveCore, appStart, type LiveChain } from './live-chain.ts';

const MiB = 1024 * 1024;

/** The chain with a live snapshot on top (node 'top', checkpoint c3) and a write in it. */
async function withTop(c: LiveChain) {
  const top = path.join(c.dir, 'top.qcow2');
  const truth: Record<string, string> = { ...c.truth, c3: await liveRawCopy(c, 'disk', path.join(c.dir, 'at-c3.raw')) };
  const s = await strata(c.home, 'snapshot', '--socket', c.daemon.socket, '--node', 'disk', top, '--checkpoint', 'c3', '--yes');
  assert.equal(s.code, 0, s.err);
  await guestWrites(c, 'top', ['write -P 0x61 6M 256k', 'write -P 0x62 3M 64k']);
  return { top, truth };
}

test('strata stream --socket --base: the plan changes nothing; --yes merges the removed layer\'s bitmaps and streams; every checkpoint stays ok', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const { top, truth } = await withTop(c);
  const before = await graph(c.daemon.socket);

  const dry = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--base', c.base, '--json');
  assert.equal(dry.code, 0, dry.err);
  const plan = JSON.parse(dry.out);
  assert.equal(plan.applied, false);
  assert.deepEqual(plan.removed, [c.mid]);
  assert.equal(plan.base, c.base);
  assert.deepEqual(plan.carried.map((x: any) => [x.name, x.created]), [['b1', false], ['b2', false]]);
  assert.deepEqual(plan.plan.map((s: any) => s.qmp.map((q: any) => q.execute)), [['transaction'], ['block-stream']]);
  const tx = plan.plan[0].qmp[0].arguments.actions;
  assert.deepEqual(tx.map((a: any) => [a.type, a.data.target, a.data.bitmaps.map((b: any) => b.name)]), [
    // every bitmap of mid that counts for the checkpoint (b1 and the later b2), so the top's copy covers mid by itself
    ['block-dirty-bitmap-merge', 'b1', ['b1', 'b2']],
    ['block-dirty-bitmap-merge', 'b2', ['b2']],
  ]);
  const job = plan.plan[1].qmp[0];
  assert.equal(job.arguments.device, 'top');
  assert.equal(job.arguments['base-node'], plan.baseNode);
  assert.equal(job.arguments['backing-file'], undefined, 'QEMU writes the base\'s own name');
  assert.deepEqual(plan.after.map((v: any) => [v.name, v.state]).sort(), [['b1', 'ok'], ['b2', 'ok'], ['c3', 'ok']]);
  assert.deepEqual(await graph(c.daemon.socket), before, 'the plan changed nothing in QEMU');
  const text = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--base', c.base);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /merged: b1 from mid\.qcow2/);
  assert.match(text.out, /qmp \{"execute":"block-stream"/);
  assert.match(text.out, /Nothing was changed\. Run again with --yes to apply\./);

  const r = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--base', c.base, '--yes', '--json');
  assert.equal(r.code, 0, r.err);
  const done = JSON.parse(r.out);
  assert.equal(done.outcome.state, 'done', done.outcome.resolution);
  const after = await graph(c.daemon.socket);
  assert.deepEqual(after.backing.filter((e: string) => e.startsWith('top->')), [`top->${done.baseNode}`]);
  assert.equal(after.files.top, top, 'QEMU still names the top by its plain file name');
  assert.deepEqual(after.bitmaps.top, ['b1:rec', 'b2:rec', 'c3:rec']);
  const h = JSON.parse((await strata(c.home, 'history', '--plans', '--json')).out);
  assert.deepEqual(h.map((p: any) => [p.kind, p.state]), [['stream-live', 'done'], ['snapshot-live', 'done']]);

  await guestWrites(c, 'top', ['write -P 0x63 9M 128k']);
  await c.stop();
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top, c.base]);
  assert.deepEqual(flags(top), { b1: ['auto'], b2: ['auto'], c3: ['auto'] });
  assertTruth(c, top, truth);
});

test('a guest writing while the stream job runs, with every layer streamed (the seed style: a checkpoint created in the top): nothing is lost', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t, { seed: true });
  const { top, truth } = await withTop(c);
  const r = liveCore(c, ['stream', c.daemon.socket, 'top', c.nbd], { WRITE_DURING: '3000', SPEED: String(2 * MiB) });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.state, 'done', r.out.resolution);
  assert.equal(r.out.writerCode, 0, 'the writer wrote everything');
  assert.equal(r.out.duringJob, true, 'the guest wrote into the top while the job ran');
  await c.stop();
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top], 'standalone');
  assert.deepEqual(Object.keys(flags(top)).sort(), ['b1', 'b2', 'c3']);
  // Every checkpoint covers every change, and no more (the top's bitmaps, all made in this QEMU session, are stored in creation order).
  assertTruth(c, top, truth);
});

test('Strata killed after the bitmaps were carried, before the job: the next run rolls back and streams', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t, { seed: true });
  const { top, truth } = await withTop(c);
  const r = liveCore(c, ['stream', c.daemon.socket, 'top', c.nbd], { CRASH_AT: 'after-step-0' });
  assert.equal(r.signal, 'SIGKILL', r.err);
  assert.deepEqual((await graph(c.daemon.socket)).bitmaps.top, ['b1:rec', 'b2:rec', 'c3:rec'], 'b1 was created in the top');
  const again = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--yes', '--json');
  assert.equal(again.code, 0, again.err);
  const out = JSON.parse(again.out);
  assert.match(out.recovered[0], /live stream plan #2 \(interrupted\): rolled-back: .*undid carry 'b1', 'b2'/);
  assert.equal(out.outcome.state, 'done');
  assert.deepEqual(out.carried.map((x: any) => [x.name, x.created]), [['b1', true], ['b2', false]]);
  await guestWrites(c, 'top', ['write -P 0x64 14M 64k']);
  await c.stop();
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top]);
  assertTruth(c, top, truth);
});

test('Strata killed while the stream job runs: the next run finds the job by its journaled id and finishes', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t);
  const { top, truth } = await withTop(c);
  const r = liveCore(c, ['stream', c.daemon.socket, 'top', c.nbd], { CRASH_AT: 'job-running', SPEED: String(1 * MiB), BASE: c.base });
  assert.equal(r.signal, 'SIGKILL', r.err);
  const again = await strata(c.home, 'stream', '--socket', c.daemon.socket, '--node', 'top', '--base', c.base, '--yes', '--json');
  assert.equal(again.code, 0, again.err);
  const out = JSON.parse(again.out);
  assert.match(out.recovered[0], /live stream plan #2 \(interrupted\): done: resumed after a restart/);
  assert.equal(out.outcome, null, 'the stream is not run twice');
  await guestWrites(c, 'top', ['write -P 0x65 15M 64k']);
  await c.stop();
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top, c.base]);
  assertTruth(c, top, truth);
});

test('Strata killed while the stream job runs: the app start follows the job to its end', { timeout: 120000 }, async (t) => {
  const c = await liveChain(t, { seed: true });
  const { top, truth } = await withTop(c);
  const r = liveCore(c, ['stream', c.daemon.socket, 'top', c.nbd], { CRASH_AT: 'job-running', SPEED: String(1 * MiB) });
  assert.equal(r.signal, 'SIGKILL', r.err);
  const out = await appStart(c);
  assert.deepEqual(out.map((p) => [p.kind, p.state]), [['stream-live', 'done']]);
  assert.deepEqual((await graph(c.daemon.socket)).bitmaps.top, ['b1:rec', 'b2:rec', 'c3:rec']);
  await guestWrites(c, 'top', ['write -P 0x66 13M 64k']);
  await c.stop();
  assert.deepEqual(qemuInfoChain(top).map((l: any) => l.filename), [top]);
  assertTruth(c, top, truth);
});
