// Child process for benchmark 3's memory figure: reads one bitmap's contents the way the app does
// (openChain + bitmapExtents + totalBytes) and reports its own peak resident memory (VmHWM).
// Usage: node --import tsx test/bench/bitmap-child.ts IMAGE BITMAP
import { openChain, findBitmap, bitmapExtents } from '../../electron/core/qcow2/chain.ts';
import { totalBytes } from '../../electron/core/extents.ts';
import { readVmStatus } from './util.ts';

const [image, name] = process.argv.slice(2);
if (!image || !name) {
  process.stderr.write('usage: bitmap-child.ts IMAGE BITMAP\n');
  process.exit(2);
}
const before = readVmStatus(); // node + tsx + the reader's modules loaded, nothing read yet
const t0 = performance.now();
const chain = openChain(image);
let count: number;
let dirtyBytes: number;
try {
  const layer = chain.layers[0];
  const bm = findBitmap(layer, name);
  if (!bm) throw new Error(`${image}: no bitmap '${name}'`);
  const l = bitmapExtents(layer, bm);
  count = l.count;
  dirtyBytes = totalBytes(l);
} finally {
  chain.close();
}
const ms = performance.now() - t0;
const after = readVmStatus();
process.stdout.write(
  JSON.stringify({
    ms,
    count,
    dirtyBytes,
    rssBeforeKb: before.vmRssKb,
    hwmBeforeKb: before.vmHwmKb,
    rssAfterKb: after.vmRssKb,
    hwmKb: after.vmHwmKb,
    maxRssKb: process.resourceUsage().maxRSS,
  }) + '\n',
);
