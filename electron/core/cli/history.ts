// strata history: the journal of changes Strata made (newest first).
import path from 'node:path';
import fs from 'node:fs';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { table } from './format.ts';
import { defaultDataDir } from '../paths.ts';
import { openDb } from '../store/db.ts';
import { Operations } from '../store/operations.ts';
import { PlanStore } from '../store/plans.ts';
import { StrataError } from '../errors.ts';

export const HISTORY_HELP = `Usage: strata history [--limit N] [--verbose] [--json]

Every change Strata made to an image, newest first: what, where, when, how it ended; --verbose
adds the QMP exchanged. Then the multi-step plans (commits keeping the checkpoints), each with its
steps. --json lists the bitmap changes only (the shape scripts read); --plans --json the plans.
Reads the history database in $STRATA_HOME (or ~/.local/share/strata).`;

export function cmdHistory(argv: string[], out: Out): void {
  const a = parseArgs(argv, { flags: ['verbose', 'plans'], options: ['limit'] });
  if (a.flags.has('help')) return out.write(HISTORY_HELP + '\n');
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata history --help');
  const limit = Number(a.options.get('limit') ?? 50);
  if (!Number.isInteger(limit) || limit < 1) throw new StrataError('E_BAD_INPUT', '--limit: expected a positive whole number');
  const file = path.join(defaultDataDir(), 'strata.db');
  // No database yet means no history yet; do not create one just to say so.
  const { ops, plans } = fs.existsSync(file)
    ? (() => {
        const db = openDb(file);
        try {
          return { ops: new Operations(db).list(limit), plans: new PlanStore(db).list(limit) };
        } finally {
          db.close();
        }
      })()
    : { ops: [], plans: [] };
  if (a.flags.has('plans') && a.flags.has('json')) return out.write(JSON.stringify(plans.map(({ target: _t, ...p }) => p), null, 2) + '\n');
  if (a.flags.has('json')) return out.write(JSON.stringify(a.flags.has('verbose') ? ops : ops.map(({ log: _log, ...o }) => o), null, 2) + '\n');
  if (ops.length === 0 && plans.length === 0) return out.write('No changes recorded yet.\n');
  if (plans.length) {
    out.write(table(['plan', 'when', 'state', 'what'], plans.map((p) => [String(p.id), p.createdAt.replace('T', ' ').slice(0, 19), p.state, p.summary])) + '\n');
    for (const p of plans) {
      if (p.resolution && p.resolution !== 'done') out.write(`  plan ${p.id}: ${p.resolution}\n`);
      if (a.flags.has('verbose')) for (const st of p.steps) out.write(`  plan ${p.id} step ${st.index + 1} [${st.state}] ${st.label}\n`);
    }
    if (ops.length) out.write('\n');
  }
  if (ops.length === 0) return;
  out.write(table(['#', 'when', 'state', 'what'], ops.map((o) => [String(o.id), o.createdAt.replace('T', ' ').slice(0, 19), o.state, o.summary])) + '\n');
  for (const o of ops) {
    if (o.error) out.write(`\n#${o.id} failed: ${o.error}\n`);
    if (a.flags.has('verbose')) for (const l of o.log) out.write(`  #${o.id} ${l.dir === 'out' ? '->' : '<-'} ${l.line}\n`);
  }
}
