// The live channels through the service, as the renderer uses them: connections, block graph,
// jobs with pushed progress, verbs, job history, a daemon crash and a restart.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { tempDir, qemuImg, qemuIo, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { buildSeed } from './seed-chain.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

function setup(t: Cleanup) {
  const dir = tempDir(t);
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  const events: { event: string; payload: any; at: number }[] = [];
  service.subscribe((event, payload) => events.push({ event, payload, at: Date.now() }));
  t.onTestFinished(() => service.close());
  return { dir, service, events };
}

test('open an offline image read-only: the block graph shows the chain and its bitmaps', { timeout: 60000 }, async (t) => {
  const { dir, service, events } = setup(t);
  const { top, base } = buildSeed(dir);
  const conn = await call(service, 'connection:open-image', { image: top, readOnly: true });
  assert.equal(conn.state, 'connected');
  assert.equal(conn.kind, 'daemon');
  assert.match(conn.qemuVersion, /^\d+\.\d+\.\d+$/);
  const g = await call(service, 'connection:graph', { id: conn.id });
  const fmt = g.nodes.filter((n: any) => n.driver === 'qcow2');
  assert.deepEqual(fmt.map((n: any) => n.file).sort(), [base, top].sort());
  const topNode = fmt.find((n: any) => n.file === top);
  const baseNode = fmt.find((n: any) => n.file === base);
  assert.ok(g.edges.some((e: any) => e.parent === topNode.name && e.child === baseNode.name && e.role === 'backing'));
  // QEMU lists a node's bitmaps newest first; compare as a set.
  assert.deepEqual(baseNode.bitmaps.map((b: any) => [b.name, b.recording]).sort(), [['bitmap1', false], ['bitmap2', true]]);
  assert.ok(events.some((e) => e.event === 'connection:changed' && e.payload.some((c: any) => c.id === conn.id)));
  await call(service, 'connection:close', { id: conn.id });
  assert.deepEqual(await call(service, 'connection:list'), []);
});

