// Job figures from progress over time, with made-up clocks (no timing in the test): a rate-limited
// job that moves in bursts shows its average rate, not the bursts; no rate before the window spans a
// second; no time left until the rate is steady; nothing while paused.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { ProgressWindow } from '../../electron/core/jobs/progress.ts';

const MiB = 1024 * 1024;

test('a 4 MiB/s job that moves a 1 MiB chunk every 250 ms reads 4 MiB/s, not the bursts', () => {
  const w = new ProgressWindow();
  const seen: (number | null)[] = [];
  // Polled every 100 ms; the progress jumps by 1 MiB at each 250 ms boundary.
  for (let t = 0; t <= 10000; t += 100) {
    w.push(t, Math.floor(t / 250) * MiB);
    seen.push(w.figures(100 * MiB, true).rate);
  }
  assert.equal(seen[5], null, 'no rate before the window spans a second');
  const late = seen.slice(40).filter((r): r is number => r !== null);
  assert.ok(late.length > 50);
  for (const r of late) assert.ok(Math.abs(r - 4 * MiB) / (4 * MiB) < 0.15, `rate ${r / MiB} MiB/s stays near 4`);
  const f = w.figures(100 * MiB, true);
  assert.ok(f.etaSeconds !== null, 'a steady rate gives a time left');
  assert.ok(Math.abs(f.etaSeconds! - 15) < 2.5, `about 15 s left, got ${f.etaSeconds}`);
});

test('a first big jump (a job that starts with a burst) gives no rate until a second of movement', () => {
  const w = new ProgressWindow();
  w.push(0, 0);
  w.push(100, 700 * MiB);
  assert.deepEqual(w.figures(1000 * MiB, true), { rate: null, etaSeconds: null });
});

test('a job that slows down tenfold gives its rate but no time left until the rate settles', () => {
  const w = new ProgressWindow();
  let done = 0;
  for (let t = 0; t <= 3000; t += 100) {
    done += t <= 2000 ? 100 * MiB : 10 * MiB;
    w.push(t, done);
  }
  const f = w.figures(1e12, true);
  assert.ok(f.rate !== null && f.rate < 900 * MiB, `the window sees the slow-down (${f.rate! / MiB} MiB/s)`);
  assert.equal(f.etaSeconds, null, 'not steady: no time left');
});

test('paused or finished: no rate, no time left; afresh after a reset', () => {
  const w = new ProgressWindow();
  for (let t = 0; t <= 3000; t += 100) w.push(t, t * 1000);
  assert.ok(w.figures(1e9, true).rate !== null);
  assert.deepEqual(w.figures(1e9, false), { rate: null, etaSeconds: null });
  w.reset();
  w.push(4000, 3_000_000);
  assert.equal(w.figures(1e9, true).rate, null);
});
