// The backups store's chain-view markers (backup:checkpoints), in plain Node with the core's calls
// Typechecked with the renderer (renderer/tsconfig.json: bundler resolution), not with the core.
// answered by a stand-in catalog: after a prune, and on backup:changed, every image shown reads its
// markers again, so a removed point's marker goes from each of them, not only the pruning image's.
import { test, vi } from 'vitest';
import assert from 'node:assert/strict';
import { createPinia, setActivePinia } from 'pinia';

const catalog = [
  { checkpoint: 'cp-full-1', repo: '/r', id: 'full-1', level: 'full', createdAt: '2026-01-01T00:00:00Z' },
  { checkpoint: 'cp-inc-2', repo: '/r', id: 'inc-2', level: 'inc', createdAt: '2026-01-02T00:00:00Z' },
  { checkpoint: 'cp-inc-3', repo: '/r', id: 'inc-3', level: 'inc', createdAt: '2026-01-03T00:00:00Z' },
];
const pruned = new Set<string>();
const plan = { applied: false, keep: [{ id: 'full-1', why: ['needed to restore inc-3'] }, { id: 'inc-3', why: ['keep-last'] }], remove: [{ id: 'inc-2', file: '/r/inc-2.qcow2', bytes: 1, mergedInto: 'inc-3' }], merge: [], orphans: [], freedBytes: 1, recovered: [], restorable: [] };
vi.mock('../../renderer/src/api/client', () => ({
  call: vi.fn(async (channel: string, arg: any) => {
    if (channel === 'backup:checkpoints') return catalog.filter((c) => !pruned.has(c.id)).map((c) => ({ ...c, image: arg.image }));
    if (channel === 'backup:list') return catalog.filter((c) => !pruned.has(c.id)).map((c) => ({ id: c.id }));
    if (channel === 'backup:prune-plan') return plan;
    if (channel === 'backup:prune') {
      for (const id of arg.remove) pruned.add(id);
      return { ...plan, applied: true };
    }
    throw new Error(`unexpected call ${channel}`);
  }),
}));
vi.mock('../../renderer/src/stores/chains', () => ({ useChainsStore: () => ({ inspect: async () => {} }) }));

const { useBackupsStore } = await import('../../renderer/src/stores/backups.ts');
/** A new store whose image /vm/top.qcow2 backs up to /r, nothing pruned yet. */
function freshStore() {
  pruned.clear();
  setActivePinia(createPinia());
  const s = useBackupsStore();
  s.repos['/vm/top.qcow2'] = '/r';
  return s;
}
const marked = (s: ReturnType<typeof useBackupsStore>, image: string) => (s.checkpointBackups[image] ?? []).map((b) => b.id);

test('a prune in one image’s Backups tab refreshes the markers of every image shown', async () => {
  const s = freshStore();
  await s.loadCheckpoints('/vm/top.qcow2');
  await s.loadCheckpoints('/vm/other-view.qcow2');
  assert.deepEqual(marked(s, '/vm/other-view.qcow2'), ['full-1', 'inc-2', 'inc-3']);
  const r = { keepLast: 2, keepDaily: 0, keepWeekly: 0 };
  await s.planPrune('/vm/top.qcow2', r);
  await s.prune('/vm/top.qcow2', r);
  await vi.waitFor(() => assert.deepEqual(marked(s, '/vm/other-view.qcow2'), ['full-1', 'inc-3']));
  assert.deepEqual(marked(s, '/vm/top.qcow2'), ['full-1', 'inc-3']);
});

test('backup:changed (a prune elsewhere, or one a crash left finished) reads the markers and the repository’s points again', async () => {
  const s = freshStore();
  await s.list('/vm/top.qcow2');
  await s.loadCheckpoints('/vm/top.qcow2');
  assert.deepEqual(marked(s, '/vm/top.qcow2'), ['full-1', 'inc-2', 'inc-3']);
  pruned.add('inc-2');
  await s.onRepositoryChanged('/r');
  assert.deepEqual(marked(s, '/vm/top.qcow2'), ['full-1', 'inc-3']);
  assert.deepEqual(s.points['/vm/top.qcow2'].map((p) => p.id), ['full-1', 'inc-3']);
});
