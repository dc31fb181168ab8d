// strata snapshot --socket PATH --node NODE NEW_TOP: the live snapshot of a running QEMU's disk
// (repair/snapshot-live.ts). Loaded on demand: it needs sockets, the offline form does not. Without
// --yes only queries are sent (and the NBD read of the node's bitmaps, through a private export).
import fs from 'node:fs';
import path from 'node:path';
import type { Parsed } from './args.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { openDb } from '../store/db.ts';
import { QmpTrafficLog } from '../store/qmp-traffic.ts';
import { QmpClient } from '../qmp/client.ts';
import { stepCommands } from '../plans/types.ts';
import { snapshotLive, type LiveSnapshotResult } from '../repair/snapshot-live.ts';
import { StrataError } from '../errors.ts';

/** strata snapshot --socket PATH --node NODE NEW_TOP: the live snapshot (repair/snapshot-live.ts). */
export async function cmdSnapshotLive(a: Parsed, out: Out): Promise<void> {
  if (!a.options.get('socket')) throw new StrataError('E_BAD_INPUT', '--node and --new-node need --socket PATH (the QMP socket of the running QEMU)');
  const socket = path.resolve(a.options.get('socket')!);
  const node = a.options.get('node');
  if (!node) throw new StrataError('E_BAD_INPUT', `${socket}: --socket needs --node NODE (the disk's top node; see query-named-block-nodes)`, { file: socket });
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'with --socket, name only NEW_TOP (the disk is named by --node); see strata snapshot --help');
  const newTop = path.resolve(a.positionals[0]);
  const newNode = a.options.get('new-node');
  if (newNode !== undefined && !/^[A-Za-z][A-Za-z0-9_.-]{0,31}$/.test(newNode)) throw new StrataError('E_BAD_INPUT', `--new-node ${newNode}: a node name starts with a letter and has at most 32 letters, digits, '-', '_' or '.'`);
  const apply = a.flags.has('yes');
  const json = a.flags.has('json');
  const dataDir = defaultDataDir();
  const dbFile = path.join(dataDir, 'strata.db');
  const db = apply || fs.existsSync(dbFile) ? openDb(dbFile) : null;
  const traffic = apply && db ? new QmpTrafficLog(db).open(`strata snapshot --socket ${socket} --node ${node} ${newTop}`, socket) : null;
  try {
    const qmp = await QmpClient.connect(socket, { connectTimeoutMs: 3000, onTraffic: traffic?.sink });
    let r: LiveSnapshotResult;
    try {
      r = await snapshotLive(qmp, { socket, node }, newTop, { apply, db, runtimeDir: path.join(dataDir, 'run'), checkpoint: a.options.get('checkpoint') ?? null, newNode });
    } finally {
      await qmp.close();
    }
    writeLive(out, r, json);
    if (r.plan?.refused) throw new StrataError('E_BAD_INPUT', r.plan.refused, { file: socket });
    if (r.outcome && r.outcome.state !== 'done') throw new StrataError('E_QMP_EXECUTE', `${newTop}: the live snapshot did not finish (plan #${r.outcome.id} ${r.outcome.state}: ${r.outcome.resolution}); see strata history --plans`, { file: newTop });
  } finally {
    traffic?.close('strata snapshot ended');
    db?.close();
  }
}

function writeLive(out: Out, r: LiveSnapshotResult, json: boolean): void {
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
      plan: p.steps.map((s) => ({ label: s.label, commands: s.spec.kind === 'tool' ? s.spec.commands : [], qmp: s.spec.kind === 'tool' ? [] : stepCommands(s.spec), undo: 'undo' in s.spec ? s.spec.undo : null })),
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
  for (const v of p.after) {
    const was = p.before.find((b) => b.name === v.name);
    out.write(`  ${v.name}: ${was?.state ?? 'new'}${was?.drawing ? ` ${was.drawing}` : ''} -> ${v.state}${v.drawing ? ` ${v.drawing}` : ''}\n`);
  }
  out.write('\nSteps and the exact commands:\n');
  p.steps.forEach((s, i) => {
    out.write(`${i + 1}. ${s.label}\n`);
    if (s.spec.kind === 'tool') for (const c of s.spec.commands) out.write(`     ${c.join(' ')}\n`);
    else for (const c of stepCommands(s.spec)) out.write(`     qmp ${JSON.stringify(c)}\n`);
  });
  if (r.outcome) out.write(`\nPlan #${r.outcome.id}: ${r.outcome.state}${applied ? `; the disk's top node is now '${p.newNode}' (${p.newTop})` : ` (${r.outcome.resolution})`}\n`);
  else if (!p.refused) out.write('\nNothing was changed. Run again with --yes to apply.\n');
}
