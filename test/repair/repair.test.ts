// strata repair on chains broken outside Strata (qemu-img/qemu-io), checked against raw copies of the
// disk taken at each checkpoint: no checkpoint is ever reported ok with a changed block missing,
// before or after the repair, and writes after the repair are tracked. Needs the built CLI.
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test, expect, vi } from 'vitest';
import { qemuImg } from '../helpers/qemu.ts';
import { sinceOf } from '../helpers/truth.ts';
import { imageLockState } from '../../electron/core/daemon/image-lock.ts';
import { G, K, newScenario, addBitmap, write, strata, sums, assertTruth, qemuCheckAll, seedUntracked, brokenGap, brokenInUseCrashed, brokenDisabledNewest, brokenDisabledBase, brokenStale, brokenUncovered, type Scenario } from './scenarios.ts';

// Each test runs a dozen QEMU tools and the CLI: minutes on a loaded 2-core machine, seconds otherwise.
vi.setConfig({ testTimeout: 120_000 });

/** Repair without --yes changes nothing; with --yes it applies; then nothing is left to repair. */
function repairFully(s: Scenario, expectCodes: string[]): any {
  const before = sums(s.layers);
  const dry = strata(s.dir, ['repair', s.top, '--json']);
  expect(dry.code, dry.stderr).toBe(0);
  expect(dry.json.applied).toBe(false);
  expect(dry.json.findings.map((f: any) => f.code)).toEqual(expectCodes);
  expect(sums(s.layers)).toEqual(before);
  // before the repair too: nothing reported ok misses a change
  assertTruth(s);
  const wet = strata(s.dir, ['repair', s.top, '--yes', '--json']);
  expect(wet.code, wet.stderr).toBe(0);
  expect(wet.json.applied).toBe(true);
  expect(wet.json.after.every((v: any) => v.state === 'ok' || v.state === 'gone'), JSON.stringify(wet.json.after)).toBe(true);
  const again = strata(s.dir, ['repair', s.top, '--json']);
  expect(again.code, again.stderr).toBe(0);
  expect(again.json.findings.filter((f: any) => f.problem)).toEqual([]);
  // what the preview promised is what the files now say
  expect(again.json.before.map((v: any) => [v.name, v.state, v.dirtyBytes])).toEqual(wet.json.after.filter((v: any) => v.state !== 'gone').map((v: any) => [v.name, v.state, v.dirtyBytes]));
  qemuCheckAll(s);
  expect(fs.readdirSync(path.join(s.dir, 'home', 'run')).filter((f) => f.startsWith('repair-'))).toEqual([]);
  return wet.json;
}

function writesAfterAreTracked(s: Scenario): void {
  write(s.top, 0x55, 7 * G, G);
  write(s.top, 0x56, 0, 4 * K);
  const r = assertTruth(s);
  expect(r.filter((x) => x.state === 'ok').length).toBeGreaterThan(0);
}

test('untracked overlay (the seed example): bitmaps from allocation, exactly --11111- and ---1111-', () => {
  const s = seedUntracked();
  const j = repairFully(s, ['untracked-overlay']);
  expect(j.before.map((v: any) => v.state)).toEqual(['unknown', 'unknown']);
  expect(j.after.map((v: any) => [v.name, v.drawing])).toEqual([
    ['bitmap1', '--11111-'],
    ['bitmap2', '---1111-'],
  ]);
  expect(j.plan.flatMap((p: any) => p.commands.map((c: string[]) => c.slice(0, 2).join(' ')))).toEqual(['strata:write-allocation-bitmap --layer', 'qemu-img bitmap']);
  expect(j.plan[1].commands[0].slice(0, 6)).toEqual(['qemu-img', 'bitmap', '--add', '-g', '65536', '--merge']);
  const r = assertTruth(s);
  expect(r.map((x) => x.state)).toEqual(['ok', 'ok']);
  writesAfterAreTracked(s);
});

test('gap: a middle layer made outside Strata between two layers with bitmaps', () => {
  const s = brokenGap();
  const j = repairFully(s, ['gap']);
  expect(j.findings[0].layers).toEqual([path.join(s.dir, 'mid.qcow2')]);
  expect(assertTruth(s)[0].state).toBe('ok');
  writesAfterAreTracked(s);
});

