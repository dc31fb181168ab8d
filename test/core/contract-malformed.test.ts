// Every channel, sent malformed arguments through dispatch() of a real service: each answer is
// E_BAD_INPUT naming the field (or, for a channel whose argument may be left out, a normal answer),
// never E_INTERNAL. Plus type-level checks that the contract's types are what the renderer expects.
// Runs on vitest: npx vitest run test/core/contract-malformed.test.ts
import { afterAll, beforeAll, expect, expectTypeOf, test } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHANNELS, type ArgOf, type Channel, type ResultOf, type PlanPreview, type PlanInfo, type ChainReport, type ContentSource, type JobVerbName, type Reply, type BitmapPlanInfo } from '../../electron/core/contract.ts';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';

const NOWHERE = '/nonexistent-strata-dir/x.qcow2';

/** Valid-looking arguments (nothing behind them exists), the starting point of every mutation. */
const SAMPLES: { [C in Channel]: ArgOf<C>[] } = {
  'app:info': [undefined],
  'workspace:list': [undefined],
  'workspace:add': [{ path: NOWHERE }],
  'workspace:remove': [{ path: NOWHERE }],
  'chain:inspect': [{ path: NOWHERE }],
  'contents:density': [
    { source: { kind: 'allocation', layer: NOWHERE }, start: 0, end: 1024, buckets: 8 },
    { source: { kind: 'since', image: NOWHERE, checkpoint: 'cp' }, start: 0, end: 1024, buckets: 8 },
  ],
  'contents:extents': [
    { source: { kind: 'bitmap', layer: NOWHERE, name: 'b' }, start: 0, end: 1024, limit: 10 },
    { source: { kind: 'live-bitmap', connection: 'nope', node: 'n', name: 'b' }, start: 0, end: 1024, limit: 10 },
  ],
  'history:scans': [{ image: NOWHERE, limit: 5 }],
  'demo:create': [undefined],
  'dialog:open-image': [undefined],
  'connection:list': [undefined],
  'connection:add-socket': [{ path: '/nonexistent-strata-dir/vm.sock' }],
  'connection:scan-folder': [{ path: '/nonexistent-strata-dir' }],
  'connection:open-image': [{ image: NOWHERE, readOnly: true }],
  'connection:restart': [{ id: 'nope' }],
  'connection:close': [{ id: 'nope' }],
  'connection:graph': [{ id: 'nope' }],
  'connection:traffic': [{ id: 'nope', limit: 5 }],
  'job:list': [{ connection: 'nope' }],
  'job:start': [
    { connection: 'nope', spec: { type: 'block-stream', device: 'n', speed: 1 } },
    { connection: 'nope', spec: { type: 'block-commit', device: 'n', topNode: 't', baseNode: 'b', speed: 1 } },
  ],
  'job:verb': [
    { connection: 'nope', id: 'j', verb: 'cancel' },
    { connection: 'nope', id: 'j', verb: 'set-speed', speed: 0 },
  ],
  'history:jobs': [{ limit: 5 }],
  'history:operations': [{ limit: 5 }],
  'bitmap:plan': [
    { target: { kind: 'connection', connection: 'nope', node: 'n' }, op: { op: 'add', name: 'b', granularity: 65536, persistent: true, disabled: false } },
    { target: { kind: 'connection', connection: 'nope', node: 'n' }, op: { op: 'merge', target: 'b', sources: [{ where: 'n', name: 'a' }] } },
    { target: { kind: 'image', image: '/nope/top.qcow2' }, op: { op: 'clear', name: 'b' }, chain: '/nope/top.qcow2' },
  ],
  'bitmap:apply': [{ target: { kind: 'connection', connection: 'nope', node: 'n' }, op: { op: 'remove', name: 'b' } }],
  'plan:preview': [{ kind: 'commit-with-bitmaps', params: { connection: 'nope', device: 'n', topNode: 't', baseNode: 'b', scheme: 'seed', speed: 1 } }],
  'plan:start': [{ kind: 'commit-with-bitmaps', params: { connection: 'nope' } }],
  'history:plans': [{ limit: 5 }],
  'history:activity': [{ limit: 5 }],
  'repair:plan': [{ image: NOWHERE }, { image: NOWHERE, backing: NOWHERE }],
  'repair:apply': [{ image: NOWHERE }],
  'chain-op:plan': [
    { op: 'snapshot', image: NOWHERE, newTop: NOWHERE, checkpoint: 'c' },
    { op: 'stream', image: NOWHERE, base: NOWHERE },
    { op: 'snapshot', connection: 'nope', node: 'disk0', newTop: NOWHERE, checkpoint: 'c' },
    { op: 'stream', connection: 'nope', node: 'disk0', base: NOWHERE },
  ],
  'chain-op:apply': [
    { op: 'snapshot', image: NOWHERE, newTop: NOWHERE, checkpoint: 'c' },
    { op: 'stream', image: NOWHERE, base: NOWHERE },
    { op: 'snapshot', connection: 'nope', node: 'disk0', newTop: NOWHERE, checkpoint: 'c' },
    { op: 'stream', connection: 'nope', node: 'disk0', base: NOWHERE },
  ],
  'repair:check-backing': [{ image: NOWHERE, backing: NOWHERE }],
  'repair:rebase': [{ image: NOWHERE, backing: NOWHERE, confirm: true }],
  'backup:list': [{ repo: '/nonexistent-strata-dir/repo' }],
  'backup:take': [{ image: NOWHERE, repo: '/nonexistent-strata-dir/repo' }, { image: NOWHERE, repo: '/nonexistent-strata-dir/repo', level: 'inc', dryRun: true, speed: 1 << 20 }],
  'backup:cancel': [{ repo: '/nonexistent-strata-dir/repo' }],
  'backup:restore': [{ repo: '/nonexistent-strata-dir/repo', id: 'full-1', to: '/nonexistent-strata-dir/out.raw' }, { repo: '/nonexistent-strata-dir/repo', id: 'full-1', to: '/nonexistent-strata-dir/out.raw', format: 'raw' }, { repo: '/nonexistent-strata-dir/repo', id: 'full-1', to: '/nonexistent-strata-dir/out.qcow2', format: 'qcow2', checkpoint: true }],
  'backup:verify': [{ repo: '/nonexistent-strata-dir/repo' }, { repo: '/nonexistent-strata-dir/repo', id: 'full-1' }],
  'backup:checkpoints': [{ image: NOWHERE }],
  'backup:prune-plan': [{ repo: '/nonexistent-strata-dir/repo', keepLast: 2, keepDaily: 1, keepWeekly: 0 }],
  'backup:prune': [{ repo: '/nonexistent-strata-dir/repo', keepLast: 2, keepDaily: 0, keepWeekly: 1, remove: ['inc-2'] }],
};

