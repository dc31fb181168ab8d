// strata repair --socket --node: an untracked overlay repaired on a running QEMU (a
// qemu-storage-daemon holding the overlay read-write as node disk0) while a guest writes into it
// (backup jobs into the node, live-guest.ts). Afterwards, with the daemon stopped (SIGTERM stores the
// bitmaps), every checkpoint Strata calls ok covers every block that differs from the raw copy taken
// when it was made. Needs the built CLI.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { test, expect, vi, type TestContext } from 'vitest';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { startDaemon, type Daemon } from '../helpers/storage-daemon.ts';
import { qemuImg, qemuIo, waitListening } from '../helpers/qemu.ts';
import { sinceOf } from '../helpers/truth.ts';
import { startGuestJob, endGuestJob, progressOf } from './live-guest.ts';
import { G, untrackedOverlay, strataAsync, sums, assertTruth, qemuCheckAll, type Scenario } from './scenarios.ts';

vi.setConfig({ testTimeout: 180_000 });

const SIZE = 1024 * G; // 64 MiB

interface Live {
  s: Scenario;
  vm: Daemon;
  /** a second monitor, so the test can look and write while the CLI holds the first one */
  look: QmpClient;
  /** a third one, for the crash child's guest writes */
  guestSock: string;
}

/** A base checkpointed as c1, an overlay made with qemu-img create -b and written, held by a daemon. */
async function liveUntracked(t: TestContext): Promise<Live> {
  const s = untrackedOverlay(SIZE);
  const lookSock = path.join(s.dir, 'look.qmp');
  const guestSock = path.join(s.dir, 'guest.qmp');
  const vm = await startDaemon(t, s.dir, [
    '--blockdev',
    `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${s.top}`,
    '--chardev',
    `socket,id=l,path=${lookSock},server=on,wait=off`,
    '--monitor',
    'chardev=l',
    '--chardev',
    `socket,id=g,path=${guestSock},server=on,wait=off`,
    '--monitor',
    'chardev=g',
  ]);
  await waitListening(lookSock, vm.child, vm.stderr);
  await waitListening(guestSock, vm.child, vm.stderr);
  const look = await QmpClient.connect(lookSock);
  t.onTestFinished(() => look.close());
  return { s, vm, look, guestSock };
}

/** A qcow2 of the disk's size allocating only [off, off+len) with `pattern`: what one guest write copies. */
function source(s: Scenario, name: string, off: number, len: number, pattern: number): string {
  const f = path.join(s.dir, `${name}.qcow2`);
  qemuImg('create', '-q', '-f', 'qcow2', f, String(SIZE));
  if (len) qemuIo(f, [`write -P ${pattern} ${off} ${len}`]);
  return f;
}

async function bitmapsOf(l: Live): Promise<{ name: string; recording: boolean; persistent: boolean; granularity: number }[]> {
  const nodes = await l.look.execute<any[]>('query-named-block-nodes', { flat: true });
  return (nodes.find((n) => n['node-name'] === 'disk0')['dirty-bitmaps'] ?? []).map((b: any) => ({ name: b.name, recording: b.recording, persistent: b.persistent, granularity: b.granularity }));
}

/** SIGTERM: the daemon stores its persistent bitmaps and exits 0; the files can then be read. */
async function stopVm(l: Live): Promise<void> {
  await l.look.close();
  const gone = new Promise<number | null>((r) => l.vm.child.once('exit', (code) => r(code)));
  l.vm.child.kill('SIGTERM');
  expect(await gone, l.vm.stderr()).toBe(0);
}

/**
 * The guest writing all along: one backup job copying a whole patterned disk into disk0 from its
 * start to its end at 4 MiB/s, so it allocates new clusters before, during and after the repair.
 */
