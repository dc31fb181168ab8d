// strata jobs: the block jobs Strata recorded (history database), or, with --socket, the jobs a
// running QEMU has now. Loaded on demand (SQLite and sockets).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { humanBytes, table } from './format.ts';
import { defaultDataDir } from '../paths.ts';
import { allowedVerbs, isJobState, type JobVerb } from '../jobs/states.ts';
import { StrataError } from '../errors.ts';

export const JOBS_HELP = `Usage: strata jobs [--limit N] [--verbose] [--json]
       strata jobs --socket PATH [--json]

Without --socket: the block jobs Strata started or followed, newest first, with the last state
each reached and its error; --verbose adds every state change. Reads the history database in
$STRATA_HOME (or ~/.local/share/strata); nothing is created if there is none.

With --socket: the jobs of a running QEMU now (query-jobs): state, progress, speed limit and the
verbs QEMU accepts in that state. Only reads. QEMU serves one client per monitor: while another
client (the Strata app, libvirt) is connected to PATH, this waits 3 s and says so.`;

export interface LiveJob {
  id: string;
  type: string;
  state: string;
  current: number;
  total: number;
  /** current/total in percent, one decimal; null while the total is unknown (0) */
  percent: number | null;
  /** bytes per second, 0 = unlimited; null for jobs that are not block jobs */
  speed: number | null;
  verbs: JobVerb[];
  error: string | null;
}

async function liveJobs(socket: string): Promise<LiveJob[]> {
  const { QmpClient } = await import('../qmp/client.ts');
  const qmp = await QmpClient.connect(socket, { connectTimeoutMs: 3000 });
  try {
    const [jobs, blockJobs] = await Promise.all([qmp.execute<any[]>('query-jobs'), qmp.execute<any[]>('query-block-jobs')]);
    const speed = new Map(blockJobs.map((b) => [b.device as string, b.speed as number]));
    return jobs.map((j) => {
      const current = Number(j['current-progress'] ?? 0);
      const total = Number(j['total-progress'] ?? 0);
      return {
        id: j.id,
        type: j.type,
        state: j.status,
        current,
        total,
        percent: total > 0 ? Math.round((current / total) * 1000) / 10 : null,
        speed: speed.get(j.id) ?? null,
        verbs: isJobState(j.status) ? allowedVerbs(j.status) : [],
        error: j.error ?? null,
      };
    });
  } finally {
    await qmp.close();
  }
}

export async function cmdJobs(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['verbose'], options: ['socket', 'limit'] });
  if (a.flags.has('help')) return out.write(JOBS_HELP + '\n');
  if (a.positionals.length) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata jobs --help');
  const json = a.flags.has('json');
  const socketOpt = a.options.get('socket');
  if (socketOpt !== undefined) {
    if (a.options.has('limit') || a.flags.has('verbose')) throw new StrataError('E_BAD_INPUT', '--limit and --verbose are for the recorded jobs, not with --socket');
    const socket = path.resolve(socketOpt);
    const jobs = await liveJobs(socket);
    if (json) return out.write(JSON.stringify(jobs, null, 2) + '\n');
    if (jobs.length === 0) return out.write(`No jobs in ${socket}.\n`);
    out.write(
      table(
        ['id', 'type', 'state', 'progress', 'done', 'speed', 'verbs'],
        jobs.map((j) => [
          j.id,
          j.type,
          j.state,
          j.percent === null ? '-' : `${j.percent.toFixed(1)}%`,
          `${humanBytes(j.current)} of ${humanBytes(j.total)}`,
          j.speed === null ? '-' : j.speed === 0 ? 'unlimited' : `${humanBytes(j.speed)}/s`,
          j.verbs.join(', ') || '-',
        ]),
      ) + '\n',
    );
    for (const j of jobs) if (j.error) out.write(`\n${j.id}: ${j.error}\n`);
    return;
  }

  const limit = Number(a.options.get('limit') ?? 50);
  if (!Number.isInteger(limit) || limit < 1) throw new StrataError('E_BAD_INPUT', '--limit: expected a positive whole number');
  const file = path.join(defaultDataDir(), 'strata.db');
  // No database means no jobs recorded yet; do not create one (or its folder) just to say so.
  if (!fs.existsSync(file)) {
    if (json) return out.write('[]\n');
    return out.write(`No jobs recorded yet (no history database at ${file}).\n`);
  }
  const [{ openDb }, { JobStore }] = await Promise.all([import('../store/db.ts'), import('../store/jobs.ts')]);
  const db = openDb(file);
  let jobs;
  try {
    jobs = new JobStore(db).list(limit);
  } finally {
    db.close();
  }
  if (json) return out.write(JSON.stringify(a.flags.has('verbose') ? jobs : jobs.map(({ events: _e, ...j }) => j), null, 2) + '\n');
  if (jobs.length === 0) return out.write('No jobs recorded yet.\n');
  out.write(
    table(
      ['#', 'started', 'type', 'job', 'state', 'finished', 'connection'],
      jobs.map((j) => [
        String(j.id),
        j.createdAt.replace('T', ' ').slice(0, 19),
        j.type,
        j.qemuId,
        j.state,
        j.finishedAt ? j.finishedAt.replace('T', ' ').slice(0, 19) : '-',
        j.connection,
      ]),
    ) + '\n',
  );
  for (const j of jobs) {
    if (j.error) out.write(`\n#${j.id} ${j.qemuId}: ${j.error}\n`);
    if (a.flags.has('verbose')) for (const e of j.events) out.write(`  #${j.id} ${e.at.replace('T', ' ').slice(0, 23)} ${e.state}${e.note ? `: ${e.note}` : ''}\n`);
  }
}
