// `npm run bench`: Strata's reader against the real QEMU tools, side by side in the same run.
// Each benchmark warms up once, then interleaves Strata and QEMU runs (alternating which goes first)
// and compares medians. A MISS is printed, not fatal; the exit code is non-zero only on errors
// (a tool failing, a fixture that cannot be built, or Strata and QEMU disagreeing on the answer).
//
// 5 and 6 measure the live side (QMP round trips, events reaching the renderer's WebSocket); they
// start their own qemu-storage-daemon and need no fixture.
//
//   npm run bench                      all nine (7-9: whole strata backup/restore/repair processes)
//   npm run bench -- --only=1,3        some of them
//   npm run bench -- --runs=9          more runs per side (default 7, 15 for the fast 1 and 2; at least 5)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from '../../electron/core/inspect.ts';
import { openChain, findBitmap, bitmapExtents } from '../../electron/core/qcow2/chain.ts';
import { forEachMapExtent, type MapExtent } from '../../electron/core/chain-map.ts';
import { totalBytes } from '../../electron/core/extents.ts';
import { ensureChain, ensureBitmap, ensureAlloc, type Fixture } from './fixtures.ts';
import { CACHE, ROOT, fmtMs, median, round, table, timedRun, toolVersion, waitGone } from './util.ts';
import { newResult, type Result } from './result.ts';
import { bench5, bench6 } from './live.ts';

// ------------------------------------------------------------------------------------------ options

const argv = process.argv.slice(2);
const opt = (k: string) => argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3);
const only = opt('only')?.split(',').map(Number) ?? [1, 2, 3, 4, 5, 6, 7, 8, 9];
const runsArg = Number(opt('runs') ?? 7);
if (!Number.isInteger(runsArg)) throw new Error(`--runs must be a whole number, not '${opt('runs')}'`);
const RUNS = Math.max(5, runsArg);
/**
 * A QEMU side slower than this on its first run is measured that once plus one more, not RUNS times
 * (qemu-img map over the 1 TiB NBD export takes 15-30 s a run on 2 cores).
 */
const SLOW_MS = 10_000;
const MEMORY_LIMIT_MB = 200;
/** Benchmarks 1 and 2 take milliseconds a run and sit near their targets: more runs steady the medians. */
const FAST_RUNS = Math.max(RUNS, 15);
/** Benchmark 5: interleaved blocks of QMP calls a side (a round trip is ~0.1-0.3 ms). */
const QMP_BLOCKS = Math.max(10, RUNS * 3);
const QMP_CALLS_PER_BLOCK = 100;
/** Benchmark 6: a block-stream of this much data at this speed (~10 progress events a second). */
const STREAM = { dataMiB: 48, speedMiB: 8 };

const log = (s: string) => process.stdout.write(s + '\n');

// ------------------------------------------------------------------------------------------ results

function settle(r: Result, pass: boolean, problems: string[]): void {
  r.strataMs = median(r.strataRuns);
  r.qemuMs = median(r.qemuRuns);
  r.ratio = r.strataMs / r.qemuMs;
  r.speedup = r.qemuMs / r.strataMs;
  if (problems.length) {
    r.status = 'ERROR';
    r.error = `results disagree: ${problems.join('; ')}`;
  } else r.status = pass ? 'PASS' : 'MISS';
}

// ------------------------------------------------------------------------------------------ timing

interface PairOpts {
  strata: () => number;
  qemu: () => number;
  notes: string[];
  /** runs per side (default RUNS) */
  runs?: number;
}

