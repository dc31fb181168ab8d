// Benchmark fixtures, made with the real QEMU tools and cached under .bench-cache/<name>/.
// Each folder carries stamp.json (generator version, parameters, qemu-img version); a folder whose
// stamp does not match what this file would build is rebuilt. Builds go to a temporary folder that is
// renamed into place only when complete, so an interrupted build is never mistaken for a fixture.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CACHE, prng, run, toolVersion } from './util.ts';

export interface Stamp<M> {
  name: string;
  version: number;
  params: unknown;
  qemu: string;
  meta: M;
  buildMs: number;
  builtAt: string;
}

export interface Fixture<M> {
  dir: string;
  stamp: Stamp<M>;
  /** true when built by this run, false when reused from the cache */
  built: boolean;
}

interface Spec<M> {
  name: string;
  /** bump whenever the generator changes what it writes */
  version: number;
  params: unknown;
  build(dir: string, log: (s: string) => void): M;
}

function sameStamp(a: Stamp<unknown>, name: string, version: number, params: unknown, qemu: string): boolean {
  return a.name === name && a.version === version && a.qemu === qemu && JSON.stringify(a.params) === JSON.stringify(params);
}

function ensure<M>(spec: Spec<M>, log: (s: string) => void): Fixture<M> {
  const qemu = toolVersion('qemu-img');
  const dir = path.join(CACHE, spec.name);
  const stampFile = path.join(dir, 'stamp.json');
  if (fs.existsSync(stampFile)) {
    try {
      const stamp = JSON.parse(fs.readFileSync(stampFile, 'utf8')) as Stamp<M>;
      if (sameStamp(stamp, spec.name, spec.version, spec.params, qemu)) return { dir, stamp, built: false };
      log(`fixture ${spec.name}: generator or QEMU changed, rebuilding`);
    } catch {
      log(`fixture ${spec.name}: unreadable stamp, rebuilding`);
    }
  }
  fs.mkdirSync(CACHE, { recursive: true });
  // Leftovers of interrupted builds (their process is gone).
  for (const e of fs.readdirSync(CACHE)) {
    const m = e.startsWith(`${spec.name}.tmp-`) ? Number(e.slice(spec.name.length + 5)) : NaN;
    if (m > 0 && !fs.existsSync(`/proc/${m}`)) fs.rmSync(path.join(CACHE, e), { recursive: true, force: true });
  }
  const tmp = path.join(CACHE, `${spec.name}.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  log(`fixture ${spec.name}: building with ${qemu} ...`);
  const t0 = performance.now();
  let meta: M;
  try {
    meta = spec.build(tmp, log);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const buildMs = performance.now() - t0;
  const stamp: Stamp<M> = { name: spec.name, version: spec.version, params: spec.params, qemu, meta, buildMs, builtAt: new Date().toISOString() };
  fs.writeFileSync(path.join(tmp, 'stamp.json'), JSON.stringify(stamp, null, 2) + '\n');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  log(`fixture ${spec.name}: built in ${(buildMs / 1000).toFixed(1)} s`);
  return { dir, stamp, built: true };
}

// ---------------------------------------------------------------------------------------------
// Feeding qemu-io a script on stdin: one process for hundreds of thousands of commands.
// Measured on 2 cores (QEMU 7.2): 197k `write -z` commands take ~63 s with the default cache mode
// (flushes), ~5 s with `-t unsafe`. With 512 B clusters, ~20 s -> ~9 s by turning off the metadata
// overlap checks (qcow2_check_metadata_overlap was 17% of the profile) and a small L2 cache (the
// cache lookup is a linear scan), -> ~5.4 s adding `-i io_uring`. The images are byte-identical.

let ioUringOk: boolean | null = null;

function probeIoUring(dir: string): boolean {
  if (ioUringOk !== null) return ioUringOk;
  const probe = path.join(dir, 'probe.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', probe, '1M']);
  const r = spawnSync('qemu-io', ['-i', 'io_uring', '-f', 'qcow2', '-c', 'read -q 0 512', probe], { encoding: 'utf8' });
  fs.rmSync(probe, { force: true });
  ioUringOk = r.status === 0 && !r.stdout.trim() && !r.stderr.trim();
  return ioUringOk;
}

/** Runs `cmds` through one qemu-io process on `image` (a name relative to `dir`); returns its wall time. */
export function qemuIoScript(dir: string, image: string, cmds: string[], l2Cache = '1M'): number {
  const args = ['-t', 'unsafe'];
  if (probeIoUring(dir)) args.push('-i', 'io_uring');
  args.push('--image-opts', `driver=qcow2,file.filename=${image},overlap-check=none,l2-cache-size=${l2Cache}`);
  const t0 = performance.now();
  const r = spawnSync('qemu-io', args, { cwd: dir, input: cmds.join('\n') + '\nquit\n', encoding: 'utf8', maxBuffer: 1 << 30 });
  const ms = performance.now() - t0;
  if (r.error) throw new Error(`qemu-io: ${r.error.message}`);
  // Every command is -q, so anything but prompts is an error message (qemu-io exits 0 regardless).
  const noise = (r.stdout ?? '').replaceAll('qemu-io> ', '').trim();
  if (r.status !== 0 || noise || (r.stderr ?? '').trim()) {
    throw new Error(`qemu-io ${args.join(' ')} failed (${r.status}): ${(r.stderr + '\n' + noise).trim().slice(0, 2000)}`);
  }
  return ms;
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: a chain of 64 small layers, each with a few writes and one recording bitmap.

export interface ChainMeta {
  top: string;
  layers: number;
  writes: number;
}

const CHAIN_PARAMS = { layers: 64, size: 64 * 1024 * 1024, clusterSize: 65536, writesPerLayer: 3, seed: 64 };

export const chainSpec: Spec<ChainMeta> = {
  name: 'chain64',
  version: 1,
  params: CHAIN_PARAMS,
  build(dir) {
    const p = CHAIN_PARAMS;
    const rnd = prng(p.seed);
    const clusters = p.size / p.clusterSize;
    const name = (i: number) => `layer${String(i).padStart(2, '0')}.qcow2`;
    let writes = 0;
    for (let i = 0; i < p.layers; i++) {
      const f = name(i);
      const backing = i === 0 ? [] : ['-b', name(i - 1), '-F', 'qcow2']; // relative: the folder is renamed after the build
      run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${p.clusterSize}`, ...backing, f, String(p.size)], { cwd: dir });
      run('qemu-img', ['bitmap', '--add', '-g', String(p.clusterSize), f, `cp${i}`], { cwd: dir });
      const cmds: string[] = [];
      for (let w = 0; w < p.writesPerLayer; w++) {
        const len = 1 + Math.floor(rnd() * 4);
        const at = Math.floor(rnd() * (clusters - len));
        cmds.push('-c', `write -q -P 0x${(0x10 + ((i * 7 + w) % 0xe0)).toString(16)} ${at * p.clusterSize} ${len * p.clusterSize}`);
        writes++;
      }
      run('qemu-io', ['-f', 'qcow2', ...cmds, f], { cwd: dir });
    }
    return { top: name(p.layers - 1), layers: p.layers, writes };
  },
};

