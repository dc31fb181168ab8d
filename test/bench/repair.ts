// Repair of an untracked overlay on a 1 TiB sparse disk with 16384 allocated runs, as a whole
// `strata repair --yes` process, against `qemu-img map --output=json` of that overlay, side by side
// and interleaved in one run. Between runs the bitmap the repair created is removed again (not
// timed), so every run repairs the same chain.
//
// Then the live repair of a copy of that overlay held by a qemu-storage-daemon (node disk0) while a
// guest writes 64 MiB into it at 4 MiB/s (a backup job, test/repair/live-guest.ts): the whole
// `strata repair --socket --node disk0 --yes` process, c1 removed again between runs (not timed).
//
//   node --import tsx test/bench/repair.ts [--runs=5]     (benchmark 9 of `npm run bench`)
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { startGuestJob, endGuestJob } from '../repair/live-guest.ts';
import { waitListening } from '../helpers/qemu.ts';
import { CACHE, ROOT, fmtMs, median, round, timedRun, toolVersion } from './util.ts';

const RUNS = Math.max(3, Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5));
const RUNS_ALLOCATED = 16384;
const SIZE = 2 ** 40;
const dir = path.join(CACHE, 'repair-untracked');
const base = path.join(dir, 'base.qcow2');
const top = path.join(dir, 'top.qcow2');
const home = path.join(dir, 'home');
const log = (s: string) => process.stdout.write(s + '\n');

function build(): void {
  const stamp = path.join(dir, 'stamp.json');
  if (fs.existsSync(stamp)) return;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  timedRun('qemu-img', ['create', '-q', '-f', 'qcow2', base, String(SIZE)]);
  timedRun('qemu-img', ['bitmap', '--add', base, 'c1']);
  timedRun('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
  const step = SIZE / RUNS_ALLOCATED;
  const cmds: string[] = [];
  for (let i = 0; i < RUNS_ALLOCATED; i++) cmds.push(`write -q -P 1 ${i * step} 65536`);
  const r = spawnSync('qemu-io', ['-t', 'unsafe', '-f', 'qcow2', top], { input: cmds.join('\n') + '\nquit\n', encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`qemu-io: ${r.stderr}`);
  fs.writeFileSync(stamp, JSON.stringify({ runs: RUNS_ALLOCATED, size: SIZE }));
}

function strataRepair(): number {
  const t = timedRun(process.execPath, [path.join(ROOT, 'bin/strata.cjs'), 'repair', top, '--yes', '--json'], { env: { ...process.env, STRATA_HOME: home } });
  const j = JSON.parse(t.stdout.toString('utf8'));
  if (!j.applied || j.after[0].state !== 'ok') throw new Error(`repair did not repair: ${JSON.stringify(j.after)}`);
  timedRun('qemu-img', ['bitmap', '--remove', top, 'c1']);
  return t.ms;
}

const qemuMap = () => timedRun('qemu-img', ['map', '--output=json', top]).ms;

build();
log(`repair bench: ${toolVersion('qemu-img')}; 1 TiB overlay, ${RUNS_ALLOCATED} allocated runs; ${RUNS} runs a side`);
strataRepair();
qemuMap();
const s: number[] = [];
const q: number[] = [];
for (let i = 0; i < RUNS; i++) {
  if (i % 2) {
    q.push(qemuMap());
    s.push(strataRepair());
  } else {
    s.push(strataRepair());
    q.push(qemuMap());
  }
}
const ratio = median(s) / median(q);
log(`strata repair --yes (whole process): median ${fmtMs(median(s))}  [${s.map((x) => fmtMs(x)).join(', ')}]`);
log(`qemu-img map --output=json:          median ${fmtMs(median(q))}  [${q.map((x) => fmtMs(x)).join(', ')}]`);
log(`ratio ${round(ratio)} (target <= 1.0): ${ratio <= 1 ? 'PASS' : 'MISS'}`);

/** The live repair, on a copy of the overlay held by a daemon, while a guest writes. */
async function liveRuns(): Promise<number[]> {
  const liveTop = path.join(dir, 'live-top.qcow2');
  fs.copyFileSync(top, liveTop);
  const guestSrc = path.join(dir, 'guest-64m.qcow2');
  if (!fs.existsSync(guestSrc)) {
    timedRun('qemu-img', ['create', '-q', '-f', 'qcow2', guestSrc, String(SIZE)]);
    timedRun('qemu-io', ['-t', 'unsafe', '-f', 'qcow2', '-c', `write -q -P 7 ${SIZE / 2 + 65536 * 3} ${64 << 20}`, guestSrc]);
  }
  const sock = path.join(dir, 'live.qmp');
  const lookSock = path.join(dir, 'look.qmp');
  for (const f of [sock, lookSock]) fs.rmSync(f, { force: true });
  const qsd = spawn('qemu-storage-daemon', [
    '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m',
    '--chardev', `socket,id=l,path=${lookSock},server=on,wait=off`, '--monitor', 'chardev=l',
    '--blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${liveTop}`,
  ], { stdio: 'ignore' });
  try {
    await waitListening(lookSock, qsd, () => 'qemu-storage-daemon');
    const look = await QmpClient.connect(lookSock);
    const out: number[] = [];
    for (let i = 0; i < RUNS + 1; i++) {
      const job = await startGuestJob(look, 'disk0', guestSrc, { sync: 'top', speed: 4 << 20 });
      const t = timedRun(process.execPath, [path.join(ROOT, 'bin/strata.cjs'), 'repair', '--socket', sock, '--node', 'disk0', '--yes', '--json'], { env: { ...process.env, STRATA_HOME: path.join(dir, 'home-live') } });
      const j = JSON.parse(t.stdout.toString('utf8'));
      if (!j.applied || j.outcomes[0]?.state !== 'done') throw new Error(`live repair did not repair: ${JSON.stringify(j.outcomes)}`);
      const jobs = await look.execute<{ id: string; status: string }[]>('query-jobs');
      if (jobs.find((x) => x.id === job)?.status !== 'running') throw new Error(`the guest stopped writing (${JSON.stringify(jobs)}) before the repair ended (${fmtMs(t.ms)}): the run did not measure a repair under writes`);
      await endGuestJob(look, job, true);
      await look.execute('block-dirty-bitmap-remove', { node: 'disk0', name: 'c1' });
      if (i > 0) out.push(t.ms); // the first run warms up
    }
    await look.close();
    return out;
  } finally {
    qsd.kill('SIGTERM');
    await new Promise((r) => qsd.once('exit', r));
    fs.rmSync(liveTop, { force: true });
  }
}
const live = await liveRuns();
log(`strata repair --socket --yes while a guest writes 4 MiB/s (whole process): median ${fmtMs(median(live))}  [${live.map((x) => fmtMs(x)).join(', ')}]`);
if (process.env.BENCH_JSON) fs.writeFileSync(process.env.BENCH_JSON, JSON.stringify({ strata: s, qemu: q, live }));
