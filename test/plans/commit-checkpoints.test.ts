// Commit keeping the checkpoints, on real QEMU: the seed thread's worked example exactly as the
// thread draws it, and a truth check. A raw copy of the disk is taken when each checkpoint is made;
// after the commit (and after writes made once it is done) every block that differs from that copy
// must be marked by "changes since" the checkpoint. Also the case that used to be a false clean: an
// overlay made outside Strata, whose writes no bitmap tracks.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { tempDir, qemuImg, qemuIo, run } from '../helpers/qemu.ts';
import { clusters } from '../core/seed-chain.ts';
import { withChain, bitmapExtents, findBitmap } from '../../electron/core/qcow2/chain.ts';
import { toExtents } from '../../electron/core/extents.ts';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

/** The seed's chain, built step by step with a raw copy of the disk at each checkpoint. */
function seedWithTruth(dir: string, opts: { untrackedTop?: boolean; nightly?: boolean } = {}) {
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  const truth: Record<string, string> = {};
  const at = (name: string, image: string) => (truth[name] = rawCopy(image, path.join(dir, `at-${name}.raw`)));
  qemuImg('create', '-q', '-f', 'qcow2', base, '512K');
  qemuIo(base, ['write -P 0x41 0 128k']);
  qemuImg('bitmap', '--add', base, 'bitmap1');
  at('bitmap1', base);
  qemuIo(base, ['write -P 0x42 128k 128k']);
  qemuImg('bitmap', '--disable', base, 'bitmap1');
  qemuImg('bitmap', '--add', base, 'bitmap2');
  at('bitmap2', base);
  qemuIo(base, ['write -P 0x43 256k 128k']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top);
  if (!opts.untrackedTop) {
    qemuImg('bitmap', '--add', top, 'bitmap3');
    at('bitmap3', top);
  }
  qemuIo(top, ['write -P 0x44 192k 64k', 'write -P 0x44 320k 128k']);
  if (opts.nightly) {
    qemuImg('bitmap', '--add', top, 'nightly');
    at('nightly', top);
  }
  return { base, top, truth };
}

