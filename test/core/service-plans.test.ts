// Plans through the service: started over the contract, and finished by the next start of the
// core when a crash left them running.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { planCommitWithBitmaps } from '../../electron/core/plans/commit-with-bitmaps.ts';
import { tempDir, qemuImg, qemuIo, run } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

function chain(dir: string) {
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '16M');
  qemuImg('bitmap', '--add', base, 'A');
  qemuIo(base, ['write -P 1 0 1M']);
  qemuImg('bitmap', '--add', base, 'B');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
  // The overlay continues both checkpoints (libvirt's style), so the base's may be disabled for the commit.
  qemuImg('bitmap', '--add', top, 'A');
  qemuImg('bitmap', '--add', top, 'B');
  qemuIo(top, ['write -P 2 4M 1M']);
  return { base, top };
}

const flags = (img: string) =>
  Object.fromEntries((JSON.parse(run('qemu-img', ['info', '--output=json', img]))['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));

test('commit with bitmaps from the contract: pushed plan states, bitmaps recording again at the end', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { base, top } = chain(dir);
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  const seen: any[] = [];
  service.subscribe((e, p) => e === 'plan:changed' && seen.push(p));
  const conn = await call(service, 'connection:open-image', { image: top, readOnly: false });
  const plan = await call(service, 'plan:start', { kind: 'commit-with-bitmaps', params: { connection: conn.id } });
  assert.equal(plan.state, 'running');
  assert.deepEqual(plan.steps.map((s: any) => s.label), [
    `disable 'A' in ${base}`,
    `disable 'B' in ${base}`,
    'commit strata-top into its backing, until READY',
    `carry 'A', 'B' into ${base}, and start a temporary bitmap that covers the switch-over`,
    `complete the commit: the disk switches over to ${base}`,
    `enable 'A', 'B' in ${base}, add what was written during the switch-over`,
    `remove the temporary bitmap 'strata-switch-${plan.steps[2].commands[0].arguments['job-id']}'`,
  ]);
  const deadline = Date.now() + 30000;
  while (!seen.some((p) => p.id === plan.id && p.state !== 'running')) {
    assert.ok(Date.now() < deadline, 'the plan finished');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(seen[seen.length - 1].state, 'done');
  // One engine per connection: the plan's job is the Jobs panel's job, recorded once, with its type.
  const jobId = plan.steps[2].commands[0].arguments['job-id'];
  const records = (await call(service, 'history:jobs', {})).filter((j: any) => j.qemuId === jobId);
  assert.equal(records.length, 1, 'one history for the plan\'s job');
  assert.equal(records[0].type, 'block-commit');
  assert.equal((await call(service, 'history:jobs', {})).filter((j: any) => j.type === 'unknown').length, 0, 'no job adopted as foreign');
  // Each step's QMP, raw from the connection's traffic log: a command step its command and reply;
  // the job step its start, QEMU's events about the job, and the verbs.
  const done = (await call(service, 'history:plans', {}))[0];
  const first = done.steps[0];
  assert.deepEqual(JSON.parse(first.qmp[0].line).arguments, first.commands[0].arguments);
  assert.equal(first.qmp[1].line, `{"return": {}, "id": "${JSON.parse(first.qmp[0].line).id}"}`);
  const job = done.steps[2].qmp;
  assert.equal(JSON.parse(job.find((l: any) => l.dir === 'out').line).execute, 'block-commit');
  assert.ok(job.some((l: any) => l.event === 'JOB_STATUS_CHANGE' && JSON.parse(l.line).data.status === 'ready'));
  assert.ok(job.some((l: any) => l.dir === 'out' && JSON.parse(l.line).execute === 'job-dismiss'));
  assert.ok(!job.some((l: any) => l.line.includes('"query-jobs"')), 'polls are not a step\'s lines');
  await service.close(); // stops the daemon with SIGTERM: bitmaps are stored
  assert.deepEqual(flags(base), { A: ['auto'], B: ['auto'] });
  qemuIo(base, ['read -P 2 4M 1M'], ['-r']); // the top's data is in the base
});

test('the next start finishes what a crash left: rolled back, and the user is told', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { base, top } = chain(dir);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=top,file.driver=file,file.filename=${top}`]);
  const dataDir = path.join(dir, 'data');
  // A previous core journaled the plan and disabled 'A', then died.
  {
    const store = new PlanStore(openDb(path.join(dataDir, 'strata.db')));
    const qmp = await QmpClient.connect(d.socket);
    const p = await planCommitWithBitmaps(qmp, { socket: d.socket, image: null, daemonPid: null }, 'top', 'j-crash', { runtimeDir: path.join(dataDir, 'run') });
    const id = store.create(p);
    await qmp.execute(p.steps[0].spec.kind === 'qmp' ? p.steps[0].spec.command.execute : '', (p.steps[0].spec as any).command.arguments);
    store.step(id, 0, 'running');
    await qmp.close();
  }
  const service = createService({ dataDir, mode: 'browser' });
  t.onTestFinished(() => service.close());
  const plans = await call(service, 'history:plans', {});
  assert.equal(plans[0].state, 'rolled-back');
  assert.match(plans[0].resolution, /rolled back.*undid disable 'A'/);
  assert.deepEqual(plans[0].steps.map((s: any) => s.state), ['undone', 'pending', 'pending', 'pending', 'pending', 'pending', 'pending']);
  // The undo sent by the recovery is in the step's traffic (its own session, 'recovery of plan N').
  assert.ok(plans[0].steps[0].qmp.some((l: any) => l.dir === 'out' && JSON.parse(l.line).execute === 'block-dirty-bitmap-enable'));
  const q = await QmpClient.connect(d.socket);
  const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
  await q.close();
  const bms = nodes.find((n) => n.file === base && n.drv === 'qcow2')['dirty-bitmaps'];
  assert.ok(bms.every((b: any) => b.recording), JSON.stringify(bms));
});

test('a plan whose QEMU is gone is closed as failed, saying what to check', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  const store = new PlanStore(openDb(path.join(dataDir, 'strata.db')));
  const gone = path.join(dir, 'gone.sock');
  store.create({ kind: 'commit-with-bitmaps', summary: 's', target: { socket: gone, image: '/x/top.qcow2', daemonPid: null }, steps: [{ label: 'x', spec: { kind: 'qmp', command: { execute: 'query-version', arguments: {} }, undo: null, check: null } }] });
  const service = createService({ dataDir, mode: 'browser' });
  t.onTestFinished(() => service.close());
  const plans = await call(service, 'history:plans', {});
  assert.equal(plans[0].state, 'failed');
  assert.match(plans[0].resolution, new RegExp(`could not be reached at ${gone.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*check /x/top\\.qcow2`));
});