/** Warm-up, then interleaved runs; returns the measured times of each side and the warm-up times. */
function interleave(o: PairOpts): { s: number[]; q: number[]; warmS: number; warmQ: number } {
  const warmS = o.strata();
  const warmQ = o.qemu();
  const runs = o.runs ?? RUNS;
  const s: number[] = [];
  const q: number[] = [];
  let qRuns = runs;
  if (warmQ > SLOW_MS) {
    q.push(warmQ);
    qRuns = 2;
    o.notes.push(`QEMU side took ${fmtMs(warmQ)} (> ${SLOW_MS / 1000} s): measured ${qRuns} times (the first run counts; no separate warm-up), not ${runs}`);
  }
  for (let i = 0; s.length < runs || q.length < qRuns; i++) {
    const order = i % 2 === 0 ? ['s', 'q'] : ['q', 's'];
    for (const side of order) {
      if (side === 's' && s.length < runs) s.push(o.strata());
      if (side === 'q' && q.length < qRuns) {
        q.push(o.qemu());
        if (q.length === 1 && q[0] > SLOW_MS && qRuns === runs) {
          qRuns = 2;
          o.notes.push(`QEMU side took ${fmtMs(q[0])} (> ${SLOW_MS / 1000} s): measured ${qRuns} times, not ${runs}`);
        }
      }
    }
  }
  return { s, q, warmS, warmQ };
}

const progress = (r: Result, what: string) => log(`  [${r.id}] ${what}`);

// ------------------------------------------------------------------------------------------ 1 and 2

function qemuInfoArgs(top: string): string[] {
  return ['info', '--backing-chain', '--output=json', top];
}

function bench1(fx: Fixture<import('./fixtures.ts').ChainMeta>): Result {
  const r = newResult(1, `inspect() in-process vs qemu-img info --backing-chain (${fx.stamp.meta.layers} layers)`, 'Strata >= 3x faster');
  const top = path.join(fx.dir, fx.stamp.meta.top);

  // Agreement check (untimed): same layers, sizes and bitmaps as QEMU reports.
  const problems: string[] = [];
  const tCold = performance.now();
  const rep = inspect(top);
  const coldMs = performance.now() - tCold;
  const qi = JSON.parse(timedRun('qemu-img', qemuInfoArgs(top)).stdout.toString('utf8')) as any[];
  if (rep.layers.length !== qi.length) problems.push(`${rep.layers.length} layers vs QEMU ${qi.length}`);
  for (let i = 0; i < Math.min(rep.layers.length, qi.length); i++) {
    const a = rep.layers[i];
    const b = qi[i];
    if (path.basename(a.path) !== path.basename(b.filename)) problems.push(`layer ${i}: ${a.path} vs ${b.filename}`);
    if (a.virtualSize !== b['virtual-size']) problems.push(`layer ${i}: virtual size ${a.virtualSize} vs ${b['virtual-size']}`);
    const qb = (b['format-specific']?.data?.bitmaps ?? []).map((x: any) => `${x.name}/${x.granularity}`).join(',');
    const sb = a.bitmaps.map((x) => `${x.name}/${x.granularity}`).join(',');
    if (qb !== sb) problems.push(`layer ${i}: bitmaps ${sb} vs ${qb}`);
  }
  const okCheckpoints = rep.checkpoints.filter((c) => c.state === 'ok').length;
  r.extra.checkpoints = rep.checkpoints.length;
  r.extra.checkpointsOk = okCheckpoints;
  if (okCheckpoints !== rep.checkpoints.length) r.notes.push(`${rep.checkpoints.length - okCheckpoints} checkpoints reported 'unknown'`);

  const scanMs: number[] = [];
  progress(r, 'measuring ...');
  const { s, q } = interleave({
    strata: () => {
      const t0 = performance.now();
      const report = inspect(top);
      JSON.stringify(report);
      const ms = performance.now() - t0;
      scanMs.push(report.scanMs);
      return ms;
    },
    qemu: () => timedRun('qemu-img', qemuInfoArgs(top)).ms,
    notes: r.notes,
    runs: FAST_RUNS,
  });
  r.strataRuns = s;
  r.qemuRuns = q;
  r.extra.strataColdFirstCallMs = round(coldMs);
  r.notes.push(`Strata's first inspect() in this process (JIT cold, before the warm-up, not in the median): ${fmtMs(coldMs)}`);
  const scan = median(scanMs.slice(1));
  r.extra.strataSplitMs = { scan: round(scan), openAndStringify: round(median(s) - scan) };
  r.notes.push(`Strata split: open chain + JSON.stringify ~${fmtMs(median(s) - scan)}, scan (allocation, bitmaps, checkpoints) ~${fmtMs(scan)}`);
  const spawnTrue = median([0, 1, 2, 3, 4].map(() => timedRun('true', []).ms));
  r.extra.spawnOverheadMs = round(spawnTrue);
  r.notes.push(`spawning /bin/true from this process costs ${fmtMs(spawnTrue)} (included in the QEMU side)`);
  settle(r, median(q) / median(s) >= 3, problems);
  return r;
}