/** Channels whose argument may be left out: null, undefined and {} get a normal answer. */
const OPTIONAL_ARG = new Set<Channel>(['app:info', 'workspace:list', 'demo:create', 'dialog:open-image', 'connection:list', 'job:list', 'history:scans', 'history:jobs', 'history:operations', 'history:plans', 'history:activity']);
/** Fields that may be left out (by name). */
const OPTIONAL_FIELD = new Set(['limit', 'backing', 'image@history:scans', 'connection@job:list', 'device', 'topNode', 'baseNode', 'speed', 'granularity', 'persistent', 'disabled', 'scheme', 'readOnly', 'where', 'level', 'dryRun', 'format', 'id@backup:verify', 'chain', 'checkpoint@chain-op:plan', 'checkpoint@chain-op:apply', 'checkpoint@backup:restore', 'base@chain-op:plan', 'base@chain-op:apply']);
/** Fields that hold an absolute path (a relative one is refused). */
const PATH_FIELD = new Set(['path', 'image', 'layer', 'backing', 'repo', 'to', 'chain', 'newTop', 'base']);
/** Fields that select a variant (any other string is refused). */
const TAG_FIELD = new Set(['kind', 'op', 'type', 'verb', 'scheme', 'level', 'format']);
/** Fields that accept null. */
const NULLABLE_FIELD = new Set(['where']);

type Leaf = { at: (string | number)[]; value: unknown };
function leaves(v: unknown, at: (string | number)[] = []): Leaf[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => leaves(x, [...at, i]));
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => leaves(x, [...at, k]));
  return at.length ? [{ at, value: v }] : [];
}
function setAt(root: unknown, at: (string | number)[], value: unknown, remove = false): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let o = copy;
  for (const k of at.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  if (remove) delete o[at.at(-1)!];
  else o[at.at(-1)!] = value;
  return copy;
}
const lastKey = (at: (string | number)[]) => String([...at].reverse().find((k) => typeof k === 'string'));

