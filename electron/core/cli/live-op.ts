// The live chain operations of the CLI: strata snapshot --socket PATH --node NODE NEW_TOP
// (repair/snapshot-live.ts) and strata stream --socket PATH --node NODE (repair/stream-live.ts) on a
// running QEMU's disk. Loaded on demand: they need sockets, the offline forms do not. Without --yes
// only queries are sent (and the NBD read of the top node's bitmaps, through a private export).
import fs from 'node:fs';
import path from 'node:path';
import type { Parsed } from './args.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { openDb } from '../store/db.ts';
import { QmpTrafficLog } from '../store/qmp-traffic.ts';
import { QmpClient } from '../qmp/client.ts';
import { stepCommands, type StepSpec } from '../plans/types.ts';
import type { Db } from '../store/db.ts';
import type { CheckpointView } from '../repair/plan.ts';
import type { LiveOpResult } from '../repair/live-op.ts';
import { snapshotLive, type LiveSnapshotResult } from '../repair/snapshot-live.ts';
import { streamLive, type LiveStreamResult } from '../repair/stream-live.ts';
import { StrataError } from '../errors.ts';

/** The socket and node of a live command, or a typed refusal; `extra` names the command's other live-only options. */
function liveTarget(a: Parsed, extra: string): { socket: string; node: string } {
  if (!a.options.get('socket')) throw new StrataError('E_BAD_INPUT', `--node${extra} need${extra ? '' : 's'} --socket PATH (the QMP socket of the running QEMU)`);
  const socket = path.resolve(a.options.get('socket')!);
  const node = a.options.get('node');
  if (!node) throw new StrataError('E_BAD_INPUT', `${socket}: --socket needs --node NODE (the disk's top node; see query-named-block-nodes)`, { file: socket });
  return { socket, node };
}

/** Opens the journal (and the traffic log, applied), connects, runs `fn`, writes, and fails unless the plan finished. */
async function withLive<P extends { refused: string | null }>(
  t: { socket: string; node: string },
  o: { apply: boolean; title: string; what: string; file: string },
  fn: (qmp: QmpClient, db: Db | null, runtimeDir: string) => Promise<LiveOpResult<P>>,
  write: (r: LiveOpResult<P>) => void,
): Promise<void> {
  const dataDir = defaultDataDir();
  const dbFile = path.join(dataDir, 'strata.db');
  const db = o.apply || fs.existsSync(dbFile) ? openDb(dbFile) : null;
  const traffic = o.apply && db ? new QmpTrafficLog(db).open(o.title, t.socket) : null;
  try {
    const qmp = await QmpClient.connect(t.socket, { connectTimeoutMs: 3000, onTraffic: traffic?.sink });
    let r: LiveOpResult<P>;
    try {
      r = await fn(qmp, db, path.join(dataDir, 'run'));
    } finally {
      await qmp.close();
    }
    write(r);
    if (r.plan?.refused) throw new StrataError('E_BAD_INPUT', r.plan.refused, { file: t.socket });
    if (r.outcome && r.outcome.state !== 'done') throw new StrataError('E_QMP_EXECUTE', `${o.file}: the ${o.what} did not finish (plan #${r.outcome.id} ${r.outcome.state}: ${r.outcome.resolution}); see strata history --plans`, { file: o.file });
  } finally {
    traffic?.close(`${o.title.split(' --')[0]} ended`);
    db?.close();
  }
}

type Steps = { label: string; spec: StepSpec }[];
const stepsJson = (steps: Steps) => steps.map((s) => ({ label: s.label, commands: s.spec.kind === 'tool' ? s.spec.commands : [], qmp: s.spec.kind === 'tool' ? [] : stepCommands(s.spec), undo: 'undo' in s.spec ? s.spec.undo : null }));

function writeSteps(out: Out, steps: Steps, r: LiveOpResult<unknown>, refused: string | null, done: string): void {
  out.write('\nSteps and the exact commands:\n');
  steps.forEach((s, i) => {
    out.write(`${i + 1}. ${s.label}\n`);
    if (s.spec.kind === 'tool') for (const c of s.spec.commands) out.write(`     ${c.join(' ')}\n`);
    else for (const c of stepCommands(s.spec)) out.write(`     qmp ${JSON.stringify(c)}\n`);
  });
  if (r.outcome) out.write(`\nPlan #${r.outcome.id}: ${r.outcome.state}${r.outcome.state === 'done' ? `; ${done}` : ` (${r.outcome.resolution})`}\n`);
  else if (!refused) out.write('\nNothing was changed. Run again with --yes to apply.\n');
}

function writeViews(out: Out, before: CheckpointView[], after: CheckpointView[]): void {
  for (const v of after) {
    const was = before.find((b) => b.name === v.name);
    out.write(`  ${v.name}: ${was?.state ?? 'new'}${was?.drawing ? ` ${was.drawing}` : ''} -> ${v.state}${v.drawing ? ` ${v.drawing}` : ''}\n`);
  }
}

