// kill -9 of QEMU, not of Strata, at each step of `strata commit --yes`: Strata's own storage daemon
// for an offline image is SIGKILLed at a named point of the plan (qemu-kill-child.ts), and a daemon
// standing in for a VM likewise. Then: the plan is left unfinished (never half rolled back over a
// dead socket), the next `strata commit IMAGE --yes` finishes or undoes it from the files (the
// bitmaps the killed QEMU left in-use restored from their stored contents; the commit carried
// offline once past its point of no return), no bitmap is left in-use, no daemon holds the image,
// qemu-img check is clean, and every checkpoint covers every block changed since its raw copy.
import { test, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { run } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { layeredChain, assertTruth, qemuCheckAll, strata, type Scenario } from '../repair/scenarios.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';

const child = path.join(import.meta.dirname, 'qemu-kill-child.ts');

function commitKilledAt(s: Scenario, point: string, env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, s.top], {
    encoding: 'utf8',
    env: { ...process.env, STRATA_HOME: path.join(s.dir, 'home'), CRASH_AT: point, ...env },
    timeout: 60000,
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const flagsOf = (img: string): Record<string, string[]> =>
  Object.fromEntries((JSON.parse(run('qemu-img', ['info', '--output=json', img]))['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));

function assertSettled(s: Scenario, layers: string[]) {
  s.layers = layers;
  s.top = layers[0];
  // qemu-img info without -U: fails while a daemon still holds a layer
  for (const l of layers) for (const [n, f] of Object.entries(flagsOf(l))) expect(f, `${l}: ${n} in a planned state`).not.toContain('in-use');
  qemuCheckAll(s);
  const r = assertTruth(s);
  expect(r.map((x) => [x.name, x.state])).toEqual([...s.copies.keys()].map((n) => [n, 'ok']));
}

// Active commit of top and mid1 into base, seed scheme (the seed style's chain: c2 paused).
// Steps: 0 disable c2, 1 commit until READY, 2 carry, 3 job-complete, 4 enable + switch-over marks, 5 remove the temporary bitmap.
for (const [point, outcome] of [
  ['before-step-0', 'rolled-back'],
  ['after-step-0', 'rolled-back'],
  ['job-running', 'rolled-back'],
  ['job-ready', 'rolled-back'],
  ['after-step-2', 'rolled-back'],
  ['before-complete', 'rolled-back'],
  ['before-step-4', 'done'],
  ['before-step-5', 'done'],
] as const) {
  test(`offline active commit --base, Strata's daemon killed at ${point}: the next strata commit --yes ${outcome === 'done' ? 'finishes it' : 'undoes it'} from the files`, { timeout: 90000 }, () => {
    const s = layeredChain(3, 'seed');
    const top = s.top;
    const mid = path.join(s.dir, 'mid1.qcow2');
    const base = path.join(s.dir, 'base.qcow2');
    const before = [top, mid, base].map(flagsOf);
    const k = commitKilledAt(s, point, { BASE: base, ...(point === 'job-running' ? { SPEED: String(64 * 1024) } : {}) });
    expect(k.killed).toBe(true);
    expect(k.state, 'left unfinished for the next start').toBe('running');
    const r = strata(s.dir, ['commit', top, '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(r.stdout.trim().split('\n')[0]);
    expect(rec.state, rec.resolution).toBe(outcome);
    if (outcome === 'done') {
      expect(rec.active).toBe(base);
      expect(Object.keys(flagsOf(base))).toEqual(['c1', 'c2', 'c3', 'c4']);
      assertSettled(s, [base]);
    } else {
      expect(rec.active).toBe(top);
      expect([top, mid, base].map(flagsOf), 'every bitmap as before the plan').toEqual(before);
      assertSettled(s, [top, mid, base]);
    }
    const h = strata(s.dir, ['history', '--plans', '--json']);
    expect(h.json.find((p: any) => p.kind === 'commit-with-bitmaps').state).toBe(outcome);
  });
}

// Intermediate commit of mid2 and mid1 into base, top stays active (libvirt's chain: c1 and c2 paused).
// Steps: 0, 1 disable c1, c2; 2 commit until PENDING; 3 carry and enable; 4 job-finalize.
for (const [point, outcome] of [
  ['after-step-1', 'rolled-back'],
  ['job-pending', 'rolled-back'],
  ['after-step-3', 'rolled-back'],
  ['before-complete', 'rolled-back'],
] as const) {
  test(`offline intermediate commit --top --base, Strata's daemon killed at ${point}: undone from the files`, { timeout: 90000 }, () => {
    const s = layeredChain(4, 'libvirt');
    const top = s.top;
    const layers = [top, path.join(s.dir, 'mid2.qcow2'), path.join(s.dir, 'mid1.qcow2'), path.join(s.dir, 'base.qcow2')];
    const before = layers.map(flagsOf);
    const k = commitKilledAt(s, point, { TOP: layers[1], BASE: layers[3] });
    expect(k.state).toBe('running');
    const r = strata(s.dir, ['commit', top, '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(r.stdout.trim().split('\n')[0]);
    expect(rec.state, rec.resolution).toBe(outcome);
    expect(rec.active).toBe(top);
    expect(layers.map(flagsOf)).toEqual(before);
    assertSettled(s, layers);
  });
}

test('a daemon standing in for a VM killed while the commit waits at READY: the plan is marked failed saying why, no checkpoint is a false clean, and strata repair settles the chain', { timeout: 90000 }, async (t) => {
  const s = layeredChain(3, 'libvirt');
  const top = s.top;
  const base = path.join(s.dir, 'base.qcow2');
  const d = await startDaemon(t, s.dir, ['--blockdev', `driver=qcow2,node-name=vm0,file.driver=file,file.filename=${top}`]);
  const home = path.join(s.dir, 'home');
  // the commit run by a Strata core that dies with its VM: plan journaled, then the VM's QEMU killed at READY
  const service = createService({ dataDir: home, mode: 'browser' });
  try {
    const call = async (ch: string, arg: unknown) => {
      const r = await dispatch(service, ch, arg);
      if (!r.ok) throw new Error(r.error.message);
      return r.result as any;
    };
    const conn = await call('connection:add-socket', { path: d.socket }).catch(() => null);
    expect(conn, 'attached').not.toBeNull();
    const settled = new Promise<any>((resolve) => service.subscribe((e, p: any) => e === 'plan:changed' && p.steps.some((x: any) => x.state === 'done' && /until READY/.test(x.label)) && resolve(p)));
    await call('plan:start', { kind: 'commit-with-bitmaps', params: { connection: conn.id, device: 'vm0', baseNode: base, scheme: 'libvirt' } }).catch(() => null);
    await settled;
    d.child.kill('SIGKILL');
    await new Promise((res) => d.child.once('exit', res));
  } finally {
    await service.close();
  }
  // the next start
  const again = createService({ dataDir: home, mode: 'browser' });
  try {
    const plans = (await dispatch(again, 'history:plans', { limit: 5 })) as any;
    expect(plans.ok).toBe(true);
    const p = plans.result.find((x: any) => x.kind === 'commit-with-bitmaps');
    expect(p.state).toBe('failed');
    expect(p.resolution).toMatch(/strata repair on its disk/);
  } finally {
    await again.close();
  }
  // No false clean: whatever Strata calls ok covers every change; the in-use bitmaps make the rest unknown.
  s.layers = [top, path.join(s.dir, 'mid1.qcow2'), base];
  const seen = assertTruth(s);
  expect(seen.some((x) => x.state === 'unknown'), 'the VM wrote while its bitmaps were in-use: unknown, not ok').toBe(true);
  const rep = strata(s.dir, ['repair', top, '--yes', '--json']);
  expect([0, 2]).toContain(rep.code);
  // base's c1 and c2 were made there and read in-use: their copies above go too (no false clean)
  expect(rep.json.findings.find((f: any) => f.code === 'in-use-crashed' && f.layers[0] === s.layers[1])?.bitmaps).toEqual(['c1', 'c2']);
  for (const l of s.layers) for (const f of Object.values(flagsOf(l))) expect(f).not.toContain('in-use');
  qemuCheckAll(s);
  assertTruth(s);
});

// The window between an offline commit's last step and its daemon's stop (the SIGTERM that makes
// QEMU store the bitmaps): the plan is journaled done only after that stop, so a kill there leaves
// it running, never done over bitmaps QEMU did not store.
function killedInStopWindow(s: Scenario, env: Record<string, string>) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, s.top], {
    encoding: 'utf8',
    env: { ...process.env, STRATA_HOME: path.join(s.dir, 'home'), BASE: path.join(s.dir, 'base.qcow2'), ...env },
    timeout: 60000,
  });
  return r;
}

function noFalseCleanInWindow(s: Scenario, base: string) {
  const h = strata(s.dir, ['history', '--plans', '--json']);
  expect(h.json.find((p: any) => p.kind === 'commit-with-bitmaps').state, 'unfinished until the bitmaps are stored').toBe('running');
  const seen = strata(s.dir, ['inspect', base, '--json']);
  expect(seen.code, seen.stderr).toBe(0);
  expect(seen.json.checkpoints.length).toBeGreaterThan(0);
  expect(seen.json.checkpoints.filter((c: any) => c.state === 'ok'), 'no checkpoint reads ok over bitmaps QEMU did not store').toEqual([]);
}

test("offline commit: the daemon killed after the plan's last step, before its stop: Strata finishes the plan from the files in the same run", { timeout: 90000 }, () => {
  const s = layeredChain(3, 'seed');
  const base = path.join(s.dir, 'base.qcow2');
  const r = killedInStopWindow(s, { CRASH_AT: 'before-daemon-stop' });
  expect(r.status, r.stderr).toBe(0);
  const k = JSON.parse(r.stdout.trim().split('\n').pop()!);
  expect(k.killed).toBe(true);
  expect(k.state, k.resolution).toBe('done');
  expect(k.resolution).toMatch(/finished offline/);
  expect(Object.keys(flagsOf(base))).toEqual(['c1', 'c2', 'c3', 'c4']);
  assertSettled(s, [base]);
});

test("offline commit: Strata killed after the plan's last step, before its daemon's stop: the next strata commit --yes finishes it through the daemon", { timeout: 90000 }, () => {
  const s = layeredChain(3, 'seed');
  const top = s.top;
  const base = path.join(s.dir, 'base.qcow2');
  const r = killedInStopWindow(s, { SELF_AT: 'before-daemon-stop' });
  expect(r.signal, r.stderr).toBe('SIGKILL');
  noFalseCleanInWindow(s, base);
  const again = strata(s.dir, ['commit', top, '--yes', '--json']);
  expect(again.code, again.stderr).toBe(0);
  const rec = JSON.parse(again.stdout.trim().split('\n')[0]);
  expect(rec.state, rec.resolution).toBe('done');
  expect(rec.active).toBe(base);
  expect(Object.keys(flagsOf(base))).toEqual(['c1', 'c2', 'c3', 'c4']);
  assertSettled(s, [base]);
});

test("offline commit: daemon and Strata both killed after the plan's last step: the app's next start finishes the plan from the files", { timeout: 90000 }, async () => {
  const s = layeredChain(3, 'seed');
  const base = path.join(s.dir, 'base.qcow2');
  const r = killedInStopWindow(s, { CRASH_AT: 'before-daemon-stop', SELF_AT: 'before-daemon-stop' });
  expect(r.signal, r.stderr).toBe('SIGKILL');
  noFalseCleanInWindow(s, base);
  const service = createService({ dataDir: path.join(s.dir, 'home'), mode: 'browser' });
  try {
    const plans = (await dispatch(service, 'history:plans', { limit: 5 })) as any;
    expect(plans.ok).toBe(true);
    const p = plans.result.find((x: any) => x.kind === 'commit-with-bitmaps');
    expect(p.state, p.resolution).toBe('done');
    expect(p.resolution).toMatch(/finished offline/);
  } finally {
    await service.close();
  }
  expect(Object.keys(flagsOf(base))).toEqual(['c1', 'c2', 'c3', 'c4']);
  assertSettled(s, [base]);
});
