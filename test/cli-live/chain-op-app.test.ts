// Snapshot and stream of a running disk as the app does them: chain-op:plan / chain-op:apply with a
// connection and a node, through the service, on a qemu-storage-daemon standing in for the VM. The
// plan changes nothing; apply runs the journaled live plan on the connection manager's own QMP client
// (its traffic log has the commands) and job engine (job:changed events for the stream); afterwards
// every checkpoint Strata calls ok covers every block that differs from its raw copy.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { qemuInfoChain } from '../helpers/qemu.ts';
import { liveChain, liveRawCopy, assertTruth, flags } from './live-chain.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

test('chain-op on a connection: a live snapshot with a checkpoint, then a live stream, on the manager’s own client and engine', { timeout: 120000 }, async (t) => {
  // The seed's style: b1 only in the base, b2 in the disk's top (b1 counts through it).
  const c = await liveChain(t, { seed: true });
  const newTop = path.join(c.dir, 'top.qcow2');
  // The disk as the guest sees it at the snapshot (no write happens between this copy and the apply).
  const truth = { ...c.truth, c3: await liveRawCopy(c, 'disk', path.join(c.dir, 'at-c3.raw')) };
  const service = createService({ dataDir: path.join(c.dir, 'data'), mode: 'browser' });
  t.onTestFinished(() => service.close());
  const events: { event: string; payload: any }[] = [];
  service.subscribe((event, payload) => events.push({ event, payload }));
  const conn = await call(service, 'connection:add-socket', { path: c.daemon.socket });
  const graphBefore = await call(service, 'connection:graph', { id: conn.id });

  // ----- The plan: the exact QMP, "changes since" before and after; nothing is written.
  const req = { op: 'snapshot', connection: conn.id, node: 'disk', newTop, checkpoint: 'c3' };
  const plan = await call(service, 'chain-op:plan', req);
  assert.equal(plan.applied, false);
  assert.equal(plan.refused, null);
  assert.deepEqual(plan.live, { connection: conn.id, node: 'disk', activeNode: 'top' });
  assert.equal(plan.image, c.mid);
  assert.equal(plan.active, newTop);
  assert.deepEqual(plan.carried.map((x: any) => x.name).sort(), ['b2', 'c3']);
  assert.deepEqual(plan.steps.map((s: any) => s.qmp.map((q: any) => q.execute)), [[], ['blockdev-add'], ['transaction']]);
  assert.deepEqual(plan.steps[0].commands[0].slice(0, 7), ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', c.mid]);
  assert.deepEqual(plan.steps[2].qmp[0].arguments.actions[0], { type: 'blockdev-snapshot', data: { node: 'disk', overlay: 'top' } });
  assert.deepEqual(plan.before.map((v: any) => [v.name, v.state]), [['b1', 'ok'], ['b2', 'ok']]);
  assert.deepEqual(plan.after.map((v: any) => [v.name, v.state]), [['b1', 'ok'], ['b2', 'ok'], ['c3', 'ok']]);
  assert.equal(fs.existsSync(newTop), false, 'the plan created no file');
  assert.deepEqual(await call(service, 'connection:graph', { id: conn.id }), graphBefore, 'the plan changed nothing in QEMU');
  assert.deepEqual(await call(service, 'history:plans', {}), [], 'nothing journaled by a plan');

  // ----- Apply: journaled, run on the connection's client; the disk's top is the new node.
  const done = await call(service, 'chain-op:apply', req);
  assert.equal(done.applied, true);
  assert.equal(done.outcome.state, 'done', done.outcome.resolution);
  const g = await call(service, 'connection:graph', { id: conn.id });
  assert.ok(g.edges.some((e: any) => e.parent === 'top' && e.child === 'disk' && e.role === 'backing'));
  assert.equal(g.nodes.find((n: any) => n.name === 'top').file, newTop);
  assert.deepEqual(g.nodes.find((n: any) => n.name === 'top').bitmaps.map((b: any) => `${b.name}:${b.recording}`).sort(), ['b2:true', 'c3:true']);
  const sent = (await call(service, 'connection:traffic', { id: conn.id, limit: 1000 })).filter((l: any) => l.dir === 'out').map((l: any) => JSON.parse(l.line).execute);
  assert.ok(sent.includes('blockdev-add') && sent.includes('transaction'), `the manager's client sent the plan: ${sent.join(', ')}`);
  assert.equal((await call(service, 'connection:list'))[0].state, 'connected');

  // ----- The live snapshot again into the same file: refused, nothing written.
  const again = await dispatch(service, 'chain-op:plan', { ...req, node: 'top' });
  assert.equal(again.ok, false);
  assert.match(again.ok ? '' : again.error.message, /top\.qcow2: already exists/);

  // ----- Stream into the new top: every layer below it (it becomes standalone), through the manager's engine.
  const sreq = { op: 'stream', connection: conn.id, node: 'top' };
  const splan = await call(service, 'chain-op:plan', sreq);
  assert.equal(splan.refused, null);
  assert.deepEqual(splan.live, { connection: conn.id, node: 'top', activeNode: 'top' });
  // b1 is created in the top from the base's copy and the top's b2 and c3, which the same transaction
  // first fills with the old top's b2: so "changes since" b1 covers the old top's writes too.
  assert.deepEqual(splan.carried.map((x: any) => [x.name, x.created]).sort(), [['b1', true], ['b2', false]]);
  const tx = splan.steps[0].qmp[0].arguments.actions.map((a: any) => `${a.type}:${a.data.target ?? a.data.name}`);
  assert.deepEqual(tx, ['block-dirty-bitmap-merge:b2', 'block-dirty-bitmap-add:b1', 'block-dirty-bitmap-merge:b1']);
  const drawings = (views: any[]) => Object.fromEntries(views.map((v: any) => [v.name, `${v.state} ${v.drawing}`]));
  const before = drawings(splan.before);
  const after = drawings(splan.after);
  // b1 is exact. Right after the stream QEMU lists the created b1 as the top's newest bitmap, so while
  // the disk runs b2 and c3 count it too: larger than before, never smaller (once QEMU stores the
  // bitmaps, in creation order, they read as before: assertTruth below).
  assert.equal(after.b1, before.b1);
  for (const name of ['b2', 'c3']) {
    assert.ok([...before[name]].every((ch, i) => ch !== '1' || after[name][i] === '1'), `${name}: ${after[name]} covers ${before[name]}`);
    assert.equal(after[name], after.b1, `${name} counts the created b1 while QEMU lists it newest`);
  }
  assert.deepEqual(splan.steps.map((s: any) => s.qmp.map((q: any) => q.execute)), [['transaction'], ['block-stream']]);
  assert.deepEqual(splan.after.map((v: any) => [v.name, v.state]).sort(), [['b1', 'ok'], ['b2', 'ok'], ['c3', 'ok']]);
  const sdone = await call(service, 'chain-op:apply', sreq);
  assert.equal(sdone.outcome.state, 'done', sdone.outcome.resolution);
  const jobEvents = events.filter((e) => e.event === 'job:changed' && e.payload.connection === conn.id).map((e) => e.payload.state);
  assert.ok(jobEvents.includes('concluded'), `the manager's engine followed the job: ${jobEvents.join(', ')}`);
  // The job was dismissed: the graph can be listed (QEMU 7.2 crashes while a finished stream waits).
  const g2 = await call(service, 'connection:graph', { id: conn.id });
  assert.equal(g2.edges.some((e: any) => e.parent === 'top' && e.role === 'backing'), false, 'the top is standalone');
  const plans = await call(service, 'history:plans', {});
  assert.deepEqual(plans.map((p: any) => [p.kind, p.state]).sort(), [['snapshot-live', 'done'], ['stream-live', 'done']]);

  await call(service, 'connection:close', { id: conn.id });
  await c.stop();
  assert.deepEqual(qemuInfoChain(newTop).map((l: any) => l.filename), [newTop]);
  assert.deepEqual(Object.keys(flags(newTop)).sort(), ['b1', 'b2', 'c3']);
  assertTruth(c, newTop, truth);
});
