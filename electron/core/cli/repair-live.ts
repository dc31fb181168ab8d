// strata repair --socket PATH --node NODE: the live repair of the layer a running QEMU writes
// (repair/live.ts). Loaded on demand: it needs sockets, the offline form does not. Without --yes
// only queries are sent (and the NBD read of the node's state, through a private export).
import fs from 'node:fs';
import path from 'node:path';
import type { Parsed } from './args.ts';
import type { Out } from './output.ts';
import { writeViews, shortCommand } from './repair.ts';
import { QmpClient } from '../qmp/client.ts';
import { repairLive, type LiveRepairReport } from '../repair/live.ts';
import { defaultDataDir } from '../paths.ts';
import { openDb } from '../store/db.ts';
import { QmpTrafficLog } from '../store/qmp-traffic.ts';
import { StrataError } from '../errors.ts';

export async function cmdRepairLive(a: Parsed, out: Out): Promise<void> {
  if (!a.options.get('socket')) throw new StrataError('E_BAD_INPUT', '--node needs --socket PATH (the QMP socket of the QEMU that holds the node)');
  const socket = path.resolve(a.options.get('socket')!);
  const node = a.options.get('node');
  if (!node) throw new StrataError('E_BAD_INPUT', `${socket}: --socket needs --node NODE (the qcow2 node of the layer to repair)`, { file: socket });
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'with --socket, the layer is named by --node, not by an IMAGE; see strata repair --help');
  if (a.options.has('backing')) throw new StrataError('E_BAD_INPUT', '--backing is for an offline IMAGE; a missing backing file is repaired with the VM stopped');
  const apply = a.flags.has('yes');
  const dataDir = defaultDataDir();
  const dbFile = path.join(dataDir, 'strata.db');
  const db = apply || fs.existsSync(dbFile) ? openDb(dbFile) : null;
  try {
    // What is sent to that QEMU goes to the traffic log with the history (the plan's steps point at it).
    const traffic = apply && db ? new QmpTrafficLog(db).open(`strata repair --socket ${socket} --node ${node}`, socket) : null;
    let report: LiveRepairReport;
    try {
      const qmp = await QmpClient.connect(socket, { connectTimeoutMs: 3000, onTraffic: traffic?.sink });
      try {
        ({ report } = await repairLive(qmp, { socket, node }, { apply, db, runtimeDir: path.join(dataDir, 'run') }));
      } finally {
        await qmp.close();
      }
    } finally {
      traffic?.close('strata repair ended');
    }
    const { unrepairable: bad, ...shape } = report;
    if (a.flags.has('json')) out.write(JSON.stringify(shape, null, 2) + '\n');
    else writeText(out, report, apply);
    const failed = report.outcomes.find((x) => x.state !== 'done');
    if (failed) throw new StrataError('E_TOOL', `${report.image}: the live repair did not finish (plan #${failed.id} ${failed.state}: ${failed.resolution}); see strata history --plans`, { file: report.image });
    if (bad.length) throw new StrataError('E_CHECKPOINT_UNKNOWN', `${report.image}: cannot be repaired live: ${bad.join('; ')}`, { file: report.image });
  } finally {
    db?.close();
  }
}

function writeText(out: Out, r: LiveRepairReport, apply: boolean): void {
  for (const line of r.recovered) out.write(`${line}\n`);
  if (!r.findings.length) out.write(`${r.image} (node '${r.node}'): no findings; every checkpoint is as Strata expects\n`);
  for (const f of r.findings) {
    out.write(`[${f.code}] ${f.repairable ? 'repairable live' : f.problem ? 'NOT repairable live' : 'note'}: ${f.message}\n`);
    if (f.consequence) out.write(`    ${f.consequence}\n`);
  }
  if (r.plan.length) {
    out.write('\n');
    writeViews(out, 'Changes since each checkpoint, now:', r.before);
    writeViews(out, 'After the repair:', r.after);
    out.write('\nSteps and the exact commands:\n');
    r.plan.forEach((s, i) => {
      out.write(`${i + 1}. ${s.label}\n`);
      if (s.qmp) out.write(`     qmp ${JSON.stringify({ execute: s.qmp.execute, arguments: s.qmp.arguments })}\n`);
      for (const c of s.commands) out.write(`     ${shortCommand(c)}\n`);
    });
  }
  for (const o of r.outcomes) out.write(`\nPlan #${o.id}: ${o.state}${o.state === 'done' ? '' : ` (${o.resolution})`}\n`);
  if (!apply && r.plan.length) out.write('\nNothing was changed. Run again with --yes to apply.\n');
}
