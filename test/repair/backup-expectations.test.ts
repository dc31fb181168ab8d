// The finding "checkpoints a backup repository expects but the chain no longer has": a real backup
// into a repository (its checkpoint bitmap added by QEMU), then the checkpoint removed outside
// Strata, or left untrustworthy by an overlay made with qemu-img create -b: strata repair --json
// names the repository, says its next backup will be full and why, and does not call it repairable.
import { test, expect } from 'vitest';
import path from 'node:path';
import { qemuImg } from '../helpers/qemu.ts';
import { newScenario, write, overlay, strata } from './scenarios.ts';

const expected = (r: any) => r.json.findings.filter((f: any) => f.code === 'backup-checkpoint-missing');

test('a repository whose latest checkpoint is gone from the chain, or unknown in it: one finding, the next backup full; none while the repair makes it known again', { timeout: 90000 }, () => {
  const s = newScenario();
  write(s.top, 0x41, 0, 128 * 1024);
  const repo = path.join(s.dir, 'repo');
  const b = strata(s.dir, ['backup', s.top, '--repo', repo, '--json']);
  expect(b.code, b.stderr).toBe(0);
  const cp = b.json.checkpoint;

  const fine = strata(s.dir, ['repair', s.top, '--json']);
  expect(fine.code, fine.stderr).toBe(0);
  expect(expected(fine), 'the checkpoint is there and ok: nothing to say').toEqual([]);

  // an overlay made outside Strata: the checkpoint is unknown now, but the repair makes it known
  // again (the overlay filled from its allocation), so the repository is not told to go full
  const base = s.top;
  overlay(s, 'top.qcow2');
  write(s.top, 0x42, 0, 64 * 1024);
  const unknown = strata(s.dir, ['repair', s.top, '--json']);
  expect(unknown.json.before.find((v: any) => v.name === cp).state).toBe('unknown');
  expect(unknown.json.after.find((v: any) => v.name === cp).state).toBe('ok');
  expect(expected(unknown)).toEqual([]);
  expect(strata(s.dir, ['repair', s.top, '--yes', '--json']).code).toBe(0);

  // removed outside Strata from every layer: gone, and nothing can bring it back
  qemuImg('bitmap', '--remove', base, cp);
  qemuImg('bitmap', '--remove', s.top, cp);
  const gone = strata(s.dir, ['repair', s.top, '--json']);
  expect(gone.code, gone.stderr).toBe(0); // a fact to act on, not a reason for exit 2
  const [g] = expected(gone);
  expect(g.layers).toEqual([base]);
  expect(g.bitmaps).toEqual([cp]);
  expect(g.repairable).toBe(false);
  expect(g.problem).toBe(true);
  expect(g.message).toContain(repo);
  expect(g.message).toMatch(new RegExp(`expects checkpoint '${cp}' .*no longer has`));
  expect(g.consequence).toMatch(/next backup into .* will be full/);
  // ... and so it is
  const next = strata(s.dir, ['backup', s.top, '--repo', repo, '--json']);
  expect(next.code, next.stderr).toBe(0);
  expect(next.json.level).toBe('full');
});

test('a disk restored with a fresh checkpoint: the repository expects that checkpoint of it until its next backup; the original disk is judged by its own points', { timeout: 90000 }, () => {
  const s = newScenario();
  write(s.top, 0x51, 0, 128 * 1024);
  const repo = path.join(s.dir, 'repo');
  const full = strata(s.dir, ['backup', s.top, '--repo', repo, '--json']);
  expect(full.code, full.stderr).toBe(0);
  write(s.top, 0x52, 256 * 1024, 64 * 1024);
  const inc = strata(s.dir, ['backup', s.top, '--repo', repo, '--json']);
  expect(inc.code, inc.stderr).toBe(0);

  // Restored from the older point, with its checkpoint: the restored disk's next backup is an inc of full-1.
  const restored = path.join(s.dir, 'restored.qcow2');
  const r = strata(s.dir, ['restore', '--repo', repo, full.json.id, '--to', restored, '--checkpoint', '--json']);
  expect(r.code, r.stderr).toBe(0);
  expect(expected(strata(s.dir, ['repair', restored, '--json'])), 'it holds the checkpoint: nothing to say').toEqual([]);
  expect(expected(strata(s.dir, ['repair', s.top, '--json'])), 'the original still holds its latest').toEqual([]);

  // Its bitmap removed outside Strata: the finding names the restored disk and the point it came from.
  qemuImg('bitmap', '--remove', restored, full.json.checkpoint);
  const gone = strata(s.dir, ['repair', restored, '--json']);
  expect(gone.code, gone.stderr).toBe(0);
  const [g] = expected(gone);
  expect(g.layers).toEqual([restored]);
  expect(g.bitmaps).toEqual([full.json.checkpoint]);
  expect(g.message).toMatch(new RegExp(`expects checkpoint '${full.json.checkpoint}' \\(it was restored from point ${full.json.id} with that checkpoint\\), but the chain no longer has`));
  expect(expected(strata(s.dir, ['repair', s.top, '--json'])), 'the original disk is not the restored one').toEqual([]);
  const next = strata(s.dir, ['backup', restored, '--repo', repo, '--json']);
  expect(next.code, next.stderr).toBe(0);
  expect(next.json.level).toBe('full');
  expect(expected(strata(s.dir, ['repair', restored, '--json'])), 'its own full gives it a checkpoint again').toEqual([]);

  // The original's latest checkpoint removed: its finding is about its own point inc-2, not the restored disk's full.
  qemuImg('bitmap', '--remove', s.top, inc.json.checkpoint);
  const [o] = expected(strata(s.dir, ['repair', s.top, '--json']));
  expect(o.bitmaps).toEqual([inc.json.checkpoint]);
  expect(o.message).toContain(`of its latest point ${inc.json.id}`);
});
