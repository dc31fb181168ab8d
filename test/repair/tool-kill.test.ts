// kill -9 of QEMU's own tool during a repair step: a shim first on PATH of the `strata repair --yes`
// child (qemu-img-shim.sh) SIGKILLs the Nth image-writing qemu-img invocation before it runs, after
// the real one finished, or at its Kth write (strace). Then: the repair fails saying which command
// on which file, the journal shows the step that stopped, no checkpoint reads ok with a changed
// block missing at that moment, and the next `strata repair --yes` (real qemu-img) brings the chain
// to health, checked against raw copies of the disk taken at each checkpoint.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { test, expect, vi } from 'vitest';
import { strata, sums, assertTruth, qemuCheckAll, seedUntracked, brokenGap, brokenUncovered, brokenDisabledNewest, brokenInUseCrashed, brokenStale, write, G, type Scenario } from './scenarios.ts';

vi.setConfig({ testTimeout: 120_000 });

const REAL = execFileSync('sh', ['-c', 'command -v qemu-img'], { encoding: 'utf8' }).trim();

/** A bin folder in the scenario whose qemu-img is the shim, and the environment that arms it. */
function shimEnv(s: Scenario, nth: number, mode: 'before' | 'after' | 'mid', writeAt = 1): Record<string, string> {
  const bin = path.join(s.dir, 'shim-bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync(path.join(import.meta.dirname, 'qemu-img-shim.sh'), path.join(bin, 'qemu-img'));
  fs.chmodSync(path.join(bin, 'qemu-img'), 0o755);
  return { PATH: `${bin}:${process.env.PATH}`, SHIM_REAL: REAL, SHIM_COUNT: path.join(s.dir, 'shim-count'), SHIM_NTH: String(nth), SHIM_MODE: mode, SHIM_WRITE: String(writeAt) };
}

type Case = { name: string; make: () => Scenario | Promise<Scenario>; nth: number; mode: 'before' | 'after' | 'mid'; writeAt?: number; kind: string; restores?: string };

// The image-writing invocations of each repair, in order (from its plan):
//   untracked overlay, gap: 1 bitmap --add (after the scratch Strata writes itself)
//   uncovered allocation: 1 bitmap --merge; disabled newest: 1 bitmap --merge --enable
//   in-use after a crash: 1, 2 bitmap --remove (c1, c2), 3 bitmap --add (c1 from allocation)
//   stale bitmaps: 1 check -r leaks, 2 bitmap --add
const CASES: Case[] = [
  { name: 'untracked overlay', make: seedUntracked, nth: 1, mode: 'before', kind: 'bitmap --add' },
  { name: 'untracked overlay', make: seedUntracked, nth: 1, mode: 'after', kind: 'bitmap --add' },
  { name: 'untracked overlay', make: seedUntracked, nth: 1, mode: 'mid', writeAt: 1, kind: 'bitmap --add' },
  { name: 'untracked overlay', make: seedUntracked, nth: 1, mode: 'mid', writeAt: 2, kind: 'bitmap --add' },
  { name: 'gap', make: brokenGap, nth: 1, mode: 'after', kind: 'bitmap --add' },
  { name: 'gap', make: brokenGap, nth: 1, mode: 'mid', writeAt: 2, kind: 'bitmap --add' },
  { name: 'uncovered allocation', make: brokenUncovered, nth: 1, mode: 'before', kind: 'bitmap --merge' },
  { name: 'uncovered allocation', make: brokenUncovered, nth: 1, mode: 'after', kind: 'bitmap --merge' },
  { name: 'uncovered allocation', make: brokenUncovered, nth: 1, mode: 'mid', writeAt: 1, kind: 'bitmap --merge' },
  { name: 'uncovered allocation', make: brokenUncovered, nth: 1, mode: 'mid', writeAt: 2, kind: 'bitmap --merge', restores: 'c2' },
  { name: 'disabled newest', make: brokenDisabledNewest, nth: 1, mode: 'after', kind: 'bitmap --merge' },
  { name: 'disabled newest', make: brokenDisabledNewest, nth: 1, mode: 'mid', writeAt: 2, kind: 'bitmap --merge', restores: 'c1' },
  { name: 'in-use after a crash', make: brokenInUseCrashed, nth: 1, mode: 'after', kind: 'bitmap --remove' },
  { name: 'in-use after a crash', make: brokenInUseCrashed, nth: 2, mode: 'before', kind: 'bitmap --remove' },
  { name: 'in-use after a crash', make: brokenInUseCrashed, nth: 3, mode: 'after', kind: 'bitmap --add' },
  { name: 'stale bitmaps', make: brokenStale, nth: 1, mode: 'after', kind: 'check -q' },
  { name: 'stale bitmaps', make: brokenStale, nth: 1, mode: 'mid', writeAt: 1, kind: 'check -q' },
  { name: 'stale bitmaps', make: brokenStale, nth: 2, mode: 'before', kind: 'bitmap --add' },
];

for (const c of CASES) {
  const at = c.mode === 'mid' ? `at its write ${c.writeAt}` : `${c.mode} it ran`;
  test(`${c.name}: qemu-img ${c.kind} (invocation ${c.nth}) killed ${at}: a clear failure, no false clean, the next repair --yes heals the chain`, async () => {
    const s = await c.make();
    // what the repair promises, to be delivered in the end despite the kill
    const promised = strata(s.dir, ['repair', s.top, '--json']).json.after.map((v: any) => [v.name, v.state, v.dirtyBytes]);
    const fail = strata(s.dir, ['repair', s.top, '--yes', '--json'], shimEnv(s, c.nth, c.mode, c.writeAt));
    const killed = fs.readFileSync(path.join(s.dir, 'shim-count.killed'), 'utf8').trim();
    // killed with the layer open: the bitmaps it left in-use are put back from their stored contents (or none were hit)
    expect(/in-use restored from their stored contents: ([\w, ]+)/.exec(fail.stderr)?.[1] ?? null).toBe(c.restores ?? null);
    expect(killed.startsWith(c.kind), killed).toBe(true);
    // the failure names the tool, its subcommand and the file, and points at the journal
    expect(fail.code, fail.stderr).not.toBe(0);
    expect(fail.stderr).toMatch(new RegExp(`qemu-img ${c.kind.split(' ')[0]} failed on /[^:]*: killed by SIGKILL`));
    expect(fail.stderr).toContain('strata history --plans');
    const file = killed.split(' ').filter((x) => x.startsWith('/') && x.endsWith('.qcow2') && !path.basename(x).startsWith('repair-'))[0];
    expect(fail.stderr).toContain(file);
    // the journal: the step the tool was killed in is the one that stopped, nothing after it ran
    const plans = strata(s.dir, ['history', '--plans', '--json']).json;
    const p = plans.find((x: any) => x.kind === 'repair');
    expect(p.state).not.toBe('running');
    const stopped = p.steps.findIndex((x: any) => x.state === 'failed' || (x.state === 'done' && /the tool failed/.test(x.note ?? '')));
    expect(stopped, JSON.stringify(p.steps)).toBeGreaterThanOrEqual(0);
    expect(p.steps[stopped].spec.commands.some((cmd: string[]) => cmd.join(' ').includes(killed)), `${killed} in step ${stopped}`).toBe(true);
    expect(p.steps.slice(stopped + 1).every((x: any) => x.state === 'pending'), JSON.stringify(p.steps)).toBe(true);
    // at that moment: whatever Strata calls ok covers every change (inspect, and the raw copies)
    const seen = strata(s.dir, ['inspect', s.top, '--json']);
    expect(seen.code, seen.stderr).toBe(0);
    const truth = assertTruth(s);
    expect(truth.map((x) => x.state)).toEqual(seen.json.checkpoints.filter((x: any) => s.copies.has(x.name)).map((x: any) => x.state));
    // the next repair, with the real qemu-img, settles the chain
    const again = strata(s.dir, ['repair', s.top, '--yes', '--json']);
    expect(again.code, again.stderr).toBe(0);
    const after = strata(s.dir, ['repair', s.top, '--json']);
    expect(after.json.findings.filter((f: any) => f.problem)).toEqual([]);
    // no checkpoint lost to the kill: the chain is what the first plan promised (a killed qemu-img's
    // in-use bitmaps are restored from their stored contents, not dropped)
    expect(after.json.before.map((v: any) => [v.name, v.state, v.dirtyBytes])).toEqual(promised.filter((v: any) => v[1] !== 'gone'));
    const healed = assertTruth(s);
    // every checkpoint the chain still has is ok (the in-use case's c2 lived only in the crashed layer: gone, as in a clean repair)
    expect(healed.length).toBeGreaterThan(0);
    expect(healed.map((x) => x.state), JSON.stringify(healed)).toEqual(healed.map(() => 'ok'));
    qemuCheckAll(s);
    expect(fs.readdirSync(path.join(s.dir, 'home', 'run')).filter((f) => f.startsWith('repair-'))).toEqual([]);
    // writes after the repair are tracked
    const before = sums(s.layers);
    write(s.top, 0x5a, 7 * G, G);
    expect(sums(s.layers)).not.toEqual(before);
    assertTruth(s);
  });
}