const bitmapFlags = (img: string): Record<string, string[]> =>
  Object.fromEntries((JSON.parse(run('qemu-img', ['info', '--output=json', img]))['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));

/** Every checkpoint is ok and covers every block that changed since its raw copy. */
function assertTruth(image: string, truth: Record<string, string>, dir: string, label: string) {
  const now = rawCopy(image, path.join(dir, `now-${label}.raw`));
  for (const [name, copy] of Object.entries(truth)) {
    const s = sinceOf(image, name);
    assert.equal(s.state, 'ok', `${label}: checkpoint ${name} is ok (${s.problems.join('; ')})`);
    const changed = differingBlocks(copy, now);
    assert.equal(missedBytes(changed, s.extents), 0, `${label}: since ${name} = ${clusters(s.extents)} covers every changed block ${clusters(changed)}`);
  }
}

async function commitThroughService(dir: string, top: string, scheme?: 'seed' | 'libvirt') {
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  try {
    const conn = await call(service, 'connection:open-image', { image: top, readOnly: false });
    const params = { connection: conn.id, ...(scheme ? { scheme } : {}) };
    const preview = await call(service, 'plan:preview', { kind: 'commit-with-bitmaps', params });
    const done = new Promise<any>((resolve) => service.subscribe((e, p: any) => e === 'plan:changed' && p.state !== 'running' && resolve(p)));
    const started = await call(service, 'plan:start', { kind: 'commit-with-bitmaps', params });
    const end = await done;
    assert.equal(end.id, started.id);
    return { preview, end };
  } finally {
    await service.close(); // SIGTERM to the daemon: QEMU stores the bitmaps
  }
}

test("the seed's example, exactly as the thread draws it; every checkpoint still covers every write", { timeout: 90000 }, async (t) => {
  const dir = tempDir(t);
  const { base, top, truth } = seedWithTruth(dir, { nightly: true });
  assertTruth(top, truth, dir, 'before');
  const { preview, end } = await commitThroughService(dir, top);

  // The preview says what happens to each checkpoint before anything runs.
  assert.deepEqual(preview.effects.disabledDuringCommit, ['bitmap2']);
  assert.deepEqual(
    preview.effects.carried.map((c: any) => [c.name, c.created, c.recordsAfter]),
    [
      ['bitmap3', true, true],
      ['nightly', true, true],
    ],
  );
  assert.deepEqual(preview.effects.lost, []);
  assert.deepEqual(preview.effects.checkpointsKept, ['bitmap1', 'bitmap2', 'bitmap3', 'nightly']);
  assert.deepEqual(preview.effects.reEnabled, ['bitmap2']);
  assert.equal(preview.effects.active, base);
  // ... and the exact QMP of every step.
  const sent = preview.steps.flatMap((s: any) => s.commands.map((c: any) => c.execute));
  assert.deepEqual(sent, ['block-dirty-bitmap-disable', 'block-commit', 'transaction', 'job-complete', 'job-dismiss', 'transaction', 'block-dirty-bitmap-remove']);
  const carry = preview.steps[2].commands[0].arguments.actions;
  assert.ok(carry.some((a: any) => a.type === 'block-dirty-bitmap-merge' && a.data.target === 'bitmap3' && a.data.bitmaps[0].name === 'bitmap3'));

  assert.equal(end.state, 'done', end.error ?? '');
  assert.deepEqual(end.effects, preview.effects, 'the journaled plan keeps its effects');
  // The thread: backing AABDCDD-, bitmap1 --11---- (disabled), bitmap2 ----11--, bitmap3 ---1-11- (enabled).
  // bitmap2 records again, as before the commit (the thread leaves it disabled; its contents are the same).
  assert.deepEqual(bitmapFlags(base), { bitmap1: [], bitmap2: ['auto'], bitmap3: ['auto'], nightly: ['auto'] });
  // The directory lists the carried bitmaps in the top's creation order ("changes since" relies on it).
  assert.deepEqual(Object.keys(bitmapFlags(base)), ['bitmap1', 'bitmap2', 'bitmap3', 'nightly']);
  const show = (name: string) => withChain(base, (c) => clusters(toExtents(bitmapExtents(c.layers[0], findBitmap(c.layers[0], name)!))));
  assert.equal(show('bitmap1'), '--11----');
  assert.equal(show('bitmap2'), '----11--');
  assert.equal(show('bitmap3'), '---1-11-');
  assert.equal(show('nightly'), '--------');
  assert.equal(clusters(sinceOf(base, 'bitmap1').extents), '--11111-');
  assert.equal(clusters(sinceOf(base, 'bitmap2').extents), '---1111-');
  assert.equal(clusters(sinceOf(base, 'bitmap3').extents), '---1-11-');
  assertTruth(base, truth, dir, 'after the commit');

  // Writes after the commit are tracked by the checkpoints that record.
  qemuIo(base, ['write -P 0x45 0 64k', 'write -P 0x46 448k 64k']);
  assertTruth(base, truth, dir, 'after later writes');
  assert.equal(clusters(sinceOf(base, 'nightly').extents), '1------1');
});

test('an overlay made outside Strata: the base keeps recording through the commit, so no write goes unmarked', { timeout: 90000 }, async (t) => {
  const dir = tempDir(t);
  const { base, top, truth } = seedWithTruth(dir, { untrackedTop: true });
  // Before: the checkpoints cannot be known (the top's writes are tracked by no bitmap).
  assert.equal(sinceOf(top, 'bitmap2').state, 'unknown');
  const { preview, end } = await commitThroughService(dir, top);
  assert.deepEqual(preview.effects.disabledDuringCommit, []);
  assert.deepEqual(preview.effects.keptRecording.map((k: any) => k.name), ['bitmap2']);
  assert.match(preview.effects.keptRecording[0].why, /no bitmap for checkpoint 'bitmap2'/);
  assert.equal(end.state, 'done', end.error ?? '');
  assert.deepEqual(bitmapFlags(base), { bitmap1: [], bitmap2: ['auto'] });
  // bitmap2 marked everything the commit copied: ---1111- now, and it is the truth.
  assert.equal(clusters(sinceOf(base, 'bitmap2').extents), '---1111-');
  assertTruth(base, truth, dir, 'after the commit');
});

test("a top bitmap added after writes does not cover them: the base's bitmap keeps recording", { timeout: 90000 }, async (t) => {
  const dir = tempDir(t);
  // The top was written before its only bitmap was made: its bitmap misses those writes.
  const { base, top, truth } = seedWithTruth(dir, { untrackedTop: true, nightly: true });
  const { preview, end } = await commitThroughService(dir, top);
  assert.deepEqual(preview.effects.keptRecording.map((k: any) => k.name), ['bitmap2']);
  assert.match(preview.effects.keptRecording[0].why, /KiB written that none of its bitmaps/);
  assert.deepEqual(preview.effects.carried.map((c: any) => c.name), ['nightly']);
  assert.equal(end.state, 'done', end.error ?? '');
  assert.deepEqual(bitmapFlags(base), { bitmap1: [], bitmap2: ['auto'], nightly: ['auto'] });
  assertTruth(base, truth, dir, 'after the commit');
});

test("libvirt's scheme: bitmaps keep recording, the top's are carried; every checkpoint covers every write", { timeout: 90000 }, async (t) => {
  const dir = tempDir(t);
  const { base, top, truth } = seedWithTruth(dir, { nightly: true });
  const { preview, end } = await commitThroughService(dir, top, 'libvirt');
  assert.deepEqual(preview.effects.disabledDuringCommit, []);
  assert.deepEqual(preview.effects.keptRecording.map((k: any) => k.name), ['bitmap2']);
  assert.equal(end.state, 'done', end.error ?? '');
  assert.deepEqual(bitmapFlags(base), { bitmap1: [], bitmap2: ['auto'], bitmap3: ['auto'], nightly: ['auto'] });
  assert.equal(clusters(sinceOf(base, 'bitmap3').extents), '---1-11-', 'the carried bitmap did not record the commit');
  assertTruth(base, truth, dir, 'after the commit');
  qemuIo(base, ['write -P 0x47 64k 64k']);
  assertTruth(base, truth, dir, 'after later writes');
});