const LONG = 'x'.repeat(100_000);
const BAD_NUMBERS = [-1, 1e300, 2 ** 53, 0.5, null, 'twelve', [1], {}];
const BAD_BOOLEANS = ['yes', 1, null, []];

interface Case {
  channel: Channel;
  what: string;
  arg: unknown;
  /** the field the refusal must name; null: a normal answer is acceptable too */
  names: string | string[] | null;
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const channel of CHANNELS) {
    for (const sample of SAMPLES[channel]) {
      const top = sample && typeof sample === 'object' ? Object.keys(sample) : [];
      const whole: [string, unknown][] = [['null', null], ['undefined', undefined], ['{}', {}], ['a number', 42], ['a string', 'str'], ['an array', [sample]]];
      if (channel === 'demo:create') whole.splice(1); // builds the demo images: once is enough
      for (const [what, arg] of whole) {
        const optional = OPTIONAL_ARG.has(channel) && (arg === null || arg === undefined || what === '{}' || !top.length);
        out.push({ channel, what: `argument ${what}`, arg, names: optional ? null : top });
      }
      for (const leaf of leaves(sample)) {
        const key = lastKey(leaf.at);
        const label = leaf.at.join('.');
        const optional = OPTIONAL_FIELD.has(key) || OPTIONAL_FIELD.has(`${key}@${channel}`);
        const push = (what: string, arg: unknown, valid = false) => out.push({ channel, what: `${label} ${what}`, arg, names: valid ? null : key });
        push('missing', setAt(sample, leaf.at, undefined, true), optional);
        if (typeof leaf.value === 'string') {
          for (const [what, bad] of [['a number', 7], ['an array', ['a']], ['an object', {}], ['null', null], ['empty', '']] as const)
            push(`as ${what}`, setAt(sample, leaf.at, bad), bad === null && NULLABLE_FIELD.has(key));
          push('100 000 characters', setAt(sample, leaf.at, LONG));
          push('with a NUL byte', setAt(sample, leaf.at, `/a\0b`));
          push('relative', setAt(sample, leaf.at, 'relative/x.qcow2'), !PATH_FIELD.has(key) && !TAG_FIELD.has(key));
        } else if (typeof leaf.value === 'number') {
          for (const bad of BAD_NUMBERS) push(`as ${JSON.stringify(bad)}`, setAt(sample, leaf.at, bad));
        } else if (typeof leaf.value === 'boolean') {
          for (const bad of BAD_BOOLEANS) push(`as ${JSON.stringify(bad)}`, setAt(sample, leaf.at, bad));
        }
      }
    }
  }
  return out;
}

let dir: string;
let service: Service;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-malformed-'));
  service = createService({ dataDir: dir, mode: 'browser' });
});
afterAll(async () => {
  await service?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every channel answers malformed arguments with E_BAD_INPUT naming the field, never E_INTERNAL', { timeout: 170_000 }, async () => {
  const all = cases();
  expect(new Set(all.map((c) => c.channel))).toEqual(new Set(CHANNELS));
  const wrong: string[] = [];
  for (const c of all) {
    // The WebSocket carries JSON: what a client can send is what survives a JSON round trip
    // (NaN and Infinity arrive as null), except undefined, which stands for "no argument".
    const arg = c.arg === undefined ? undefined : JSON.parse(JSON.stringify(c.arg));
    const r: Reply<unknown> = await dispatch(service, c.channel, arg);
    const tag = `${c.channel} (${c.what})`;
    if (r.ok) {
      if (c.names !== null) wrong.push(`${tag}: accepted`);
      continue;
    }
    if (r.error.code === 'E_INTERNAL') {
      wrong.push(`${tag}: E_INTERNAL ${r.error.message}`);
      continue;
    }
    if (c.names === null) continue; // a valid argument may fail for what it points at (no such file)
    if (r.error.code !== 'E_BAD_INPUT') wrong.push(`${tag}: ${r.error.code} ${r.error.message}`);
    else if (![c.names].flat().some((n) => r.error.message.includes(n))) wrong.push(`${tag}: the message does not name ${[c.names].flat().join(' or ')}: ${r.error.message}`);
  }
  expect(wrong).toEqual([]);
});