async function writerJob(l: Live): Promise<{ waitFor: (bytes: number) => Promise<{ status: string; current: number }>; stop: () => Promise<void> }> {
  const src = source(l.s, 'guest-all', 0, SIZE, 0x66);
  const id = await startGuestJob(l.look, 'disk0', src, { sync: 'full', speed: 4 << 20 });
  const waitFor = async (bytes: number) => {
    // polls QEMU's own progress: the condition waited for, not a fixed time
    for (;;) {
      const p = await progressOf(l.look, id);
      if (p.current >= bytes || p.status === 'concluded' || p.status === 'gone') return p;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { waitFor, stop: () => endGuestJob(l.look, id, true) };
}

const args = (l: Live, ...more: string[]) => ['repair', '--socket', l.vm.socket, '--node', 'disk0', '--json', ...more];
const leftScratch = (s: Scenario) => (fs.existsSync(path.join(s.dir, 'home', 'run')) ? fs.readdirSync(path.join(s.dir, 'home', 'run')).filter((f) => f.startsWith('repair-')) : []);

/** strata repair --socket --yes while the writer job runs: it writes before step 1 and after step 3. */
async function repairWhileWriting(l: Live): Promise<any> {
  const writer = await writerJob(l);
  await writer.waitFor(2 << 20);
  const wet = await strataAsync(l.s.dir, args(l, '--yes'));
  const atExit = await progressOf(l.look, (await l.look.execute<any[]>('query-jobs'))[0].id);
  const later = await writer.waitFor(atExit.current + (1 << 20));
  expect(later.status, 'the writer was still writing after the repair').toBe('running');
  await writer.stop();
  expect(wet.code, wet.stderr + JSON.stringify(wet.json?.recovered)).toBe(0);
  return wet.json;
}

test('live repair while a guest writes: the plan alone changes nothing; --yes makes c1 ok and exact, writes during it included', async (t) => {
  const l = await liveUntracked(t);
  const { s } = l;
  const files = sums(s.layers);
  const dry = await strataAsync(s.dir, args(l));
  expect(dry.code, dry.stderr).toBe(0);
  expect(dry.json.applied).toBe(false);
  expect(dry.json.findings.map((f: any) => [f.code, f.repairable])).toEqual([['untracked-overlay', true]]);
  expect(dry.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'unknown']]);
  expect(dry.json.after.map((v: any) => [v.name, v.state])).toEqual([['c1', 'ok']]);
  expect(dry.json.plan.map((p: any) => p.qmp?.execute ?? p.commands[0][0])).toEqual(['block-dirty-bitmap-add', 'strata:write-live-allocation-bitmap', 'strata:merge-scratch-bitmap']);
  expect(dry.json.plan[0].qmp.arguments).toEqual({ node: 'disk0', name: 'c1', granularity: G, persistent: true });
  // nothing was sent but queries: no bitmap, not a byte of any layer changed
  expect(await bitmapsOf(l)).toEqual([]);
  expect(sums(s.layers)).toEqual(files);

  const bad = await strataAsync(s.dir, ['repair', '--socket', l.vm.socket, '--node', 'nosuch', '--json']);
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toContain("no block node named 'nosuch'");

  const wet = await repairWhileWriting(l);
  expect(wet.applied).toBe(true);
  expect(wet.outcomes.map((o: any) => o.state)).toEqual(['done']);
  expect(await bitmapsOf(l)).toEqual([{ name: 'c1', recording: true, persistent: true, granularity: G }]);
  // The journal's steps carry what they sent to that QEMU and its replies, raw from the traffic log.
  {
    const db = openDb(path.join(s.dir, 'home', 'strata.db'));
    try {
      const plan = new PlanStore(db).list(5).find((p) => p.kind === 'repair-live')!;
      const add = plan.steps[0].qmp;
      expect(JSON.parse(add[0].line)).toMatchObject({ execute: 'block-dirty-bitmap-add', arguments: { node: 'disk0', name: 'c1' } });
      expect(add[1].line).toBe(`{"return": {}, "id": "${JSON.parse(add[0].line).id}"}`);
      expect(plan.steps[2].qmp.some((x) => x.dir === 'out' && JSON.parse(x.line).execute === 'transaction')).toBe(true);
    } finally {
      db.close();
    }
  }
  // as that QEMU sees it now: nothing left to repair, c1 ok
  const again = await strataAsync(s.dir, args(l));
  expect(again.code, again.stderr).toBe(0);
  expect(again.json.findings.filter((f: any) => f.problem)).toEqual([]);
  expect(again.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'ok']]);
  expect(leftScratch(s)).toEqual([]);

  await stopVm(l);
  const truth = assertTruth(s);
  expect(truth.map((x) => [x.name, x.state, x.missed])).toEqual([['c1', 'ok', 0]]);
  expect(truth[0].differing).toBeGreaterThanOrEqual(3 << 20); // the writer's 2 MiB before the repair and 1 MiB after it are among them
  qemuCheckAll(s);
});

const child = (l: Live, env: Record<string, string>) =>
  spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'live-child.ts'), l.vm.socket, 'disk0'], {
    encoding: 'utf8',
    env: { ...process.env, STRATA_HOME: path.join(l.s.dir, 'home'), GUEST: l.guestSock, ...env },
  });

