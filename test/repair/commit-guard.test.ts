// Never a false clean through a commit: a checkpoint that cannot be trusted now (a layer the commit
// removes has writes since it that none of its bitmaps marks: an overlay made outside Strata, a gap)
// must not come out of the commit reading ok. Measured before the guard, on QEMU 7.2, both schemes:
// a checkpoint made in a middle layer under an untracked overlay, and a disabled base checkpoint
// under a gap layer, read ok after `commit --base` while missing 64 KiB the removed layer wrote.
// Now the commit is refused naming the checkpoint and the layer, writes nothing, and after
// `strata repair --yes` the same commit runs and every checkpoint covers the truth.
import { test, expect } from 'vitest';
import path from 'node:path';
import { qemuImg } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { newScenario, overlay, write, addBitmap, checkpoint, assertTruth, qemuCheckAll, strata, sums, G, type Scenario } from './scenarios.ts';

/** base written; mid: written, then X added (checkpoint X), written; top: an overlay made outside Strata, written. */
function createdInMid(): Scenario {
  const s = newScenario();
  write(s.top, 0x41, 0, 2 * G);
  overlay(s, 'mid.qcow2');
  write(s.top, 0x42, 2 * G, G);
  addBitmap(s.top, 'X');
  checkpoint(s, 'X');
  write(s.top, 0x43, 3 * G, G);
  overlay(s, 'top.qcow2');
  write(s.top, 0x44, 5 * G, G);
  return s;
}

/** base: X made and written (X recording); mid: a gap (no bitmap, made outside Strata), written; top: X recording, written. */
function recordingBaseGap(disableBase = false): Scenario {
  const s = newScenario();
  write(s.top, 0x41, 0, 2 * G);
  addBitmap(s.top, 'X');
  checkpoint(s, 'X');
  write(s.top, 0x42, 2 * G, G);
  if (disableBase) qemuImg('bitmap', '--disable', s.top, 'X');
  overlay(s, 'mid.qcow2');
  write(s.top, 0x43, 4 * G, G);
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'X');
  write(s.top, 0x44, 6 * G, G);
  return s;
}

const at = (s: Scenario, name: string) => path.join(s.dir, name);
const files = (s: Scenario, active: string) => (active === 'base.qcow2' ? [at(s, 'base.qcow2')] : [s.top, at(s, 'base.qcow2')]);
const MODES = [
  { mode: '--base base', args: (s: Scenario) => ['--base', at(s, 'base.qcow2')], active: 'base.qcow2' },
  { mode: 'intermediate --top mid', args: (s: Scenario) => ['--top', at(s, 'mid.qcow2')], active: 'top.qcow2' },
];

/** The commit went through: every checkpoint known, ok and covering the truth, then and after more writes. */
function assertKept(s: Scenario, active: string): void {
  s.layers = files(s, active);
  s.top = s.layers[0];
  qemuCheckAll(s);
  expect(assertTruth(s).map((t) => [t.name, t.state, t.missed])).toEqual([['X', 'ok', 0]]);
  write(s.top, 0x61, 7 * G, G);
  expect(assertTruth(s).map((t) => [t.name, t.state, t.missed]), 'and writes after the commit are tracked').toEqual([['X', 'ok', 0]]);
}

function assertRefused(s: Scenario, args: string[], says: string): void {
  const layers = [...s.layers];
  const before = sums(layers);
  for (const r of [strata(s.dir, [...args, '--json']), strata(s.dir, [...args, '--yes', '--json'])]) {
    expect(r.code, r.stdout).toBe(2);
    expect(r.stderr).toContain(says);
  }
  expect(sums(layers), 'a refused commit writes no byte, with --yes too').toEqual(before);
}

