// The job engine on real QEMU jobs in a real qemu-storage-daemon.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { JobEngine, type JobView } from '../../electron/core/jobs/engine.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { JobStore } from '../../electron/core/store/jobs.ts';
import { QmpTrafficLog } from '../../electron/core/store/qmp-traffic.ts';
import { inspect } from '../../electron/core/inspect.ts';
import { tempDir, qemuImg, qemuIo, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';

/** The states a job went through. */
const statesOf = (events: { state: string; note: string | null }[]) => events.map((e) => e.state);

const MiB = 1024 * 1024;

/** base <- mid <- top, each with data of its own; a daemon with the top open read-write. */
async function chain(t: Cleanup, size = 32 * MiB) {
  const dir = tempDir(t);
  const [base, mid, top] = ['base', 'mid', 'top'].map((n) => path.join(dir, `${n}.qcow2`));
  qemuImg('create', '-q', '-f', 'qcow2', base, String(size));
  qemuIo(base, [`write -P 1 0 ${size / 2}`]);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', mid);
  qemuIo(mid, [`write -P 2 ${size / 4} ${size / 2}`]);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top);
  qemuIo(top, [`write -P 3 ${size / 2} ${size / 4}`]);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  const db = openDb(path.join(dir, 'strata.db'));
  t.onTestFinished(() => {
    db.close();
  });
  const traffic = new QmpTrafficLog(db).open('test daemon', d.socket);
  const qmp = await QmpClient.connect(d.socket, { onTraffic: traffic.sink });
  t.onTestFinished(() => qmp.close());
  const store = new JobStore(db);
  const updates: JobView[] = [];
  const engine = new JobEngine(qmp, { connection: d.socket, store, session: traffic.id, onUpdate: (j) => updates.push(j) });
  t.onTestFinished(() => engine.close());
  return { dir, base, mid, top, d, qmp, store, engine, updates };
}