// ---------------------------------------------------------------------------------------------
// 3: 1 TiB virtual, 64 KiB-granularity persistent bitmap, ~10% dirty in scattered runs.
// Runs of 1..16 clusters separated by gaps of 1..152 clusters (means 8.5 and 76.5: 10% dirty),
// dirtied with `write -z` (metadata only: the file stays ~130 MiB) issued in ascending order.

export interface BitmapMeta {
  image: string;
  bitmap: string;
  runs: number;
  dirtyClusters: number;
  dirtyBytes: number;
  dirtyFraction: number;
  qemuIoMs: number;
  fileBytes: number;
}

const BITMAP_PARAMS = { size: 2 ** 40, clusterSize: 65536, granularity: 65536, gapMax: 152, runMax: 16, seed: 1 };

export const bitmapSpec: Spec<BitmapMeta> = {
  name: 'bitmap1t',
  version: 1,
  params: BITMAP_PARAMS,
  build(dir, log) {
    const p = BITMAP_PARAMS;
    const image = 'disk.qcow2';
    const bitmap = 'dirty';
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${p.clusterSize}`, image, String(p.size)], { cwd: dir });
    run('qemu-img', ['bitmap', '--add', '-g', String(p.granularity), image, bitmap], { cwd: dir });
    const rnd = prng(p.seed);
    const total = p.size / p.granularity;
    const cmds: string[] = [];
    let pos = 0;
    let dirty = 0;
    for (;;) {
      pos += 1 + Math.floor(rnd() * p.gapMax);
      const len = 1 + Math.floor(rnd() * p.runMax);
      if (pos + len > total) break;
      cmds.push(`write -q -z ${pos * p.granularity} ${len * p.granularity}`);
      dirty += len;
      pos += len;
    }
    log(`  ${cmds.length} write -z commands (${dirty} clusters) through one qemu-io ...`);
    const qemuIoMs = qemuIoScript(dir, image, cmds, '32M');
    log(`  qemu-io took ${(qemuIoMs / 1000).toFixed(1)} s`);
    return {
      image,
      bitmap,
      runs: cmds.length,
      dirtyClusters: dirty,
      dirtyBytes: dirty * p.granularity,
      dirtyFraction: dirty / total,
      qemuIoMs,
      fileBytes: fs.statSync(path.join(dir, image)).size,
    };
  },
};

// ---------------------------------------------------------------------------------------------
// 4: allocation map with > 1 M allocated clusters. 512 B clusters keep the files small (~130 MiB):
// a base and an overlay, 1 GiB virtual each, runs of 1..8 clusters, 1 in 8 runs real data, the rest
// zero clusters (`write -z`), so the map mixes data/zero/unallocated at depths 0, 1 and none.

export interface AllocMeta {
  top: string;
  base: string;
  layers: { name: string; commands: number; writtenClusters: number; qemuIoMs: number }[];
  /** clusters written, summed over layers (they overlap) */
  writtenClusters: number;
}

const ALLOC_PARAMS = {
  size: 2 ** 30,
  clusterSize: 512,
  layers: [
    { seed: 11, gapMax: 9, runMax: 8, dataFraction: 0.125 },
    { seed: 12, gapMax: 40, runMax: 8, dataFraction: 0.125 },
  ],
};

export const allocSpec: Spec<AllocMeta> = {
  name: 'allocmap',
  version: 1,
  params: ALLOC_PARAMS,
  build(dir, log) {
    const p = ALLOC_PARAMS;
    const names = ['base.qcow2', 'top.qcow2'];
    const total = p.size / p.clusterSize;
    const layers: AllocMeta['layers'] = [];
    for (let i = 0; i < p.layers.length; i++) {
      const lp = p.layers[i];
      const backing = i === 0 ? [] : ['-b', names[i - 1], '-F', 'qcow2'];
      run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${p.clusterSize}`, ...backing, names[i], String(p.size)], { cwd: dir });
      const rnd = prng(lp.seed);
      const cmds: string[] = [];
      let pos = 0;
      let alloc = 0;
      for (;;) {
        pos += Math.floor(rnd() * lp.gapMax);
        const len = 1 + Math.floor(rnd() * lp.runMax);
        if (pos + len > total) break;
        const data = rnd() < lp.dataFraction;
        const off = pos * p.clusterSize;
        const bytes = len * p.clusterSize;
        cmds.push(data ? `write -q -P 0x${(0x10 + (cmds.length % 0xe0)).toString(16)} ${off} ${bytes}` : `write -q -z ${off} ${bytes}`);
        alloc += len;
        pos += len;
      }
      log(`  ${names[i]}: ${cmds.length} writes (${alloc} clusters) through one qemu-io ...`);
      const qemuIoMs = qemuIoScript(dir, names[i], cmds);
      log(`  qemu-io took ${(qemuIoMs / 1000).toFixed(1)} s`);
      layers.push({ name: names[i], commands: cmds.length, writtenClusters: alloc, qemuIoMs });
    }
    return { top: names[names.length - 1], base: names[0], layers, writtenClusters: layers.reduce((n, l) => n + l.writtenClusters, 0) };
  },
};

export const ensureChain = (log: (s: string) => void) => ensure(chainSpec, log);
export const ensureBitmap = (log: (s: string) => void) => ensure(bitmapSpec, log);
export const ensureAlloc = (log: (s: string) => void) => ensure(allocSpec, log);