/** strata snapshot --socket PATH --node NODE NEW_TOP: the live snapshot (repair/snapshot-live.ts). */
export async function cmdSnapshotLive(a: Parsed, out: Out): Promise<void> {
  const t = liveTarget(a, ' and --new-node');
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'with --socket, name only NEW_TOP (the disk is named by --node); see strata snapshot --help');
  const newTop = path.resolve(a.positionals[0]);
  const newNode = a.options.get('new-node');
  if (newNode !== undefined && !/^[A-Za-z][A-Za-z0-9_.-]{0,31}$/.test(newNode)) throw new StrataError('E_BAD_INPUT', `--new-node ${newNode}: a node name starts with a letter and has at most 32 letters, digits, '-', '_' or '.'`);
  const apply = a.flags.has('yes');
  await withLive(
    t,
    { apply, title: `strata snapshot --socket ${t.socket} --node ${t.node} ${newTop}`, what: 'live snapshot', file: newTop },
    (qmp, db, runtimeDir) => snapshotLive(qmp, t, newTop, { apply, db, runtimeDir, checkpoint: a.options.get('checkpoint') ?? null, newNode }),
    (r) => writeSnapshot(out, r, a.flags.has('json')),
  );
}

function writeSnapshot(out: Out, r: LiveSnapshotResult, json: boolean): void {
  const p = r.plan;
  const applied = r.outcome?.state === 'done';
  if (json) {
    const shape = p && {
      image: p.image,
      node: p.node,
      newTop: p.newTop,
      newNode: p.newNode,
      active: applied ? p.newTop : p.image,
      activeNode: applied ? p.newNode : p.node,
      bitmaps: p.bitmaps,
      notCarried: p.notCarried,
      refused: p.refused,
      plan: stepsJson(p.steps),
      before: p.before,
      after: p.after,
    };
    out.write(JSON.stringify({ ...shape, applied, outcome: r.outcome, recovered: r.recovered }, null, 2) + '\n');
    return;
  }
  for (const line of r.recovered) out.write(`${line}\n`);
  if (!p) return;
  out.write(`Live snapshot of node '${p.node}' (${p.image}) -> ${p.newTop} (node '${p.newNode}')\n`);
  for (const n of p.notCarried) out.write(`  not carried: ${n.name}: ${n.why}\n`);
  writeViews(out, p.before, p.after);
  writeSteps(out, p.steps, r, p.refused, `the disk's top node is now '${p.newNode}' (${p.newTop})`);
}

/** strata stream --socket PATH --node NODE [--base LAYER]: the live stream (repair/stream-live.ts). */
export async function cmdStreamLive(a: Parsed, out: Out): Promise<void> {
  const t = liveTarget(a, '');
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'with --socket, the top is named by --node, not by a TOP path; see strata stream --help');
  const b = a.options.get('base');
  const base = b === undefined ? undefined : b.includes('/') ? path.resolve(b) : b;
  const apply = a.flags.has('yes');
  await withLive(
    t,
    { apply, title: `strata stream --socket ${t.socket} --node ${t.node}`, what: 'live stream', file: t.socket },
    (qmp, db, runtimeDir) => streamLive(qmp, t, { apply, db, runtimeDir, base }),
    (r) => writeStream(out, r, a.flags.has('json')),
  );
}

function writeStream(out: Out, r: LiveStreamResult, json: boolean): void {
  const p = r.plan;
  const applied = r.outcome?.state === 'done';
  if (json) {
    const shape = p && {
      image: p.image,
      node: p.node,
      active: p.image,
      base: p.base,
      baseNode: p.baseNode,
      removed: p.removed,
      carried: p.carried,
      notCarried: p.notCarried,
      refused: p.refused,
      jobId: p.jobId,
      plan: stepsJson(p.steps),
      before: p.before,
      after: p.after,
    };
    out.write(JSON.stringify({ ...shape, applied, outcome: r.outcome, recovered: r.recovered }, null, 2) + '\n');
    return;
  }
  for (const line of r.recovered) out.write(`${line}\n`);
  if (!p) return;
  out.write(`Live stream of ${p.removed.map((f) => path.basename(f)).join(', ') || 'nothing'} into node '${p.node}' (${p.image})${p.base ? ` (it stays backed by ${p.base})` : ' (it becomes standalone)'}\n`);
  for (const c of p.carried) out.write(`  ${c.created ? 'carried' : 'merged'}: ${c.name} from ${c.from.map((f) => path.basename(f)).join(', ')}\n`);
  for (const n of p.notCarried) out.write(`  not carried: ${n.name} (${path.basename(n.layer)}): ${n.why}\n`);
  writeViews(out, p.before, p.after);
  writeSteps(out, p.steps, r, p.refused, `${p.image} now holds the data of ${p.removed.map((f) => path.basename(f)).join(', ')}`);
}