function listTs(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

/** The `strata` command: package.json's "bin" if set, else the first of bin/strata.{mjs,cjs,js} present. */
function strataBin(): string {
  const candidates: string[] = [];
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.strata;
    if (typeof bin === 'string') candidates.push(path.join(ROOT, bin));
  } catch {
    // fall through to the usual names
  }
  for (const ext of ['mjs', 'cjs', 'js']) candidates.push(path.join(ROOT, 'bin', `strata.${ext}`));
  return candidates.find((c) => fs.existsSync(c)) ?? candidates[0];
}

function bench2(fx: Fixture<import('./fixtures.ts').ChainMeta>): Result {
  const r = newResult(2, `node bin/strata inspect --json (whole process) vs qemu-img info --backing-chain (${fx.stamp.meta.layers} layers)`, 'ratio <= 1.0 (no slower)');
  const top = path.join(fx.dir, fx.stamp.meta.top);
  const cli = strataBin();
  if (!fs.existsSync(cli)) {
    r.error = `the strata command (${path.relative(ROOT, cli)}) is missing: run \`npm run build\` first`;
    return r;
  }
  r.extra.cli = path.relative(ROOT, cli);
  // A bundle older than the reader's sources measures old code: say so.
  const bundles = ['cli.cjs', 'cli.mjs'].map((f) => path.join(ROOT, 'dist', f)).filter((f) => fs.existsSync(f));
  const newestSource = Math.max(...listTs(path.join(ROOT, 'electron', 'core')).map((f) => fs.statSync(f).mtimeMs));
  for (const b of bundles) {
    if (fs.statSync(b).mtimeMs < newestSource) r.notes.push(`${path.relative(ROOT, b)} is older than electron/core sources: the CLI measured may not include the latest reader changes (npm run build)`);
  }
  const strataArgs = [cli, 'inspect', top, '--json'];
  const problems: string[] = [];
  const out = JSON.parse(timedRun(process.execPath, strataArgs).stdout.toString('utf8'));
  const layers = out?.layers ?? out?.report?.layers;
  if (!Array.isArray(layers)) problems.push('strata inspect --json printed no layers array');
  else if (layers.length !== fx.stamp.meta.layers) problems.push(`strata inspect --json printed ${layers.length} layers, expected ${fx.stamp.meta.layers}`);

  progress(r, 'measuring ...');
  const { s, q } = interleave({
    strata: () => timedRun(process.execPath, strataArgs).ms,
    qemu: () => timedRun('qemu-img', qemuInfoArgs(top)).ms,
    notes: r.notes,
    runs: FAST_RUNS,
  });
  r.strataRuns = s;
  r.qemuRuns = q;
  // Where a whole-process run goes: bare node start-up, and the CLI loaded but reading no image.
  const nodeBare = median([0, 1, 2, 3, 4].map(() => timedRun(process.execPath, ['-e', '0']).ms));
  const cliHelp = median([0, 1, 2, 3, 4].map(() => timedRun(process.execPath, [cli, '--help']).ms));
  r.extra.nodeBareMs = round(nodeBare);
  r.extra.cliHelpMs = round(cliHelp);
  r.notes.push(`\`node -e 0\` alone: ${fmtMs(nodeBare)}; \`node ${path.relative(ROOT, cli)} --help\` (CLI loaded, no image read): ${fmtMs(cliHelp)}`);
  if (process.env.NODE_EXTRA_CA_CERTS) {
    // This environment makes every Node process parse a whole CA bundle at start-up, which a user's
    // shell normally does not. Show the same comparison without it; the verdict stays on the first.
    const { NODE_EXTRA_CA_CERTS: _drop, ...env } = process.env;
    const clean = interleave({
      strata: () => timedRun(process.execPath, strataArgs, { env }).ms,
      qemu: () => timedRun('qemu-img', qemuInfoArgs(top), { env }).ms,
      notes: [],
      runs: FAST_RUNS,
    });
    const ratio = median(clean.s) / median(clean.q);
    r.extra.withoutExtraCaCerts = { strataMs: round(median(clean.s)), qemuMs: round(median(clean.q)), ratio: round(ratio) };
    r.notes.push(`NODE_EXTRA_CA_CERTS is set here (Node reads that CA bundle at every start); without it: strata ${fmtMs(median(clean.s))} vs qemu-img ${fmtMs(median(clean.q))}, ratio ${ratio.toFixed(2)}`);
  }
  settle(r, median(s) / median(q) <= 1.0, problems);
  return r;
}

