// Never a false clean: every kind of finding, built outside Strata, and for each one no checkpoint
// Strata calls ok misses a block that changed since it (raw copies at each checkpoint), before the
// repair, after it (where it can be repaired) and after more writes.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { test, expect, vi } from 'vitest';
import type { FindingCode } from '../../electron/core/repair/findings.ts';
import { imageLockState } from '../../electron/core/daemon/image-lock.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { History } from '../../electron/core/store/history.ts';
import { inspect } from '../../electron/core/inspect.ts';
import { qemuImg } from '../helpers/qemu.ts';
import {
  G, newScenario, addBitmap, write, checkpoint, overlay, strata, assertTruth, seedUntracked, brokenGap, brokenInUseCrashed, brokenDisabledNewest,
  brokenDisabledBase, brokenStale, brokenUncovered, checkpointThenOverlay, type Scenario,
} from './scenarios.ts';

vi.setConfig({ testTimeout: 300_000 });

/** What the app does at each scan: the history the history findings compare with. */
function recordScan(s: Scenario): void {
  const db = openDb(path.join(s.dir, 'home', 'strata.db'));
  try {
    new History(db).recordScan(inspect(s.top));
  } finally {
    db.close();
  }
}

const ALL: FindingCode[] = ['untracked-overlay', 'gap', 'uncovered-allocation', 'in-use-live', 'in-use-crashed', 'disabled-newest', 'stale-bitmaps', 'backing-missing', 'layer-disappeared', 'backing-written-after-overlay'];

const BUILDERS: { name: string; build: () => Scenario | Promise<Scenario>; live?: boolean }[] = [
  { name: 'untracked overlay', build: seedUntracked },
  { name: 'gap', build: brokenGap },
  { name: 'uncovered allocation', build: brokenUncovered },
  { name: 'in-use after a crash', build: brokenInUseCrashed },
  { name: 'disabled newest', build: brokenDisabledNewest },
  { name: 'disabled newest in a base', build: brokenDisabledBase },
  { name: 'stale', build: brokenStale },
  {
    name: 'backing missing',
    build: () => {
      const s = seedUntracked();
      const moved = path.join(s.dir, 'elsewhere.qcow2');
      fs.renameSync(path.join(s.dir, 'base.qcow2'), moved);
      s.layers = [s.top, moved];
      return s;
    },
  },
  {
    name: 'middle layer committed outside Strata',
    build: () => {
      const s = newScenario();
      write(s.top, 0x41, 0, G);
      addBitmap(s.top, 'c1');
      checkpoint(s, 'c1');
      const mid = overlay(s, 'mid.qcow2');
      addBitmap(mid, 'c1');
      addBitmap(mid, 'c2');
      write(mid, 0x42, 2 * G, G);
      const top = overlay(s, 'top.qcow2');
      addBitmap(top, 'c1');
      addBitmap(top, 'c2');
      write(top, 0x43, 4 * G, G);
      recordScan(s);
      // mid committed into base (whose c1 records it), then the top pointed at base: mid leaves the chain
      qemuImg('commit', '-q', '-d', mid);
      qemuImg('rebase', '-u', '-b', 'base.qcow2', '-F', 'qcow2', top);
      return s;
    },
  },
  {
    name: 'backing written under its overlay',
    build: () => {
      const s = checkpointThenOverlay2();
      recordScan(s);
      write(path.join(s.dir, 'base.qcow2'), 0x66, 6 * G, G); // under the overlay, with -U-less qemu-io
      return s;
    },
  },
  { name: 'in-use held by a live process', build: () => newScenario(), live: true },
];

function checkpointThenOverlay2(): Scenario {
  const s = checkpointThenOverlay();
  addBitmap(s.top, 'c1');
  write(s.top, 0x42, 2 * G, G);
  return s;
}

test('every finding kind: no checkpoint is ever reported ok with a changed block missing', async () => {
  const seen = new Set<string>();
  for (const b of BUILDERS) {
    const s = await b.build();
    let holder: ReturnType<typeof spawn> | null = null;
    if (b.live) {
      addBitmap(s.top, 'c1');
      checkpoint(s, 'c1');
      holder = spawn('qemu-io', ['-c', `write -P 0x33 ${3 * G} ${G}`, '-c', 'sleep 60000', s.top], { stdio: 'ignore' });
      for (let i = 0; i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if ((await imageLockState(s.top)) === 'locked' && qemuImg('info', '-U', '--output=json', s.top).includes('in-use')) break;
      }
    }
    try {
      const dry = strata(s.dir, ['repair', s.top, '--json']);
      expect(dry.json, `${b.name}: ${dry.stderr}`).not.toBeNull();
      for (const f of dry.json.findings) seen.add(f.code);
      if (!b.name.startsWith('backing missing')) assertTruth(s);
      if (holder) continue;
      const wet = strata(s.dir, ['repair', s.top, '--yes', '--json']);
      // whatever was or was not repairable: still no false clean
      if (!b.name.startsWith('backing missing')) assertTruth(s);
      if (wet.code === 0) {
        write(s.top, 0x5a, 7 * G, G);
        assertTruth(s);
      }
    } finally {
      if (holder) {
        holder.kill('SIGKILL');
        await new Promise((r) => holder!.once('exit', r));
      }
    }
  }
  expect([...seen].sort()).toEqual([...ALL].sort());
});

test('every finding kind, then a stream of the whole chain (refused or done): still no checkpoint ok with a changed block missing', async () => {
  const outcomes: string[] = [];
  for (const b of BUILDERS) {
    if (b.live || b.name.startsWith('backing missing')) continue;
    const s = await b.build();
    if (s.layers.length < 2) continue;
    const r = strata(s.dir, ['stream', s.top, '--yes', '--json']);
    outcomes.push(`${b.name}: ${r.code === 0 ? 'streamed' : r.code === 2 ? 'refused' : `exit ${r.code}`}`);
    expect([0, 2], `${b.name}: ${r.stderr}`).toContain(r.code);
    if (r.code === 0) s.layers = [s.top];
    assertTruth(s);
    write(s.top, 0x5b, 7 * G, G);
    assertTruth(s);
  }
  // The gap is the case a stream would hide: it must be among the refused.
  expect(outcomes).toContain('gap: refused');
  expect(outcomes.filter((o) => o.endsWith('streamed')).length).toBeGreaterThan(0);
});
