// strata commit further down the chain, on real QEMU: `--base LAYER` (an active commit of every layer
// above LAYER) and `--top MID --base LAYER` (an intermediate commit: the top stays active, the layer
// above MID is rebased onto LAYER). Three- and four-layer chains in both checkpoint styles (the seed
// thread's, a new bitmap per layer, and libvirt's, every checkpoint continued in every layer), both
// schemes, offline through Strata's daemon and live through a daemon standing in for the VM. After
// each commit every checkpoint is still known and covers every block that differs from the raw copy
// taken when it was made (and after later writes), qemu-img check is clean, no bitmap is in-use.
import { test, expect } from 'vitest';
import path from 'node:path';
import { qemuImg, run } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { layeredChain, write, assertTruth, qemuCheckAll, strata, sums, G, type Scenario } from './scenarios.ts';

const bitmapsOf = (img: string): Record<string, string[]> =>
  Object.fromEntries((JSON.parse(run('qemu-img', ['info', '--output=json', img]))['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));

const backingOf = (img: string): string | undefined => JSON.parse(run('qemu-img', ['info', '--output=json', img]))['backing-filename'];

function assertAllOk(s: Scenario, label: string) {
  const r = assertTruth(s);
  expect(r.map((x) => [x.name, x.state]), label).toEqual([...s.copies.keys()].map((n) => [n, 'ok']));
}

/** After the commit: the chain's layers are `layers`, top first; nothing in-use, order kept, truth before and after more writes. */
function assertAfter(s: Scenario, layers: string[], baseNames: string[]) {
  s.layers = layers;
  s.top = layers[0];
  const base = layers[layers.length - 1];
  expect(Object.keys(bitmapsOf(base)), 'the base lists every checkpoint in creation order').toEqual(baseNames);
  for (const l of layers) for (const [n, f] of Object.entries(bitmapsOf(l))) expect(f, `${l}: ${n}`).not.toContain('in-use');
  qemuCheckAll(s);
  assertAllOk(s, 'after the commit');
  write(s.top, 0x61, 7 * G, G);
  write(s.top, 0x62, 0, 512);
  assertAllOk(s, 'after later writes');
}

const at = (s: Scenario, name: string) => path.join(s.dir, name);

for (const scheme of ['seed', 'libvirt'] as const) {
  for (const style of ['seed', 'libvirt'] as const) {
    test(`offline, three layers (${style}'s checkpoints), --scheme ${scheme}: commit top --base base commits both layers into the base, which becomes active`, { timeout: 90000 }, () => {
      const s = layeredChain(3, style);
      assertAllOk(s, 'before');
      const top = s.top;
      const base = at(s, 'base.qcow2');
      const plan = strata(s.dir, ['commit', top, '--base', base, '--scheme', scheme, '--json']);
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.json.applied).toBe(false);
      expect(plan.json.active).toBe(base);
      expect(plan.json.plan.effects.removed).toEqual([top, at(s, 'mid1.qcow2')]);
      const r = strata(s.dir, ['commit', top, '--base', base, '--scheme', scheme, '--yes', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.state).toBe('done');
      expect(r.json.active).toBe(base);
      const c3 = r.json.plan.effects.carried.find((c: any) => c.name === 'c3');
      expect(c3.from).toEqual(style === 'seed' ? [at(s, 'mid1.qcow2')] : [top, at(s, 'mid1.qcow2')]);
      if (scheme === 'seed') expect(r.json.plan.effects.disabledDuringCommit).toEqual(style === 'seed' ? ['c2'] : ['c1', 'c2']);
      assertAfter(s, [base], ['c1', 'c2', 'c3', 'c4']);
    });

    test(`offline, four layers (${style}'s checkpoints), --scheme ${scheme}: --top mid2 --base base, the top stays active and is rebased onto the base`, { timeout: 90000 }, () => {
      const s = layeredChain(4, style);
      assertAllOk(s, 'before');
      const top = s.top;
      const base = at(s, 'base.qcow2');
      const before = sums([top]);
      const r = strata(s.dir, ['commit', top, '--top', at(s, 'mid2.qcow2'), '--base', base, '--scheme', scheme, '--yes', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.state).toBe('done');
      expect(r.json.active).toBe(top);
      expect(r.json.plan.effects.intermediate).toBe(true);
      const sent = r.json.plan.steps.flatMap((x: any) => x.commands.map((c: any) => c.execute));
      expect(sent).not.toContain('job-complete');
      expect(sent.slice(-2)).toEqual(['job-finalize', 'job-dismiss']);
      const commit = r.json.plan.steps.flatMap((x: any) => x.commands).find((c: any) => c.execute === 'block-commit');
      expect(commit.arguments['backing-file']).toBe('base.qcow2');
      expect(backingOf(top), 'the backing name stays relative').toBe('base.qcow2');
      expect(sums([top])).not.toEqual(before); // only its header: the backing name
      expect(bitmapsOf(top)).toEqual(style === 'seed' ? { c5: ['auto'] } : { c1: ['auto'], c2: ['auto'], c3: ['auto'], c4: ['auto'], c5: ['auto'] });
      assertAfter(s, [top, base], ['c1', 'c2', 'c3', 'c4']);
    });
  }
}

test('offline, four layers: --top mid2 alone commits it into its own backing (mid1); the rest of the chain is kept', { timeout: 90000 }, () => {
  const s = layeredChain(4, 'seed');
  const top = s.top;
  const r = strata(s.dir, ['commit', top, '--top', at(s, 'mid2.qcow2'), '--yes', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.json.active).toBe(top);
  expect(backingOf(top)).toBe('mid1.qcow2');
  assertAfter(s, [top, at(s, 'mid1.qcow2'), at(s, 'base.qcow2')], ['c1', 'c2']);
  expect(Object.keys(bitmapsOf(at(s, 'mid1.qcow2')))).toEqual(['c3', 'c4']);
});

for (const [layers, scheme, style, mode] of [
  [3, 'seed', 'seed', 'active'],
  [4, 'libvirt', 'libvirt', 'intermediate'],
  [4, 'seed', 'libvirt', 'intermediate'],
] as const) {
  test(`live (a daemon standing in for the VM), ${layers} layers, --scheme ${scheme}, ${mode} commit into the base`, { timeout: 90000 }, async (t) => {
    const s = layeredChain(layers, style);
    const top = s.top;
    const base = at(s, 'base.qcow2');
    const d = await startDaemon(t, s.dir, ['--blockdev', `driver=qcow2,node-name=vm0,file.driver=file,file.filename=${top}`]);
    const args = ['commit', '--socket', d.socket, '--node', 'vm0', ...(mode === 'intermediate' ? ['--top', at(s, `mid${layers - 2}.qcow2`)] : []), '--base', base, '--scheme', scheme, '--yes', '--json'];
    const r = strata(s.dir, args);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe('done');
    expect(r.json.active).toBe(mode === 'active' ? base : top);
    d.child.kill('SIGTERM'); // the VM shuts down: QEMU stores its bitmaps
    if (d.child.exitCode === null) await new Promise((res) => d.child.once('exit', res));
    const names = layers === 3 ? ['c1', 'c2', 'c3', 'c4'] : ['c1', 'c2', 'c3', 'c4'];
    assertAfter(s, mode === 'active' ? [base] : [top, base], names);
  });
}

test('refusals are typed, name the file and write nothing: a base not below the top, a layer not in the chain', { timeout: 60000 }, () => {
  const s = layeredChain(3, 'seed');
  const top = s.top;
  const mid = at(s, 'mid1.qcow2');
  const base = at(s, 'base.qcow2');
  const before = sums([top, mid, base]);
  const above = strata(s.dir, ['commit', top, '--top', mid, '--base', top, '--yes']);
  expect(above.code).toBe(2);
  expect(above.stderr).toBe(`strata: --base ${top}: not below the commit's top ${mid} in the chain (${top} -> ${mid} -> ${base})\n`);
  const same = strata(s.dir, ['commit', top, '--top', mid, '--base', mid, '--yes']);
  expect(same.code).toBe(2);
  expect(same.stderr).toMatch(/not below the commit's top/);
  const elsewhere = path.join(s.dir, 'elsewhere.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', elsewhere, String(8 * G));
  const outside = strata(s.dir, ['commit', top, '--base', elsewhere, '--yes', '--json']);
  expect(outside.code).toBe(2);
  expect(outside.stderr).toBe(`strata: --base ${elsewhere}: not a layer of ${top}'s chain (its layers: ${top}, ${mid}, ${base})\n`);
  const bottom = strata(s.dir, ['commit', top, '--top', base, '--yes']);
  expect(bottom.code).toBe(2);
  expect(bottom.stderr).toMatch(/has no backing file, there is nothing to commit into/);
  expect(sums([top, mid, base])).toEqual(before);
});

test('live refusals: a base above the top, a node not in the chain; nothing is sent that changes anything', { timeout: 60000 }, async (t) => {
  const s = layeredChain(3, 'libvirt');
  const top = s.top;
  const mid = at(s, 'mid1.qcow2');
  const d = await startDaemon(t, s.dir, ['--blockdev', `driver=qcow2,node-name=vm0,file.driver=file,file.filename=${top}`]);
  const above = strata(s.dir, ['commit', '--socket', d.socket, '--node', 'vm0', '--top', mid, '--base', 'vm0', '--yes']);
  expect(above.code).toBe(2);
  expect(above.stderr).toMatch(new RegExp(`--base ${top}: not below the commit's top ${mid}`));
  const missing = strata(s.dir, ['commit', '--socket', d.socket, '--node', 'vm0', '--base', 'nosuchnode', '--yes']);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/--base nosuchnode: not a layer of .*top\.qcow2's chain/);
  d.child.kill('SIGTERM');
  if (d.child.exitCode === null) await new Promise((res) => d.child.once('exit', res));
  s.layers = [top, mid, at(s, 'base.qcow2')];
  assertAllOk(s, 'unchanged');
});