test('block-stream: follows the lifecycle, dismiss only when concluded, history kept', { timeout: 60000 }, async (t) => {
  const c = await chain(t);
  const j = await c.engine.start({ type: 'block-stream', device: 'top' });
  const done = await c.engine.waitFor(j.id, (x) => x.state === 'concluded');
  assert.equal(done.error, null);
  assert.deepEqual(done.verbs, ['dismiss']);
  assert.equal(done.current, done.total);
  await c.engine.verb(j.id, 'dismiss');
  assert.equal(c.engine.get(j.id)?.state, 'null');
  const rec = c.store.list()[0];
  assert.equal(rec.type, 'block-stream');
  assert.deepEqual(statesOf(rec.events), ['undefined', 'created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  // The QMP exchanged is the job's, raw from the traffic log: the start with auto-dismiss off and
  // QEMU's reply as it sent it, every status change event about this job, and the dismiss.
  const start = JSON.parse(rec.qmp[0].line);
  assert.equal(rec.qmp[0].dir, 'out');
  assert.deepEqual(start.arguments, { device: 'top', 'job-id': j.id, 'auto-dismiss': false });
  // (QEMU sends the job's first status event before its reply: the log keeps the wire's order.)
  assert.ok(rec.qmp.some((l) => l.dir === 'in' && l.line === `{"return": {}, "id": "${start.id}"}`), 'the reply as QEMU wrote it');
  const statuses = rec.qmp.filter((l) => l.event === 'JOB_STATUS_CHANGE').map((l) => JSON.parse(l.line).data);
  assert.ok(statuses.every((d) => d.id === j.id));
  assert.deepEqual(statuses.map((d) => d.status), ['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  assert.ok(rec.qmp.some((l) => l.dir === 'out' && JSON.parse(l.line).execute === 'job-dismiss'));
  // Nothing of another call: query-jobs polls are the connection's, not the job's.
  assert.ok(!rec.qmp.some((l) => l.line.includes('query-jobs')));
  assert.ok(rec.finishedAt);
  // The top now holds everything: streaming pulled the backing data up.
  assert.equal(inspect(c.top).layers.length, 1);
});

test('intermediate commit finishes alone; active commit waits at ready for complete', { timeout: 60000 }, async (t) => {
  const c = await chain(t);
  const nodes = await c.qmp.execute<any[]>('query-named-block-nodes', { flat: true });
  const node = (f: string) => nodes.find((n) => n.file === f && n.drv === 'qcow2')['node-name'];
  const inter = await c.engine.start({ type: 'block-commit', device: 'top', 'top-node': node(c.mid), 'base-node': node(c.base), 'backing-file': 'base.qcow2' });
  await c.engine.waitFor(inter.id, (x) => x.state === 'concluded');
  assert.equal(c.engine.get(inter.id)?.error, null);
  await c.engine.verb(inter.id, 'dismiss');

  const active = await c.engine.start({ type: 'block-commit', device: 'top' });
  // complete is not allowed before ready: refused by the table, nothing sent.
  const early = c.engine.get(active.id)!;
  if (early.state === 'created' || early.state === 'running') {
    await assert.rejects(c.engine.verb(active.id, 'complete'), (e: any) => e.code === 'E_BAD_INPUT' && /allowed only when ready or standby/.test(e.message));
  }
  const ready = await c.engine.waitFor(active.id, (x) => x.state === 'ready');
  assert.ok(ready.verbs.includes('complete'));
  await c.engine.verb(active.id, 'complete');
  await c.engine.waitFor(active.id, (x) => x.state === 'concluded');
  await c.engine.verb(active.id, 'dismiss');
  const states = statesOf(c.store.list()[0].events);
  assert.deepEqual(states, ['undefined', 'created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
});

test('progress is pushed about ten times a second with rate and time left', { timeout: 60000 }, async (t) => {
  const c = await chain(t, 64 * MiB);
  // A speed limit makes the stream last ~4 s (32 MiB of data) so progress can be watched (the rate needs a second
  // of movement, the time left a steady rate over two).
  const j = await c.engine.start({ type: 'block-stream', device: 'top', speed: 8 * MiB } as any);
  assert.equal(j.speed, 8 * MiB, 'the limit Strata set is known');
  const t0 = Date.now();
  await c.engine.waitFor(j.id, (x) => x.state === 'concluded');
  const secs = (Date.now() - t0) / 1000;
  const progress = c.updates.filter((u) => u.id === j.id && u.state === 'running' && u.current > 0);
  assert.ok(secs > 1, `the job took ${secs}s`);
  assert.ok(progress.length >= 3, `${progress.length} progress updates`);
  assert.ok(progress.length <= Math.ceil(secs * 11) + 2, `${progress.length} updates in ${secs}s is more than ~10/s`);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i].current >= progress[i - 1].current);
  const mid = progress.find((u) => u.rate !== null && u.etaSeconds !== null);
  assert.ok(mid, 'a rate and a time left were computed');
  assert.ok(mid!.rate! > 1 * MiB && mid!.rate! < 200 * MiB, `rate ${mid!.rate}`);
  // Never the bursts: every rate shown stays within twice the limit.
  for (const u of progress) if (u.rate !== null) assert.ok(u.rate < 16 * MiB, `rate ${(u.rate / MiB).toFixed(1)} MiB/s under an 8 MiB/s limit`);
});

test('kill -9 of QEMU during a job: the job ends lost, its history stays', { timeout: 60000 }, async (t) => {
  const c = await chain(t, 64 * MiB);
  const j = await c.engine.start({ type: 'block-stream', device: 'top', speed: 8 * MiB } as any);
  await c.engine.waitFor(j.id, (x) => x.state === 'running');
  c.d.child.kill('SIGKILL');
  await assert.rejects(c.engine.waitFor(j.id, (x) => x.state === 'concluded'), (e: any) => /ended|lost/.test(e.message));
  const live = c.engine.get(j.id)!;
  assert.equal(live.state, 'lost');
  assert.match(live.error!, /^the connection to QEMU ended while the job was running \(.+\)/);
  assert.deepEqual(live.verbs, []);
  const rec = c.store.list()[0];
  assert.equal(rec.state, 'lost');
  assert.ok(rec.finishedAt);
  assert.match(rec.error!, /connection to QEMU ended/);
});

test('sync adopts jobs QEMU already runs (Strata restarted mid-job)', { timeout: 60000 }, async (t) => {
  const c = await chain(t, 64 * MiB);
  await c.qmp.execute('block-stream', { 'job-id': 'theirs', device: 'top', speed: 16 * MiB, 'auto-dismiss': false });
  const fresh = new JobEngine(c.qmp, { connection: 'restarted', store: c.store });
  t.onTestFinished(() => fresh.close());
  const list = await fresh.sync();
  assert.deepEqual(list.map((j) => j.id), ['theirs']);
  assert.ok(['created', 'running'].includes(list[0].state));
  await fresh.waitFor('theirs', (x) => x.state === 'concluded');
  await fresh.verb('theirs', 'dismiss');
});
