// Fuzz loop run in its own process by corrupt.test.ts, so that a hang can be detected and killed
// and memory measured without the test runner's own allocations. Not a test file by itself.
//
// argv[2]: JSON {seed, count, images: [path...]}. Each image is mutated in memory (1..3 seeded
// mutations aimed at the structures the qcow2 spec defines), written next to the original (so a
// relative backing name still resolves), then read through inspect() plus bitmapExtents() for every
// bitmap and the chain map. Anything but success or a StrataError is reported.
// stdout: one JSON line before each iteration {"i", "desc"}, then a final {"done": true, ...}.
import fs from 'node:fs';
import path from 'node:path';
import { inspect } from '../../electron/core/inspect.ts';
import { withChain, bitmapExtents } from '../../electron/core/qcow2/chain.ts';
import { forEachMapExtent } from '../../electron/core/chain-map.ts';
import { StrataError } from '../../electron/core/errors.ts';
import { rng, randInt, qcow2Layout, HDR, type Rng, type Qcow2Layout } from '../helpers/image-gen.ts';

const cfg = JSON.parse(process.argv[2]) as { seed: number; count: number; images: string[] };
const r = rng(cfg.seed);

interface Source {
  path: string;
  buf: Buffer;
  layout: Qcow2Layout;
  /** offsets worth hitting: every field the spec defines that the image uses */
  targets: { at: number; width: 1 | 2 | 4 | 8; what: string }[];
}

function targetsOf(L: Qcow2Layout): Source['targets'] {
  const t: Source['targets'] = [];
  const add = (at: number, width: 1 | 2 | 4 | 8, what: string) => t.push({ at, width, what });
  add(HDR.magic, 4, 'magic');
  add(HDR.version, 4, 'version');
  add(HDR.backingOffset, 8, 'backing offset');
  add(HDR.backingSize, 4, 'backing size');
  add(HDR.clusterBits, 4, 'cluster bits');
  add(HDR.size, 8, 'virtual size');
  add(HDR.cryptMethod, 4, 'crypt method');
  add(HDR.l1Size, 4, 'l1 size');
  add(HDR.l1Offset, 8, 'l1 offset');
  if (L.version >= 3) {
    add(HDR.incompatible, 8, 'incompatible');
    add(HDR.autoclear, 8, 'autoclear');
    add(96, 4, 'refcount order');
    add(HDR.headerLength, 4, 'header length');
    add(104, 1, 'compression type');
  }
  for (const e of L.extensions) {
    add(e.at, 4, `ext 0x${e.type.toString(16)} type`);
    add(e.at + 4, 4, `ext 0x${e.type.toString(16)} length`);
  }
  if (L.bitmapsExt) {
    add(L.bitmapsExt.at, 4, 'nb bitmaps');
    add(L.bitmapsExt.at + 8, 8, 'bitmap dir size');
    add(L.bitmapsExt.at + 16, 8, 'bitmap dir offset');
  }
  for (const b of L.bitmaps) {
    add(b.at, 8, `${b.name} table offset`);
    add(b.at + 8, 4, `${b.name} table size`);
    add(b.at + 12, 4, `${b.name} flags`);
    add(b.at + 16, 1, `${b.name} type`);
    add(b.at + 17, 1, `${b.name} granularity bits`);
    add(b.at + 18, 2, `${b.name} name size`);
    add(b.at + 20, 4, `${b.name} extra size`);
    add(b.at + 24 + b.extraSize, 1, `${b.name} name`);
    for (let k = 0; k < b.tableSize; k++) add(b.tableOffset + k * 8, 8, `${b.name} table[${k}]`);
    for (const d of b.dataClusters) add(d, 4, `${b.name} data`);
  }
  for (let i = 0; i < L.l1Size; i++) add(L.l1Offset + i * 8, 8, `L1[${i}]`);
  for (const l2 of L.l2Offsets) for (let k = 0; k < 16; k++) add(l2 + k * 8, 8, `L2@${l2}[${k}]`);
  if (L.backingOffset) add(L.backingOffset, 1, 'backing name');
  return t.filter((x) => x.at + x.width <= L.fileSize);
}

const sources: Source[] = cfg.images.map((p) => {
  const buf = fs.readFileSync(p);
  const layout = qcow2Layout(buf);
  return { path: p, buf, layout, targets: targetsOf(layout) };
});

