// Repair of an untracked overlay on a 1 TiB sparse disk with 16384 allocated runs, as a whole
// `strata repair --yes` process, against `qemu-img map --output=json` of that overlay, side by side
// and interleaved in one run. Between runs the bitmap the repair created is removed again (not
// timed), so every run repairs the same chain.
//
//   node --import tsx test/bench/repair.ts [--runs=5]     (benchmark 9 of `npm run bench`)
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
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
if (process.env.BENCH_JSON) fs.writeFileSync(process.env.BENCH_JSON, JSON.stringify({ strata: s, qemu: q }));