// ------------------------------------------------------------------------------------------ 3

function bench3(fx: Fixture<import('./fixtures.ts').BitmapMeta>): Result {
  const m = fx.stamp.meta;
  const r = newResult(
    3,
    `1 TiB bitmap (${(m.dirtyFraction * 100).toFixed(1)}% dirty, ${m.runs} runs): bitmapExtents vs qemu-nbd -B + qemu-img map`,
    `Strata >= 10x faster, peak RSS < ${MEMORY_LIMIT_MB} MB`,
  );
  const img = path.join(fx.dir, m.image);
  let strataDirty = -1;
  let strataCount = -1;
  const strata = () => {
    const t0 = performance.now();
    const chain = openChain(img);
    try {
      const layer = chain.layers[0];
      const bm = findBitmap(layer, m.bitmap);
      if (!bm) throw new Error(`${img}: no bitmap ${m.bitmap}`);
      const l = bitmapExtents(layer, bm);
      strataDirty = totalBytes(l);
      strataCount = l.count;
    } finally {
      chain.close();
    }
    return performance.now() - t0;
  };

  let seq = 0;
  let qemuDirty = -1;
  let qemuExtents = -1;
  const nbdTimes: number[] = [];
  const qemu = () => {
    const tag = `strata-bench-${process.pid}-${seq++}`;
    const sock = path.join(os.tmpdir(), `${tag}.sock`);
    const pidFile = path.join(os.tmpdir(), `${tag}.pid`);
    try {
      const t0 = performance.now();
      // --fork returns once the server listens, so the map can connect at once.
      timedRun('qemu-nbd', ['--fork', '--pid-file', pidFile, '-r', '-f', 'qcow2', '-B', m.bitmap, '-k', sock, img]);
      const t1 = performance.now();
      const map = timedRun('qemu-img', ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${sock},x-dirty-bitmap=qemu:dirty-bitmap:${m.bitmap}`]);
      const list = JSON.parse(map.stdout.toString('utf8')) as { length: number; data: boolean }[];
      let dirty = 0;
      for (const e of list) if (!e.data) dirty += e.length; // dirty reads back as data: false
      const ms = performance.now() - t0;
      nbdTimes.push(t1 - t0);
      qemuDirty = dirty;
      qemuExtents = list.length;
      return ms;
    } finally {
      // qemu-nbd (not persistent) leaves once its one client is gone; make sure before the next run.
      if (fs.existsSync(pidFile)) {
        const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
        if (pid > 0) waitGone(pid);
      }
      fs.rmSync(sock, { force: true });
      fs.rmSync(pidFile, { force: true });
    }
  };

  progress(r, 'measuring (the QEMU side takes tens of seconds a run) ...');
  const { s, q } = interleave({ strata, qemu, notes: r.notes });
  r.strataRuns = s;
  r.qemuRuns = q;
  r.notes.push(`qemu-nbd --fork start-up: ${fmtMs(median(nbdTimes))} of the QEMU side; qemu-img map printed ${qemuExtents} extents`);

  const problems: string[] = [];
  if (strataDirty !== m.dirtyBytes) problems.push(`Strata dirty bytes ${strataDirty}, fixture wrote ${m.dirtyBytes}`);
  if (qemuDirty !== m.dirtyBytes) problems.push(`QEMU dirty bytes ${qemuDirty}, fixture wrote ${m.dirtyBytes}`);
  if (strataCount !== m.runs) problems.push(`Strata found ${strataCount} dirty extents, fixture wrote ${m.runs} separate runs`);

  // Peak memory in a fresh process: everything the reader holds for this one bitmap.
  progress(r, 'measuring peak memory in a child process ...');
  const child = JSON.parse(
    timedRun(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test', 'bench', 'bitmap-child.ts'), img, m.bitmap], { cwd: ROOT }).stdout.toString('utf8'),
  );
  if (child.dirtyBytes !== m.dirtyBytes) problems.push(`child process read ${child.dirtyBytes} dirty bytes`);
  const peakMb = child.hwmKb / 1024;
  r.extra.memory = {
    peakRssMB: round(peakMb, 1),
    rssBeforeScanMB: round(child.rssBeforeKb / 1024, 1),
    growthMB: round((child.hwmKb - child.hwmBeforeKb) / 1024, 1),
    childScanMs: round(child.ms),
  };
  r.notes.push(
    `peak RSS (VmHWM) of a child doing the read: ${peakMb.toFixed(1)} MB (node + tsx + modules before the read: ${(child.rssBeforeKb / 1024).toFixed(1)} MB; the read added ${((child.hwmKb - child.hwmBeforeKb) / 1024).toFixed(1)} MB)`,
  );
  r.extra.dirtyBytes = strataDirty;
  r.extra.dirtyExtents = strataCount;
  const speed = median(q) / median(s) >= 10;
  const mem = peakMb < MEMORY_LIMIT_MB;
  if (!mem) r.notes.push(`memory target missed: ${peakMb.toFixed(1)} MB`);
  settle(r, speed && mem, problems);
  return r;
}

// ------------------------------------------------------------------------------------------ 4

function mergeQemu(raw: any[]): MapExtent[] {
  const out: MapExtent[] = [];
  for (const e of raw) {
    const last = out[out.length - 1];
    if (last && last.start + last.length === e.start && last.depth === e.depth && last.present === e.present && last.zero === e.zero && last.data === e.data) {
      last.length += e.length;
    } else out.push({ start: e.start, length: e.length, depth: e.depth, present: e.present, zero: e.zero, data: e.data });
  }
  return out;
}

function bench4(fx: Fixture<import('./fixtures.ts').AllocMeta>): Result {
  const m = fx.stamp.meta;
  const r = newResult(4, `allocation map of a 2-layer chain, 512 B clusters: forEachMapExtent + JSON vs qemu-img map --output=json`, 'ratio <= 1.0 (no slower)');
  const top = path.join(fx.dir, m.top);
  const qemuArgs = ['map', '--output=json', top];

  const collect = () => {
    const chain = openChain(top);
    try {
      const out: MapExtent[] = [];
      forEachMapExtent(chain, (e) => out.push(e));
      return out;
    } finally {
      chain.close();
    }
  };

  // Agreement check (untimed): QEMU's extents merged by (depth, present, zero, data) must equal ours.
  const problems: string[] = [];
  const mine = collect();
  const qemuOut = timedRun('qemu-img', qemuArgs);
  const theirs = mergeQemu(JSON.parse(qemuOut.stdout.toString('utf8')));
  if (mine.length !== theirs.length) problems.push(`${mine.length} extents vs QEMU ${theirs.length} (merged)`);
  for (let i = 0; i < Math.min(mine.length, theirs.length); i++) {
    const a = mine[i];
    const b = theirs[i];
    if (a.start !== b.start || a.length !== b.length || a.depth !== b.depth || a.present !== b.present || a.zero !== b.zero || a.data !== b.data) {
      problems.push(`first difference at extent ${i}: ${JSON.stringify(a)} vs QEMU ${JSON.stringify(b)}`);
      break;
    }
  }
  const cs = 512;
  let present = 0;
  for (const e of mine) if (e.present && e.depth < 2) present += e.length;
  r.extra.extents = mine.length;
  r.extra.allocatedClusters = present / cs;
  r.extra.qemuJsonBytes = qemuOut.stdout.length;
  r.extra.strataJsonBytes = JSON.stringify(mine).length;
  r.notes.push(`${mine.length} extents, ${present / cs} clusters allocated in the chain (${m.layers.map((l) => `${l.name}: ${l.writtenClusters} written`).join(', ')})`);

  const splitMap: number[] = [];
  progress(r, 'measuring ...');
  const { s, q } = interleave({
    strata: () => {
      const t0 = performance.now();
      const out = collect();
      const t1 = performance.now();
      JSON.stringify(out);
      const ms = performance.now() - t0;
      splitMap.push(t1 - t0);
      return ms;
    },
    qemu: () => timedRun('qemu-img', qemuArgs).ms,
    notes: r.notes,
  });
  r.strataRuns = s;
  r.qemuRuns = q;
  const mapMs = median(splitMap);
  r.extra.strataSplitMs = { map: round(mapMs), stringify: round(median(s) - mapMs) };
  r.notes.push(`Strata split: open + forEachMapExtent ~${fmtMs(mapMs)}, JSON.stringify ~${fmtMs(median(s) - mapMs)}`);
  settle(r, median(s) / median(q) <= 1.0, problems);
  return r;
}

// ------------------------------------------------------------------------------------------ main

async function main(): Promise<number> {
  const started = performance.now();
  const tools: Record<string, string> = {};
  for (const t of ['qemu-img', 'qemu-io', 'qemu-nbd']) tools[t] = toolVersion(t);
  log(`Strata benchmarks — ${os.cpus().length} CPUs, node ${process.version}, ${tools['qemu-img']}`);
  log(`medians of interleaved runs (${FAST_RUNS} for 1 and 2, ${RUNS} for 3 and 4) after one warm-up each; 5: ${QMP_BLOCKS} x ${QMP_CALLS_PER_BLOCK} calls a side`);
  const loadStart = os.loadavg();
  log(`load average ${loadStart.map((x) => x.toFixed(2)).join(' ')}${loadStart[0] > 0.5 ? ' (other work is running: timings are noisier)' : ''}\n`);

  const fixtures: Record<string, { dir: string; built: boolean; buildMs: number; builtAt: string; meta: unknown }> = {};
  const note = (name: string, f: Fixture<unknown>) => {
    fixtures[name] = { dir: path.relative(ROOT, f.dir), built: f.built, buildMs: round(f.stamp.buildMs), builtAt: f.stamp.builtAt, meta: f.stamp.meta };
    log(`fixture ${name}: ${f.built ? 'built now' : 'cached'} (build took ${(f.stamp.buildMs / 1000).toFixed(1)} s on ${f.stamp.builtAt})`);
  };

  const results: Result[] = [];
  const guarded = async (id: number, name: string, fn: () => Result | Promise<Result>) => {
    if (!only.includes(id)) return;
    log(`\n[${id}] ${name}`);
    let r: Result;
    try {
      r = await fn();
    } catch (e) {
      r = newResult(id, name, '-');
      r.error = (e as Error).stack ?? String(e);
    }
    results.push(r);
    printOne(r);
  };

  let chain: Fixture<import('./fixtures.ts').ChainMeta> | null = null;
  const getChain = () => {
    if (!chain) {
      chain = ensureChain(log);
      note('chain64', chain);
    }
    return chain;
  };
  await guarded(1, 'inspect() in-process vs qemu-img info --backing-chain', () => bench1(getChain()));
  await guarded(2, 'strata inspect --json vs qemu-img info --backing-chain', () => bench2(getChain()));
  await guarded(3, '1 TiB bitmap contents vs qemu-nbd + qemu-img map', () => {
    const f = ensureBitmap(log);
    note('bitmap1t', f);
    return bench3(f);
  });
  await guarded(4, 'allocation map vs qemu-img map', () => {
    const f = ensureAlloc(log);
    note('allocmap', f);
    return bench4(f);
  });
  await guarded(5, "QMP round trip: Strata's QmpClient vs a raw-socket client", () => bench5({ blocks: QMP_BLOCKS, callsPerBlock: QMP_CALLS_PER_BLOCK }));
  await guarded(6, 'browser mode: job:progress event to the WebSocket client', () => bench6(STREAM));
  // 7-9 run as scripts of their own (whole CLI processes against whole QEMU tool processes).
  let backupFigures: any = null;
  const backupBench = () => (backupFigures ??= runScript('backup.ts', ['--runs=' + Math.min(RUNS, 5)]));
  await guarded(7, 'full backup of 1 GiB of data: strata backup --level copy vs qemu-img convert -O qcow2 + sync', () => {
    const f = backupBench();
    const r = pair(7, 'full backup', 'ratio <= 1.15 (durable copy vs durable copy)', f.copy.strata, f.copy.convertSync, 1.15, { strata: 'strata backup --level copy', qemu: 'qemu-img convert + sync' });
    r.notes.push(`qemu-img convert without a flush: ${fmtMs(median(f.copy.convert))} (ratio ${(r.strataMs! / median(f.copy.convert)).toFixed(2)})`);
    const pct = (ms: number) => `${((ms / f.inc.fullMs) * 100).toFixed(1)}%`;
    r.notes.push(
      `incremental after ${f.inc.changedMiB} MiB (1%) changed, median of ${f.inc.runs.with.length}: ${fmtMs(f.inc.incMs)} = ${pct(f.inc.incMs)} of a full backup's ${fmtMs(f.inc.fullMs)} (the faster of the level-full run and the copies' median; target <= 15%)` +
        (f.inc.incMsWithoutCa !== null ? `; without NODE_EXTRA_CA_CERTS (a user's desktop), median of ${f.inc.runs.without.length}: ${fmtMs(f.inc.incMsWithoutCa)} = ${pct(f.inc.incMsWithoutCa)}` : '') +
        `; file ${f.inc.incFileMiB.toFixed(1)} MiB`,
    );
    r.notes.push(`verify of that incremental: ${fmtMs(f.verify.incMs)}; of the full: ${fmtMs(f.verify.fullMs)}`);
    if (f.big) {
      const ratio = median(f.big.strata) / median(f.big.convertSync);
      r.notes.push(`full copy of ${f.big.dataMiB} MiB of data (${f.big.path} path, median of ${f.big.strata.length}): ${fmtMs(median(f.big.strata))} vs convert + sync ${fmtMs(median(f.big.convertSync))}, ratio ${ratio.toFixed(2)} (runs ${f.big.strata.map(fmtMs).join(', ')} / ${f.big.convertSync.map(fmtMs).join(', ')})`);
    }
    return r;
  });
  await guarded(8, 'restore of an incremental: strata restore vs qemu-img convert of the backup chain + sync', () => {
    const f = backupBench();
    // Durable against durable, as in 7: strata restore flushes the file before naming it; a plain convert leaves it in the page cache.
    const r = pair(8, 'restore', 'ratio <= 1.15 (durable restore vs durable copy)', f.restore.strata, f.restore.convertSync, 1.15, { strata: 'strata restore', qemu: 'qemu-img convert + sync' });
    r.notes.push(`qemu-img convert of the chain without a flush: ${fmtMs(median(f.restore.convert))} (ratio ${(r.strataMs! / median(f.restore.convert)).toFixed(2)})`);
    return r;
  });
  await guarded(9, 'repair of an untracked overlay (1 TiB, 16384 runs): strata repair --yes vs qemu-img map', () => {
    const f = runScript('repair.ts', ['--runs=' + Math.min(RUNS, 5)]);
    return pair(9, 'repair', 'ratio <= 1.0', f.strata, f.qemu, 1.0, { strata: 'strata repair --yes', qemu: 'qemu-img map --output=json' });
  });

  const rows = results.map((r) => [
    String(r.id),
    r.strataMs === null ? '-' : fmtMs(r.strataMs),
    r.qemuMs === null ? '-' : fmtMs(r.qemuMs),
    r.ratio === null ? '-' : r.ratio.toFixed(3),
    r.speedup === null ? '-' : `${r.speedup.toFixed(2)}x`,
    `${r.strataRuns.length}/${r.qemuRuns.length}`,
    r.target,
    r.status,
  ]);
  log('\nSummary (ratio = Strata time / QEMU time; speed-up = QEMU / Strata; 5: QmpClient vs raw socket; 6: event latency)\n');
  log(table(['#', 'Strata', 'QEMU', 'ratio', 'speed-up', 'runs S/Q', 'target', 'result'], rows));
  for (const r of results) log(`  ${r.id}: ${r.name}`);
  const totalS = (performance.now() - started) / 1000;
  const loadEnd = os.loadavg();
  log(`\ntotal ${totalS.toFixed(1)} s; load average at start ${loadStart[0].toFixed(2)}, at end ${loadEnd[0].toFixed(2)} (${os.cpus().length} CPUs)`);

  const errors = results.filter((r) => r.status === 'ERROR');
  fs.mkdirSync(CACHE, { recursive: true });
  const out = path.join(CACHE, 'last-run.json');
  const json = {
    at: new Date().toISOString(),
    host: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.release()}` },
    loadAverage: { start: loadStart.map((x) => round(x)), end: loadEnd.map((x) => round(x)) },
    tools,
    runsPerSide: { benchmarks1and2: FAST_RUNS, benchmarks3and4: RUNS, benchmark5: { blocks: QMP_BLOCKS, callsPerBlock: QMP_CALLS_PER_BLOCK } },
    stream6: STREAM,
    totalSeconds: round(totalS, 1),
    fixtures,
    results: results.map((r) => ({
      ...r,
      strataMs: r.strataMs === null ? null : round(r.strataMs, 3),
      qemuMs: r.qemuMs === null ? null : round(r.qemuMs, 3),
      ratio: r.ratio === null ? null : round(r.ratio, 4),
      speedup: r.speedup === null ? null : round(r.speedup, 2),
      strataRuns: r.strataRuns.map((x) => round(x, 3)),
      qemuRuns: r.qemuRuns.map((x) => round(x, 3)),
    })),
  };
  fs.writeFileSync(out, JSON.stringify(json, null, 2) + '\n');
  log(`written ${path.relative(ROOT, out)}`);
  if (errors.length) log(`\n${errors.length} benchmark(s) failed: ${errors.map((r) => r.id).join(', ')}`);
  return errors.length ? 1 : 0;
}

/** Runs a benchmark script of its own (its output shown as it goes) and answers the figures it wrote. */
function runScript(script: string, args: string[]): any {
  const out = path.join(CACHE, `${script}.json`);
  fs.mkdirSync(CACHE, { recursive: true });
  fs.rmSync(out, { force: true });
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/bench', script), ...args], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, BENCH_JSON: out } });
  if (r.status !== 0 || !fs.existsSync(out)) throw new Error(`test/bench/${script} failed (exit ${r.status})`);
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

function pair(id: number, name: string, target: string, strata: number[], qemu: number[], maxRatio: number, labels: Result['labels']): Result {
  const r = newResult(id, name, target);
  r.strataRuns = strata;
  r.qemuRuns = qemu;
  r.labels = labels;
  settle(r, median(strata) / median(qemu) <= maxRatio, []);
  return r;
}

function printOne(r: Result): void {
  if (r.status === 'ERROR' && r.strataMs === null) {
    log(`  ERROR: ${r.error}`);
    return;
  }
  const fmtRuns = (xs: number[]) => (xs.length > 40 ? `${xs.length} samples` : xs.map((x) => fmtMs(x)).join(', '));
  const a = r.labels?.strata ?? 'Strata';
  const b = r.labels?.qemu ?? 'QEMU';
  const w = Math.max(a.length, b.length);
  log(`  ${a.padEnd(w)} ${fmtMs(r.strataMs!)}  (runs: ${fmtRuns(r.strataRuns)})`);
  if (r.qemuMs !== null) {
    log(`  ${b.padEnd(w)} ${fmtMs(r.qemuMs)}  (runs: ${fmtRuns(r.qemuRuns)})`);
    log(`  ratio ${r.ratio!.toFixed(3)}, speed-up ${r.speedup!.toFixed(2)}x — target: ${r.target} — ${r.status}`);
  } else log(`  target: ${r.target} — ${r.status}`);
  for (const n of r.notes) log(`  · ${n}`);
  if (r.error) log(`  ERROR: ${r.error}`);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  },
);

