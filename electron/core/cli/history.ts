// strata history: the journal of changes Strata made (newest first).
import path from 'node:path';
import fs from 'node:fs';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { table } from './format.ts';
import { defaultDataDir } from '../paths.ts';
import { openDb } from '../store/db.ts';
import { Operations } from '../store/operations.ts';
import { StrataError } from '../errors.ts';

export const HISTORY_HELP = `Usage: strata history [--limit N] [--verbose] [--json]

Every change Strata made to an image, newest first: what, where, when, how it ended; --verbose
adds the QMP exchanged. Reads the history database in $STRATA_HOME (or ~/.local/share/strata).`;

export function cmdHistory(argv: string[], out: Out): void {
  const a = parseArgs(argv, { flags: ['verbose'], options: ['limit'] });
  if (a.flags.has('help')) return out.write(HISTORY_HELP + '\n');
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata history --help');
  const limit = Number(a.options.get('limit') ?? 50);
  if (!Number.isInteger(limit) || limit < 1) throw new StrataError('E_BAD_INPUT', '--limit: expected a positive whole number');
  const file = path.join(defaultDataDir(), 'strata.db');
  // No database yet means no history yet; do not create one just to say so.
  const ops = fs.existsSync(file) ? (() => {
    const db = openDb(file);
    try {
      return new Operations(db).list(limit);
    } finally {
      db.close();
    }
  })() : [];
  if (a.flags.has('json')) return out.write(JSON.stringify(a.flags.has('verbose') ? ops : ops.map(({ log: _log, ...o }) => o), null, 2) + '\n');
  if (ops.length === 0) return out.write('No changes recorded yet.\n');
  out.write(table(['#', 'when', 'state', 'what'], ops.map((o) => [String(o.id), o.createdAt.replace('T', ' ').slice(0, 19), o.state, o.summary])) + '\n');
  for (const o of ops) {
    if (o.error) out.write(`\n#${o.id} failed: ${o.error}\n`);
    if (a.flags.has('verbose')) for (const l of o.log) out.write(`  #${o.id} ${l.dir === 'out' ? '->' : '<-'} ${l.line}\n`);
  }
}