// Steps: 0 add c1 (recording), 1 read the allocation over NBD into the scratch, 2 merge the scratch into c1.
// Each write lands in clusters nothing allocated before.
function between(l: Live): { writes: string; at: number[] } {
  const w = [
    ['before-step-0', 40 * G, G, 0x63], // before the bitmap: only the allocation has it
    ['after-step-0', 20 * G, G, 0x61], // after the bitmap, before the allocation is read: both
    ['after-step-1', 30 * G + 4096, 4096, 0x62], // after the allocation was read: only the bitmap
  ] as const;
  return { writes: w.map(([p, off, len, pat]) => `${p}=${source(l.s, `w-${p}`, off, len, pat)}`).join(','), at: w.map((x) => x[1]) };
}

test('guest writes just before the bitmap, between it and the allocation read, and between the read and the merge: all in c1', async (t) => {
  const l = await liveUntracked(t);
  const b = between(l);
  const r = child(l, { WRITES: b.writes });
  expect(r.status, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout).outcomes.map((o: any) => o.state)).toEqual(['done']);
  await stopVm(l);
  const c1 = sinceOf(l.s.top, 'c1');
  expect(c1.state, c1.problems.join('; ')).toBe('ok');
  for (const at of b.at) expect(c1.extents.some((e) => e.start <= at && at < e.start + e.length), `cluster at ${at / G}`).toBe(true);
  expect(assertTruth(l.s).map((x) => [x.name, x.state, x.missed])).toEqual([['c1', 'ok', 0]]);
  qemuCheckAll(l.s);
});

for (const at of ['after-step-0', 'after-step-1', 'running-step-2']) {
  test(`kill -9 of Strata at ${at}: c1 reads unknown, never ok, until the next strata repair --socket --yes finishes it`, async (t) => {
    const l = await liveUntracked(t);
    const k = child(l, { CRASH_AT: at, WRITES: between(l).writes });
    expect(k.signal, k.stderr).toBe('SIGKILL');
    // the bitmap is there and recording, but does not hold what the layer allocated before it
    expect((await bitmapsOf(l)).map((b) => b.name)).toEqual(['c1']);
    const look = await strataAsync(l.s.dir, args(l));
    expect(look.code, look.stderr).toBe(0);
    expect(look.json.recovered).toEqual([expect.stringMatching(/^live repair plan #1 was interrupted/)]);
    expect(look.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'unknown']]);
    const fixed = await repairWhileWriting(l);
    expect(fixed.recovered).toEqual([expect.stringMatching(/^live repair plan #1 \(interrupted\): resumed after a restart and finished/)]);
    // looked at with the guest quiet (a live look reads the bitmaps, then the allocation: a write in
    // between reads as uncovered, so while the guest writes a look may say unknown, never a false ok)
    const after = await strataAsync(l.s.dir, args(l));
    expect(after.code, after.stderr).toBe(0);
    expect(after.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'ok']]);
    expect(after.json.plan).toEqual([]);
    expect(after.json.recovered).toEqual([]);
    expect(leftScratch(l.s)).toEqual([]);
    await stopVm(l);
    expect(assertTruth(l.s).map((x) => [x.name, x.state, x.missed])).toEqual([['c1', 'ok', 0]]);
    qemuCheckAll(l.s);
  });
}

test('kill -9 of Strata between the bitmap and the fill: the app finishes the live repair at its next start', async (t) => {
  const l = await liveUntracked(t);
  const k = child(l, { CRASH_AT: 'after-step-0', WRITES: between(l).writes });
  expect(k.signal, k.stderr).toBe('SIGKILL');
  const service = createService({ dataDir: path.join(l.s.dir, 'home'), mode: 'browser' });
  t.onTestFinished(() => service.close());
  const r = await dispatch(service, 'history:plans', {});
  if (!r.ok) throw new Error(r.error.message);
  const plans = r.result as any[];
  expect(plans.map((p) => [p.kind, p.state])).toEqual([['repair-live', 'done']]);
  expect(plans[0].resolution).toMatch(/^resumed after a restart and finished/);
  expect(plans[0].steps.map((s: any) => s.state)).toEqual(['done', 'done', 'done']);
  const look = await strataAsync(l.s.dir, args(l));
  expect(look.code, look.stderr).toBe(0);
  expect(look.json.before.map((v: any) => [v.name, v.state])).toEqual([['c1', 'ok']]);
  expect(look.json.recovered).toEqual([]);
  await stopVm(l);
  expect(assertTruth(l.s).map((x) => [x.name, x.state, x.missed])).toEqual([['c1', 'ok', 0]]);
  qemuCheckAll(l.s);
});