test('in-use after a crash (lock free): removed, and refilled from allocation where the checkpoint lives lower', async () => {
  const s = await brokenInUseCrashed();
  const j = repairFully(s, ['in-use-crashed']);
  expect(j.after.find((v: any) => v.name === 'c2').state).toBe('gone');
  expect(j.after.find((v: any) => v.name === 'c1').state).toBe('ok');
  expect(j.consequences.join(' ')).toMatch(/c2' is gone/);
  writesAfterAreTracked(s);
});

test('disabled newest bitmap in the active layer: allocation merged in, then enabled (never enabled alone)', () => {
  const s = brokenDisabledNewest();
  repairFully(s, ['disabled-newest']);
  const r = assertTruth(s);
  expect(r[0].state).toBe('ok');
  writesAfterAreTracked(s);
});

test('disabled newest in a single-layer image: not repairable, exit 2, nothing written', () => {
  const s = brokenDisabledBase();
  const before = sums(s.layers);
  const r = strata(s.dir, ['repair', s.top, '--yes', '--json']);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain(s.top);
  expect(r.stderr).toContain('disabled-newest');
  expect(r.json.applied).toBe(false);
  expect(sums(s.layers)).toEqual(before);
  expect(sinceOf(s.top, 'c1').state).toBe('unknown');
});

test('stale bitmaps (autoclear bit cleared): dropped, then the layer refilled from its allocation', () => {
  const s = brokenStale();
  const j = repairFully(s, ['stale-bitmaps']);
  expect(j.plan.map((p: any) => p.commands[0].slice(0, 2).join(' '))).toContain('qemu-img check');
  expect(assertTruth(s)[0].state).toBe('ok');
  writesAfterAreTracked(s);
});

test('a layer written before its bitmap was added: uncovered allocation merged in', () => {
  const s = brokenUncovered();
  repairFully(s, ['uncovered-allocation']);
  expect(assertTruth(s).map((x) => x.state)).toEqual(['ok', 'ok']);
  writesAfterAreTracked(s);
});

test('moved backing file: candidates listed (exit 2), then --backing rebases and the rest is repaired', () => {
  const s = seedUntracked();
  const moved = path.join(s.dir, 'base-moved.qcow2');
  fs.renameSync(path.join(s.dir, 'base.qcow2'), moved);
  s.layers = [s.top, moved];
  const before = sums(s.layers);
  const r = strata(s.dir, ['repair', s.top, '--json']);
  expect(r.code).toBe(2);
  expect(r.json.findings[0].code).toBe('backing-missing');
  expect(r.json.findings[0].message).toContain(moved);
  expect(sums(s.layers)).toEqual(before);
  const w = strata(s.dir, ['repair', s.top, '--backing', moved, '--yes', '--json']);
  expect(w.code, w.stderr).toBe(0);
  expect(w.json.plan[0].commands[0]).toEqual(['qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', moved, '-F', 'qcow2', s.top]);
  expect(w.json.after.map((v: any) => v.drawing)).toEqual(['--11111-', '---1111-']);
  expect(assertTruth(s).map((x) => x.state)).toEqual(['ok', 'ok']);
  qemuCheckAll(s);
});

test('in-use while a process holds the lock: a note, nothing done, exit 0', async () => {
  const s = newScenario();
  addBitmap(s.top, 'c1');
  const { spawn } = await import('node:child_process');
  const p = spawn('qemu-io', ['-c', 'sleep 60000', s.top], { stdio: 'ignore' });
  try {
    // until qemu-io holds the lock and has stored its bitmaps as in-use
    for (let i = 0; i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100));
      if ((await imageLockState(s.top)) === 'locked' && qemuImg('info', '-U', '--output=json', s.top).includes('in-use')) break;
    }
    const r = strata(s.dir, ['repair', s.top, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.findings.map((f: any) => [f.code, f.problem])).toEqual([['in-use-live', false]]);
    expect(r.json.plan).toEqual([]);
  } finally {
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
  }
});

const CRASH_POINTS = ['running-step-0', 'ran-step-0', 'after-step-0', 'running-step-1', 'ran-step-1'];
for (const at of CRASH_POINTS) {
  test(`kill -9 during a repair (${at}): the next strata repair --yes resumes it and the checkpoints are right`, () => {
    const s = seedUntracked();
    const child = spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'repair-child.ts'), s.top], {
      encoding: 'utf8',
      env: { ...process.env, STRATA_HOME: path.join(s.dir, 'home'), CRASH_AT: at },
    });
    expect(child.signal, child.stderr).toBe('SIGKILL');
    const r = strata(s.dir, ['repair', s.top, '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.recovered.length).toBe(1);
    expect(r.json.recovered[0]).toMatch(/resumed after a restart and finished/);
    const again = strata(s.dir, ['repair', s.top, '--json']);
    expect(again.json.findings).toEqual([]);
    expect(again.json.before.map((v: any) => v.drawing)).toEqual(['--11111-', '---1111-']);
    expect(assertTruth(s).map((x) => x.state)).toEqual(['ok', 'ok']);
    qemuCheckAll(s);
    expect(fs.readdirSync(path.join(s.dir, 'home', 'run')).filter((f) => f.startsWith('repair-'))).toEqual([]);
    const plans = JSON.parse(strata(s.dir, ['history', '--plans', '--json']).stdout);
    expect(plans.filter((p: any) => p.kind === 'repair').map((p: any) => p.state)).toEqual(['done']);
  });
}

test('a step that fails rolls the plan back: no byte of any layer changed, no scratch left', () => {
  const s = seedUntracked();
  const before = sums(s.layers);
  const child = spawnSync(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'repair-child.ts'), s.top], {
    encoding: 'utf8',
    env: { ...process.env, STRATA_HOME: path.join(s.dir, 'home'), HIDE_AT: 'running-step-1' },
  });
  expect(child.status, child.stderr).toBe(0);
  expect(JSON.parse(child.stdout).state).toBe('rolled-back');
  fs.renameSync(s.top + '.away', s.top);
  expect(sums(s.layers)).toEqual(before);
  expect(fs.readdirSync(path.join(s.dir, 'home', 'run')).filter((f) => f.startsWith('repair-'))).toEqual([]);
  const plans = JSON.parse(strata(s.dir, ['history', '--plans', '--json']).stdout);
  expect(plans[0].state).toBe('rolled-back');
  expect(plans[0].steps.map((x: any) => x.state)).toEqual(['undone', 'failed']);
});
