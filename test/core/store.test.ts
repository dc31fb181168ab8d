// History on a real SQLite file: migrations, workspace, scans and what changed between them.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { openDb, schemaVersion } from '../../electron/core/store/db.ts';
import { History } from '../../electron/core/store/history.ts';
import { MIGRATIONS } from '../../electron/core/store/migrations.ts';
import { inspect, inspectPartial } from '../../electron/core/inspect.ts';
import { tempDir, qemuImg, qemuIo } from '../helpers/qemu.ts';
import { buildSeed } from './seed-chain.ts';

test('migrations bring a new file to the latest schema and reopen idempotently', (t) => {
  const file = path.join(tempDir(t), 'sub', 'strata.db');
  const db = openDb(file);
  assert.equal(schemaVersion(db), MIGRATIONS[MIGRATIONS.length - 1].version);
  db.close();
  const again = openDb(file);
  assert.equal(schemaVersion(again), MIGRATIONS[MIGRATIONS.length - 1].version);
  again.close();
});

test('a database from a newer Strata is refused, not downgraded', (t) => {
  const file = path.join(tempDir(t), 'strata.db');
  const db = openDb(file);
  db.pragma('user_version = 999');
  db.close();
  assert.throws(() => openDb(file), (e: any) => e.code === 'E_UNSUPPORTED' && e.message.includes(file));
});

test('workspace survives reopening; scans record external edits', (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const file = path.join(dir, 'strata.db');
  let h = new History(openDb(file));
  h.addImage(top);
  h.addImage(top); // idempotent
  const first = h.recordScan(inspect(top));
  assert.deepEqual(first.changes, []);
  assert.equal(first.first, true, 'a first scan says so, not "no change"');
  // Someone edits the chain outside Strata: a new bitmap, a write, a disabled bitmap.
  qemuImg('bitmap', '--add', top, 'extra');
  qemuIo(top, ['write -P 1 0 64k']);
  qemuImg('bitmap', '--disable', top, 'bitmap3');
  const db2 = openDb(file);
  h = new History(db2);
  assert.deepEqual(h.listWorkspace().map((w) => w.path), [top]);
  const second = h.recordScan(inspect(top));
  assert.ok(second.changes.includes("bitmap 'extra' added in top.qcow2"), second.changes.join('\n'));
  assert.ok(second.changes.includes("bitmap 'bitmap3' in top.qcow2: auto → disabled"), second.changes.join('\n'));
  assert.ok(second.changes.some((c) => c.startsWith('layer top.qcow2: written (64 KiB more allocated, now ')), second.changes.join('\n'));
  // The same as typed codes with their facts (what repair reads).
  assert.equal(second.first, false);
  assert.deepEqual(
    second.drift.map((d) => d.code),
    ['allocation-changed', 'bitmap-flags-changed', 'bitmap-dirty-changed', 'bitmap-added'],
  );
  assert.deepEqual(second.drift.find((d) => d.code === 'bitmap-flags-changed'), { code: 'bitmap-flags-changed', layer: top, bitmap: 'bitmap3', from: ['auto'], to: [] });
  assert.deepEqual(h.scans(top)[0].drift, second.drift, 'stored and read back as codes');
  const scans = h.scans(top);
  assert.deepEqual(scans.map((s) => s.id), [second.id, first.id]);
  assert.equal(h.listWorkspace()[0].lastScanAt, second.scannedAt);
  assert.equal(h.removeImage(top), true);
  assert.deepEqual(h.listWorkspace(), []);
  db2.close();
});

test('the workspace list keeps the last scan: layer count and health survive a reopen; never ok with an unknown checkpoint', (t) => {
  const dir = tempDir(t);
  const { top, base } = buildSeed(dir);
  const file = path.join(dir, 'strata.db');
  let h = new History(openDb(file));
  h.addImage(top);
  assert.equal(h.listWorkspace()[0].lastScan, null, 'not scanned yet');
  h.recordScan(inspect(top));
  h = new History(openDb(file)); // an app restart
  assert.deepEqual(h.listWorkspace()[0].lastScan, { layerCount: 2, health: { state: 'ok', reasons: ['all 3 checkpoints known'] } });

  // An overlay made outside Strata: its checkpoints are unknown, and the entry says so and why.
  const over = path.join(dir, 'over.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', top, '-F', 'qcow2', over);
  h.addImage(over);
  h.recordScan(inspect(over));
  h = new History(openDb(file));
  const o = h.listWorkspace().find((w) => w.path === over)!;
  assert.equal(o.lastScan?.layerCount, 3);
  assert.equal(o.lastScan?.health?.state, 'unknown');
  assert.match(o.lastScan!.health!.reasons[0], /^3 of 3 checkpoints unknown \(bitmap1, bitmap2, bitmap3\): layer over\.qcow2 has no bitmap/);

  // A missing backing file is a problem, named.
  fs.renameSync(base, `${base}.moved`);
  h.recordScan(inspectPartial(top));
  const m = new History(openDb(file)).listWorkspace().find((w) => w.path === top)!;
  assert.equal(m.lastScan?.layerCount, 1);
  assert.equal(m.lastScan?.health?.state, 'problem');
  assert.ok(m.lastScan!.health!.reasons[0].startsWith(`backing file ${base} is missing`), m.lastScan!.health!.reasons[0]);
});