for (const scheme of ['seed', 'libvirt'] as const) {
  test(`offline, --scheme ${scheme}: a checkpoint made in the middle layer, under an overlay made outside Strata: commit --base is refused naming the checkpoint and the overlay, nothing written; after strata repair it keeps the truth`, { timeout: 90000 }, () => {
    const s = createdInMid();
    expect(assertTruth(s).map((r) => r.state), 'X cannot be trusted before').toEqual(['unknown']);
    const args = ['commit', s.top, '--base', at(s, 'base.qcow2'), '--scheme', scheme];
    assertRefused(s, args, `checkpoint 'X': ${at(s, 'top.qcow2')} has no bitmap for checkpoint 'X' or a later one`);
    const repaired = strata(s.dir, ['repair', s.top, '--yes', '--json']);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(assertTruth(s).map((r) => r.state), 'X is ok after the repair').toEqual(['ok']);
    const r = strata(s.dir, [...args, '--yes', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe('done');
    assertKept(s, 'base.qcow2');
  });

  for (const m of MODES) {
    test(`offline, --scheme ${scheme}, ${m.mode}: a gap layer over a base whose checkpoint records: not refused, the base's bitmap records what the commit brings down`, { timeout: 90000 }, () => {
      const s = recordingBaseGap();
      expect(assertTruth(s).map((r) => r.state)).toEqual(['unknown']);
      const r = strata(s.dir, ['commit', s.top, ...m.args(s), '--scheme', scheme, '--yes', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.plan.effects.keptRecording.map((k: any) => k.name)).toEqual(['X']);
      expect(r.json.active).toBe(at(s, m.active));
      assertKept(s, m.active);
    });

    if (m.active === 'base.qcow2') {
      test(`offline, --scheme ${scheme}, ${m.mode}: a base whose checkpoint was disabled, under a gap: refused (the commit would make it record and read ok), nothing written`, { timeout: 90000 }, () => {
        const s = recordingBaseGap(true);
        expect(assertTruth(s).map((r) => r.state)).toEqual(['unknown']);
        assertRefused(s, ['commit', s.top, ...m.args(s), '--scheme', scheme], `in ${at(s, 'base.qcow2')} every bitmap covering checkpoint 'X' is disabled`);
        expect(assertTruth(s).map((r) => r.state), 'still honestly unknown').toEqual(['unknown']);
      });
    } else {
      test(`offline, --scheme ${scheme}, ${m.mode}: a base whose checkpoint was disabled, under a gap: the commit runs, and the checkpoint stays honestly unknown (the base's bitmap stays disabled)`, { timeout: 90000 }, () => {
        const s = recordingBaseGap(true);
        const r = strata(s.dir, ['commit', s.top, ...m.args(s), '--scheme', scheme, '--yes', '--json']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.json.state).toBe('done');
        s.layers = files(s, m.active);
        qemuCheckAll(s);
        expect(assertTruth(s).map((t) => t.state)).toEqual(['unknown']);
      });
    }
  }
}

test('live (a daemon standing in for the VM): an active commit of an overlay made outside Strata over a checkpoint made in the middle layer is refused, the VM untouched', { timeout: 90000 }, async (t) => {
  const s = createdInMid();
  const d = await startDaemon(t, s.dir, ['--blockdev', `driver=qcow2,node-name=vm0,file.driver=file,file.filename=${s.top}`]);
  for (const scheme of ['seed', 'libvirt']) {
    const r = strata(s.dir, ['commit', '--socket', d.socket, '--node', 'vm0', '--base', at(s, 'base.qcow2'), '--scheme', scheme, '--yes', '--json']);
    expect(r.code, r.stdout).toBe(2);
    expect(r.stderr).toContain(`checkpoint 'X': ${at(s, 'top.qcow2')} has no bitmap for checkpoint 'X'`);
  }
  const nodes = JSON.parse(strata(s.dir, ['chain', '--socket', d.socket, '--json']).stdout || 'null');
  expect(nodes === null || JSON.stringify(nodes).includes('top.qcow2')).toBe(true);
  d.child.kill('SIGTERM');
  if (d.child.exitCode === null) await new Promise((res) => d.child.once('exit', res));
  expect(assertTruth(s).map((r) => r.state), 'still honestly unknown').toEqual(['unknown']);
  const r = strata(s.dir, ['repair', s.top, '--yes', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(assertTruth(s).map((x) => x.state)).toEqual(['ok']);
});