test('a job from start to dismiss: pushed state changes, throttled progress, history', { timeout: 60000 }, async (t) => {
  const { dir, service, events } = setup(t);
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '64M');
  qemuIo(base, ['write -P 1 0 48M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  const conn = await call(service, 'connection:open-image', { image: top, readOnly: false });
  const job = await call(service, 'job:start', { connection: conn.id, spec: { type: 'block-stream', speed: 32 * 1024 * 1024 } });
  await assert.rejects(call(service, 'job:verb', { connection: conn.id, id: job.id, verb: 'complete' }), (e: any) => e.code === 'E_BAD_INPUT');
  const deadline = Date.now() + 30000;
  while (!events.some((e) => e.event === 'job:changed' && e.payload.id === job.id && e.payload.state === 'concluded')) {
    assert.ok(Date.now() < deadline, 'the job concluded');
    await new Promise((r) => setTimeout(r, 20));
  }
  await call(service, 'job:verb', { connection: conn.id, id: job.id, verb: 'dismiss' });
  const changes = events.filter((e) => e.event === 'job:changed' && e.payload.id === job.id).map((e) => e.payload.state);
  assert.deepEqual(changes, ['created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  const progress = events.filter((e) => e.event === 'job:progress' && e.payload.id === job.id);
  assert.ok(progress.length >= 3, `${progress.length} progress events`);
  const span = (progress[progress.length - 1].at - progress[0].at) / 1000;
  assert.ok(progress.length <= span * 11 + 2, `${progress.length} progress events in ${span}s`);
  const hist = await call(service, 'history:jobs', {});
  assert.equal(hist[0].type, 'block-stream');
  const states = hist[0].events.map((e: any) => e.state);
  assert.deepEqual(states, ['undefined', 'created', 'running', 'waiting', 'pending', 'concluded', 'null']);
  // The job's QMP comes from the connection's traffic log, as QEMU sent it.
  assert.equal(JSON.parse(hist[0].qmp[0].line).execute, 'block-stream');
  const startId = JSON.parse(hist[0].qmp[0].line).id;
  assert.ok(hist[0].qmp.some((l: any) => l.line === `{"return": {}, "id": "${startId}"}`), 'the reply as QEMU wrote it');
  assert.ok(hist[0].qmp.some((l: any) => l.event === 'JOB_STATUS_CHANGE' && JSON.parse(l.line).data.status === 'concluded'));
  assert.ok(hist[0].qmp.some((l: any) => JSON.parse(l.line).execute === 'job-dismiss'));
  // The connection's own log has everything, polls included, raw.
  const log = await call(service, 'connection:traffic', { id: conn.id });
  assert.ok(log[0].line.startsWith('{"QMP": {"version"'), log[0].line);
  assert.ok(log.some((l: any) => l.dir === 'out' && JSON.parse(l.line).execute === 'query-jobs'));
});

test('a daemon killed from outside is reported lost with the reason, and can be restarted', { timeout: 60000 }, async (t) => {
  const { dir, service, events } = setup(t);
  const { top } = buildSeed(dir);
  const conn = await call(service, 'connection:open-image', { image: top, readOnly: true });
  process.kill(conn.pid, 'SIGKILL');
  const deadline = Date.now() + 10000;
  let lost: any;
  while (!(lost = events.filter((e) => e.event === 'connection:changed').flatMap((e) => e.payload).find((c: any) => c.id === conn.id && c.state === 'lost'))) {
    assert.ok(Date.now() < deadline, 'reported lost');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.match(lost.error, /exited|SIGKILL|closed|ECONNRESET/, JSON.stringify(lost));
  await assert.rejects(call(service, 'connection:graph', { id: conn.id }), (e: any) => e.code === 'E_QMP_STATE');
  const again = await call(service, 'connection:restart', { id: conn.id });
  assert.equal(again.state, 'connected');
  assert.notEqual(again.pid, conn.pid);
  assert.ok((await call(service, 'connection:graph', { id: conn.id })).nodes.length > 0);
});

test('VM sockets: add one, scan a folder (non-QMP sockets and files skipped), refuse a wrong path', { timeout: 60000 }, async (t) => {
  const { dir, service } = setup(t);
  const { top } = buildSeed(dir);
  const vms = path.join(dir, 'vms');
  fs.mkdirSync(vms);
  const d = await startDaemon(t, vms, ['--blockdev', `driver=qcow2,node-name=disk0,read-only=on,file.driver=file,file.filename=${top}`]);
  fs.renameSync(d.socket, path.join(vms, 'vm1.qmp'));
  fs.writeFileSync(path.join(vms, 'notes.sock'), 'not a socket');
  const found = await call(service, 'connection:scan-folder', { path: vms });
  assert.deepEqual(found.map((c: any) => path.basename(c.socket)), ['vm1.qmp']);
  const g = await call(service, 'connection:graph', { id: found[0].id });
  assert.ok(g.nodes.some((n: any) => n.name === 'disk0'));
  // The same socket again is the same connection (QEMU serves one client per monitor).
  const same = await call(service, 'connection:add-socket', { path: path.join(vms, 'vm1.qmp') });
  assert.equal(same.id, found[0].id);
  const missing = path.join(dir, 'nope.sock');
  await assert.rejects(call(service, 'connection:add-socket', { path: missing }), (e: any) => e.code === 'E_QMP_CONNECT' && e.message.startsWith(missing));
});

test('bitmap changes over the contract: plan shows the QMP and changes nothing; apply journals it', { timeout: 60000 }, async (t) => {
  const { dir, service } = setup(t);
  const { top } = buildSeed(dir);
  const before = fs.readFileSync(top);
  const plan = await call(service, 'bitmap:plan', { target: { kind: 'image', image: top }, op: { op: 'add', name: 'ui', persistent: true, disabled: false } });
  assert.equal(plan.qmp.execute, 'transaction');
  assert.match(plan.summary, /add persistent bitmap 'ui'/);
  assert.deepEqual(fs.readFileSync(top), before);
  const done = await call(service, 'bitmap:apply', { target: { kind: 'image', image: top }, op: { op: 'add', name: 'ui', persistent: true, disabled: false } });
  assert.ok(done.operation > 0);
  // On a live connection: the app's own QMP client is used (one client per monitor).
  const conn = await call(service, 'connection:open-image', { image: top, readOnly: false });
  const r = await call(service, 'bitmap:apply', { target: { kind: 'connection', connection: conn.id, node: 'strata-top' }, op: { op: 'disable', name: 'ui' } });
  assert.match(r.summary, /disable bitmap 'ui'/);
  const g = await call(service, 'connection:graph', { id: conn.id });
  assert.equal(g.nodes.find((n: any) => n.name === 'strata-top').bitmaps.find((b: any) => b.name === 'ui').recording, false);
  await assert.rejects(call(service, 'bitmap:apply', { target: { kind: 'connection', connection: conn.id, node: 'strata-top' }, op: { op: 'remove', name: 'nope' } }), (e: any) => e.code === 'E_BAD_INPUT');
  const ops = await call(service, 'history:operations', {});
  assert.deepEqual(ops.map((o: any) => [o.kind, o.state]), [['bitmap-disable', 'done'], ['bitmap-add', 'done']]);
  // The live change's log is its two lines in the connection's traffic log, as on the wire: the
  // transaction sent and QEMU's reply to that id; nothing else the connection said.
  const [out, back] = ops[0].log;
  assert.equal(ops[0].log.length, 2);
  assert.deepEqual(JSON.parse(out.line).arguments.actions, [{ type: 'block-dirty-bitmap-disable', data: { node: 'strata-top', name: 'ui' } }]);
  assert.equal(back.line, `{"return": {}, "id": "${JSON.parse(out.line).id}"}`);
  // The one done on the offline image had its own daemon: every line of that session.
  assert.ok(ops[1].log.some((l: any) => l.dir === 'in' && l.line.startsWith('{"QMP": ')));
  await call(service, 'connection:close', { id: conn.id });
});

test('the inspector source live-bitmap: the same density as the offline file, nothing left behind', { timeout: 60000 }, async (t) => {
  const { dir, service } = setup(t);
  const { top } = buildSeed(dir);
  const req = (source: any) => ({ source, start: 0, end: 524288, buckets: 8 });
  const offline = await call(service, 'contents:density', req({ kind: 'bitmap', layer: top, name: 'bitmap3' }));
  const conn = await call(service, 'connection:open-image', { image: top, readOnly: false });
  const live = await call(service, 'contents:density', req({ kind: 'live-bitmap', connection: conn.id, node: 'strata-top', name: 'bitmap3' }));
  assert.deepEqual(live.marked, offline.marked);
  assert.deepEqual(live.marked, [0, 0, 0, 65536, 0, 65536, 65536, 0]);
  const ext = await call(service, 'contents:extents', { source: { kind: 'live-bitmap', connection: conn.id, node: 'strata-top', name: 'bitmap3' }, start: 0, end: 524288, limit: 10 });
  assert.deepEqual(ext.extents, [{ start: 196608, length: 65536 }, { start: 327680, length: 131072 }]);
  const g = await call(service, 'connection:graph', { id: conn.id });
  assert.deepEqual(g.nodes.find((n: any) => n.name === 'strata-top').bitmaps.map((b: any) => b.name), ['bitmap3'], 'no temporary copy left');
  await assert.rejects(call(service, 'contents:density', req({ kind: 'live-bitmap', connection: conn.id, node: 'strata-top', name: 'nope' })), (e: any) => e.code === 'E_NO_BITMAP');
});
