// strata commit TOP [--scheme seed|libvirt] [--yes] [--json], as a script runs it: the plan without
// --yes changes no byte; with --yes the top is committed, its checkpoints carried, and the JSON says
// which image is active; bad input exits 2 naming the file.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir, run } from '../helpers/qemu.ts';
import { buildSeed, clusters } from '../core/seed-chain.ts';
import { sinceOf } from '../helpers/truth.ts';
import { strata } from './helpers.ts';

const sum = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const flags = (img: string) =>
  Object.fromEntries((JSON.parse(run('qemu-img', ['info', '--output=json', img]))['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));

test('strata commit: the plan changes nothing; --yes commits and carries the checkpoints; --json names the active image', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top, base } = buildSeed(dir);
  const before = [sum(top), sum(base)];

  const dry = await strata(home, 'commit', top, '--json');
  assert.equal(dry.code, 0, dry.err);
  const plan = JSON.parse(dry.out);
  assert.equal(plan.applied, false);
  assert.equal(plan.active, base);
  assert.deepEqual(plan.plan.effects.carried.map((c: any) => c.name), ['bitmap3']);
  assert.ok(plan.plan.steps.every((s: any) => s.commands.length > 0), 'every step shows its QMP');
  assert.deepEqual([sum(top), sum(base)], before, 'the plan wrote no byte of either image');

  const shown = await strata(home, 'commit', top);
  assert.equal(shown.code, 0, shown.err);
  assert.match(shown.out, /carried: bitmap3 \(created in the base, records afterwards\)/);
  assert.match(shown.out, /Nothing was changed\. Run again with --yes to apply\./);

  const r = await strata(home, 'commit', top, '--scheme', 'seed', '--yes', '--json');
  assert.equal(r.code, 0, r.err);
  const done = JSON.parse(r.out);
  assert.equal(done.applied, true);
  assert.equal(done.state, 'done');
  assert.equal(done.active, base);
  assert.deepEqual(flags(base), { bitmap1: [], bitmap2: ['auto'], bitmap3: ['auto'] });
  assert.equal(clusters(sinceOf(base, 'bitmap2').extents), '---1111-');
  // The plan is in the journal.
  const h = await strata(home, 'history', '--plans', '--json');
  assert.equal(h.code, 0, h.err);
  const plans = JSON.parse(h.out);
  assert.equal(plans.length, 1);
  assert.equal(plans[0].state, 'done');
  assert.deepEqual(plans[0].effects, done.plan.effects);
  // Each step's QMP, raw from the CLI daemon's traffic log: the commit job's start and QEMU's events.
  const job = plans[0].steps.find((s: any) => s.spec.kind === 'job');
  assert.equal(JSON.parse(job.qmp.find((l: any) => l.dir === 'out').line).execute, 'block-commit');
  assert.ok(job.qmp.some((l: any) => l.event === 'JOB_STATUS_CHANGE' && JSON.parse(l.line).data.status === 'ready'), JSON.stringify(job.qmp));
  const text = (await strata(home, 'history')).out;
  assert.match(text, /done +commit strata-top into/);
});

test('strata commit: bad input exits 2 with one line naming the file, and writes nothing', { timeout: 30000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top, base } = buildSeed(dir);
  const before = sum(base);
  const lone = await strata(home, 'commit', base, '--yes');
  assert.equal(lone.code, 2);
  assert.equal(lone.err, `strata: ${base}: has no backing file, there is nothing to commit into\n`);
  const scheme = await strata(home, 'commit', top, '--scheme', 'fast');
  assert.equal(scheme.code, 2);
  assert.match(scheme.err, /--scheme fast: expected seed or libvirt/);
  const deeper = await strata(home, 'commit', top, '--base', path.join(dir, 'elsewhere.qcow2'), '--yes');
  assert.equal(deeper.code, 2);
  assert.match(deeper.err, /--base .*elsewhere\.qcow2: not a layer of .*'s chain/);
  const missing = await strata(home, 'commit', path.join(dir, 'none.qcow2'));
  assert.equal(missing.code, 2);
  assert.match(missing.err, /none\.qcow2/);
  assert.equal(sum(base), before);
});
