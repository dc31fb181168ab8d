// A backing layer whose every bitmap for a checkpoint is disabled: what it took after the newest was
// disabled, while it was still the active layer, is in no bitmap. Before, the rules called such a
// checkpoint ok and "changes since" it missed those writes (a raw copy taken at the checkpoint shows it).
import { test, expect } from 'vitest';
import { G, checkpointedBase, write, addBitmap, checkpoint, overlay, assertTruth } from '../repair/scenarios.ts';
import { qemuImg } from '../helpers/qemu.ts';

test('a backing layer written after its only bitmap was disabled: unknown, never ok with writes missing', () => {
  const s = checkpointedBase(G);
  qemuImg('bitmap', '--disable', s.top, 'c1');
  write(s.top, 0x43, 2 * G, G); // recorded nowhere
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'c1');
  write(s.top, 0x44, 3 * G, G);
  const [r] = assertTruth(s);
  expect(r.name).toBe('c1');
  expect(r.state).toBe('unknown');
  // what the old answer would have been: 2 of the 3 changed clusters
  expect(r.differing).toBe(3 * G);
});

test('the seed scheme (the newest bitmap of the backing layer still recording) stays ok and exact', () => {
  const s = checkpointedBase(G);
  qemuImg('bitmap', '--disable', s.top, 'c1');
  addBitmap(s.top, 'c2');
  checkpoint(s, 'c2');
  write(s.top, 0x43, 2 * G, G);
  overlay(s, 'top.qcow2');
  addBitmap(s.top, 'c3');
  write(s.top, 0x44, 3 * G, G);
  expect(assertTruth(s).map((x) => [x.name, x.state, x.missed, x.marked])).toEqual([
    ['c1', 'ok', 0, 3 * G],
    ['c2', 'ok', 0, 2 * G],
  ]);
});