function interesting64(r: Rng, s: Source): bigint {
  const cs = BigInt(s.layout.clusterSize);
  const size = BigInt(s.layout.fileSize);
  const picks: bigint[] = [
    0n,
    1n,
    size,
    size + cs,
    (size / cs + 1n) * cs,
    cs,
    2n ** 53n,
    2n ** 62n,
    2n ** 63n,
    2n ** 64n - 1n,
    0x8000000000000000n | cs,
    0x8000000000000000n | ((size / cs + 3n) * cs),
    0x4000000000000000n | BigInt(randInt(r, 0, Number(size))),
    BigInt(randInt(r, 0, 0xffffffff)) * cs,
    BigInt(randInt(r, 0, Number(size))),
  ];
  return picks[randInt(r, 0, picks.length - 1)];
}

function interesting32(r: Rng): number {
  const picks = [0, 1, 2, 3, 4, 8, 9, 16, 21, 22, 31, 32, 40, 64, 0x7fffffff, 0x80000000, 0xffffffff, 0xffff, 0x10000, randInt(r, 0, 0xffffffff)];
  return picks[randInt(r, 0, picks.length - 1)] >>> 0;
}

function mutate(s: Source): { buf: Buffer; desc: string[] } {
  let buf = Buffer.from(s.buf);
  const desc: string[] = [];
  const n = randInt(r, 1, 3);
  for (let k = 0; k < n; k++) {
    const kind = randInt(r, 0, 9);
    if (kind === 9) {
      const cut = randInt(r, 0, buf.length - 1);
      buf = buf.subarray(0, cut);
      desc.push(`truncate at ${cut}`);
      continue;
    }
    if (kind === 8) {
      const at = randInt(r, 0, buf.length - 1);
      const v = randInt(r, 0, 255);
      buf[at] = v;
      desc.push(`byte @${at} = ${v}`);
      continue;
    }
    const t = s.targets[randInt(r, 0, s.targets.length - 1)];
    if (t.at + t.width > buf.length) continue;
    if (kind <= 2) {
      const bit = randInt(r, 0, t.width * 8 - 1);
      buf[t.at + (bit >> 3)] ^= 1 << (bit & 7);
      desc.push(`${t.what}: flip bit ${bit}`);
    } else if (t.width === 8) {
      const v = interesting64(r, s);
      buf.writeBigUInt64BE(v & 0xffffffffffffffffn, t.at);
      desc.push(`${t.what} = 0x${v.toString(16)}`);
    } else if (t.width === 4) {
      const v = interesting32(r);
      buf.writeUInt32BE(v, t.at);
      desc.push(`${t.what} = 0x${v.toString(16)}`);
    } else if (t.width === 2) {
      const v = [0, 1, 3, 1023, 1024, 0xffff][randInt(r, 0, 5)];
      buf.writeUInt16BE(v, t.at);
      desc.push(`${t.what} = ${v}`);
    } else {
      const v = [0, 1, 8, 9, 31, 32, 40, 63, 255][randInt(r, 0, 8)];
      buf[t.at] = v;
      desc.push(`${t.what} = ${v}`);
    }
  }
  return { buf, desc };
}

const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const rssStart = process.memoryUsage().rss;
let rssMax = rssStart;
let ok = 0;
const codes: Record<string, number> = {};
const bad: { i: number; desc: string[]; error: string }[] = [];
let slowest = { i: -1, ms: 0 };

for (let i = 0; i < cfg.count; i++) {
  const s = sources[i % sources.length];
  const { buf, desc } = mutate(s);
  const file = path.join(path.dirname(s.path), `fuzz-${path.basename(s.path)}`);
  fs.writeFileSync(file, buf);
  out({ i, desc });
  const t0 = performance.now();
  try {
    inspect(file);
    withChain(file, (c) => {
      for (const l of c.layers) for (const bm of l.bitmaps) bitmapExtents(l, bm);
      let n = 0;
      forEachMapExtent(c, () => n++);
    });
    ok++;
  } catch (e) {
    if (e instanceof StrataError) {
      codes[e.code] = (codes[e.code] ?? 0) + 1;
      if (e.file !== undefined && !e.message.includes(e.file)) bad.push({ i, desc, error: `StrataError whose message does not name its file ${e.file}: ${e.message}` });
    } else {
      bad.push({ i, desc, error: e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e) });
    }
  }
  const ms = performance.now() - t0;
  if (ms > slowest.ms) slowest = { i, ms };
  rssMax = Math.max(rssMax, process.memoryUsage().rss);
}
out({ done: true, ok, codes, bad, rssStart, rssMax, slowest });