test('a bitmap name over 1023 bytes of UTF-8 is refused naming the field, though it has fewer characters', async () => {
  const target = { kind: 'connection', connection: 'nope', node: 'n' };
  const wide = 'é'.repeat(600); // 600 characters, 1200 bytes
  for (const [channel, op, field] of [
    ['bitmap:plan', { op: 'add', name: wide }, 'op.name'],
    ['bitmap:apply', { op: 'remove', name: wide }, 'op.name'],
    ['bitmap:plan', { op: 'merge', target: 'b', sources: [{ where: null, name: wide }] }, 'op.sources[0].name'],
  ] as const) {
    const r = await dispatch(service, channel, { target, op });
    expect(r).toEqual({ ok: false, error: { code: 'E_BAD_INPUT', message: `${channel}: ${field}: expected a bitmap name of at most 1023 bytes in UTF-8 (this one has 1200)` } });
  }
  // exactly 1023 bytes passes the schema (and is refused later, for the connection that does not exist)
  const r = await dispatch(service, 'bitmap:plan', { target, op: { op: 'add', name: 'é'.repeat(511) + 'x' } });
  expect(r.ok).toBe(false);
  expect(r.ok ? '' : r.error.message).toMatch(/nope/);
  expect(r.ok ? '' : r.error.message).not.toMatch(/op\.name/);
});

test('the argument of a channel that takes a path is normalized before the handler sees it', async () => {
  const r = await dispatch(service, 'chain:inspect', { path: '/nonexistent-strata-dir/./a/../x.qcow2' });
  expect(r).toEqual({ ok: false, error: { code: 'E_NOT_FOUND', message: `${NOWHERE}: no such file` } });
});

test('contract types the renderer relies on', () => {
  expectTypeOf<ArgOf<'chain:inspect'>>().toEqualTypeOf<{ path: string }>();
  expectTypeOf<ResultOf<'chain:inspect'>>().toEqualTypeOf<ChainReport>();
  expectTypeOf<ArgOf<'workspace:add'>>().toEqualTypeOf<{ path: string }>();
  expectTypeOf<ResultOf<'plan:preview'>>().toEqualTypeOf<PlanPreview>();
  expectTypeOf<ResultOf<'plan:start'>>().toEqualTypeOf<PlanInfo>();
  expectTypeOf<ResultOf<'history:plans'>>().toEqualTypeOf<PlanInfo[]>();
  expectTypeOf<ArgOf<'plan:preview'>>().toEqualTypeOf<{
    kind: 'commit-with-bitmaps';
    params: { connection: string; device?: string; topNode?: string; baseNode?: string; scheme?: 'seed' | 'libvirt'; speed?: number };
  }>();
  expectTypeOf<ArgOf<'connection:open-image'>>().toEqualTypeOf<{ image: string; readOnly: boolean }>();
  expectTypeOf<ArgOf<'job:verb'>>().toEqualTypeOf<{ connection: string; id: string; verb: JobVerbName; speed?: number }>();
  expectTypeOf<JobVerbName>().toEqualTypeOf<'cancel' | 'pause' | 'resume' | 'set-speed' | 'complete' | 'finalize' | 'dismiss'>();
  expectTypeOf<ArgOf<'history:jobs'>>().toEqualTypeOf<{ limit?: number }>();
  expectTypeOf<ArgOf<'history:scans'>>().toEqualTypeOf<{ image?: string; limit?: number }>();
  expectTypeOf<ArgOf<'job:list'>>().toEqualTypeOf<{ connection?: string }>();
  expectTypeOf<ArgOf<'app:info'>>().toEqualTypeOf<void>();
  expectTypeOf<ArgOf<'contents:density'>>().toEqualTypeOf<{ source: ContentSource; start: number; end: number; buckets: number }>();
  expectTypeOf<ContentSource>().toEqualTypeOf<
    | { kind: 'bitmap'; layer: string; name: string }
    | { kind: 'allocation'; layer: string }
    | { kind: 'since'; image: string; checkpoint: string }
    | { kind: 'live-bitmap'; connection: string; node: string; name: string }
  >();
  expectTypeOf<ResultOf<'bitmap:apply'>>().toEqualTypeOf<BitmapPlanInfo & { operation: number }>();
  expectTypeOf<ResultOf<'workspace:remove'>>().toEqualTypeOf<void>();
});
