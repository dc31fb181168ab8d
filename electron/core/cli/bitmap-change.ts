// strata bitmap add|remove|enable|disable|clear|merge: plan first, change only with --yes.
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { openTarget, planOn, runBitmapOp, parseSource, type OpRequest, type Target } from '../bitmaps/run.ts';
import { openDb } from '../store/db.ts';
import { Operations } from '../store/operations.ts';
import { inspect } from '../inspect.ts';
import { StrataError } from '../errors.ts';

const TARGET = `TARGET is an IMAGE (offline: opened read-write in Strata's own qemu-storage-daemon, which
stores the bitmaps when it stops) or --socket PATH --node NODE (a running QEMU's QMP socket).
Without --yes the plan (the exact QMP command) is printed and nothing is changed.`;

export const BITMAP_CHANGE_HELP = {
  add: `Usage: strata bitmap add TARGET NAME [--granularity BYTES] [--disabled] [--transient] [--yes] [--json]\n\n${TARGET}`,
  remove: `Usage: strata bitmap remove TARGET NAME [--yes] [--json]\n\n${TARGET}`,
  enable: `Usage: strata bitmap enable TARGET NAME [--yes] [--json]\n\n${TARGET}`,
  disable: `Usage: strata bitmap disable TARGET NAME [--yes] [--json]\n\n${TARGET}`,
  clear: `Usage: strata bitmap clear TARGET NAME [--yes] [--json]\n\n${TARGET}`,
  merge: `Usage: strata bitmap merge TARGET DEST SRC... [--yes] [--json]\n\nA SRC is NAME (same node) or LAYER_PATH_OR_NODE:NAME.\n${TARGET}`,
};
type Sub = keyof typeof BITMAP_CHANGE_HELP;

function parseSize(v: string): number {
  const m = /^(\d+)([KMG]i?B?|[kmg])?$/.exec(v);
  if (!m) throw new StrataError('E_BAD_INPUT', `--granularity ${v}: expected bytes, e.g. 65536 or 64K`);
  const unit = (m[2] ?? '').toUpperCase()[0];
  return Number(m[1]) * (unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1);
}

export async function cmdBitmapChange(sub: Sub, argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes', 'disabled', 'transient'], options: ['socket', 'node', 'granularity'] });
  if (a.flags.has('help')) return out.write(BITMAP_CHANGE_HELP[sub] + '\n');
  const socket = a.options.get('socket');
  const pos = [...a.positionals];
  let target: Target;
  if (socket) {
    const node = a.options.get('node');
    if (!node) throw new StrataError('E_BAD_INPUT', '--socket needs --node NODE (see strata jobs or query-named-block-nodes)');
    target = { kind: 'socket', socket: path.resolve(socket), node };
  } else {
    const image = pos.shift();
    if (!image) throw new StrataError('E_BAD_INPUT', `wrong arguments; see strata bitmap ${sub} --help`);
    target = { kind: 'image', image: path.resolve(image) };
  }
  let req: OpRequest;
  if (sub === 'merge') {
    const [dest, ...srcs] = pos;
    if (!dest || srcs.length === 0) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata bitmap merge --help');
    req = { op: 'merge', target: dest, sources: srcs.map(parseSource) };
  } else {
    if (pos.length !== 1) throw new StrataError('E_BAD_INPUT', `wrong arguments; see strata bitmap ${sub} --help`);
    const name = pos[0];
    if (sub === 'add') {
      const transient = a.flags.has('transient');
      if (transient && target.kind === 'image') {
        throw new StrataError('E_BAD_INPUT', `${target.image}: a transient bitmap on an offline image would vanish when Strata's daemon stops; add it to a running QEMU with --socket`);
      }
      const g = a.options.get('granularity');
      req = { op: 'add', name, persistent: !transient, disabled: a.flags.has('disabled'), ...(g ? { granularity: parseSize(g) } : {}) };
    } else req = { op: sub, name };
  }

  const dataDir = defaultDataDir();
  const runtimeDir = path.join(dataDir, 'run');
  const json = a.flags.has('json');
  if (!a.flags.has('yes')) {
    // Dry run: look, plan, change nothing (an offline image is opened read-only for the look).
    const s = await openTarget(target, { runtimeDir, readOnly: true });
    try {
      const plan = await planOn(s, req, { assumeWritable: s.embedded });
      if (json) return out.write(JSON.stringify({ applied: false, summary: plan.summary, qmp: plan.qmp }, null, 2) + '\n');
      out.write(`Plan: ${plan.summary}\n\nQMP it will send${s.embedded ? " (to Strata's own qemu-storage-daemon)" : ''}:\n`);
      out.write(JSON.stringify(plan.qmp, null, 2) + '\n\nNothing was changed. Run again with --yes to apply.\n');
    } finally {
      await s.close();
    }
    return;
  }
  const db = openDb(path.join(dataDir, 'strata.db'));
  try {
    const r = await runBitmapOp(target, req, new Operations(db), runtimeDir);
    if (json) return out.write(JSON.stringify({ applied: true, summary: r.plan.summary, qmp: r.plan.qmp, operation: r.operationId }, null, 2) + '\n');
    out.write(`Done: ${r.plan.summary} (operation #${r.operationId} in strata history)\n`);
    if (target.kind === 'image') {
      // Read back what is on disk now that the daemon has stored the bitmaps.
      const layer = inspect(target.image).layers[0];
      out.write(`${path.basename(layer.path)} now has: ${layer.bitmaps.map((b) => `${b.name} [${b.flags.join(', ') || 'disabled'}]`).join(', ') || 'no bitmaps'}\n`);
    }
  } finally {
    db.close();
  }
}
