// strata bitmap show NAME --socket S --node N: a bitmap's contents read from a running QEMU (over a
// private NBD export of a transient copy, removed again before the command ends). Loaded on demand:
// it needs sockets, the offline form does not.
import path from 'node:path';
import type { Parsed } from './args.ts';
import type { Out } from './output.ts';
import { humanBytes, writeExtentsJson, writeExtentsText } from './format.ts';
import { QmpClient } from '../qmp/client.ts';
import { readLiveBitmap, type LiveBitmapContents } from '../bitmaps/live-contents.ts';
import { totalBytes } from '../extents.ts';
import { defaultDataDir } from '../paths.ts';
import { StrataError } from '../errors.ts';

/** Runs `fn` with an AbortSignal that SIGINT/SIGTERM trip, so an interrupted read still cleans up. */
async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(sig === 'SIGINT' ? 130 : 143); // a second signal: give up now
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(ac.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function cmdBitmapShowLive(a: Parsed, out: Out): Promise<void> {
  const socket = path.resolve(a.options.get('socket')!);
  const node = a.options.get('node');
  if (!node) throw new StrataError('E_BAD_INPUT', `${socket}: --socket needs --node NODE (the block node holding the bitmap)`, { file: socket });
  if (a.options.has('layer')) throw new StrataError('E_BAD_INPUT', '--layer is for an offline IMAGE; with --socket, --node names the node');
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata bitmap show --help');
  const name = a.positionals[0];
  const qmp = await QmpClient.connect(socket, { connectTimeoutMs: 3000 });
  let r: LiveBitmapContents;
  try {
    r = await withInterrupt((signal) => readLiveBitmap(qmp, node, name, { runtimeDir: path.join(defaultDataDir(), 'run'), where: socket, signal }));
  } finally {
    await qmp.close();
  }
  const flags = r.recording ? ['auto'] : [];
  const dirty = totalBytes(r.extents);
  if (a.flags.has('json')) {
    // The offline `bitmap show --json` shape, key for key.
    out.write(`{\n  "layer": ${JSON.stringify(r.file)},\n  "name": ${JSON.stringify(r.name)},\n  "granularity": ${r.granularity},\n`);
    out.write(`  "flags": ${JSON.stringify(flags)},\n  "dirtyBytes": ${dirty},\n  "extents": `);
    writeExtentsJson(out, r.extents);
    return out.write('\n}\n');
  }
  out.write(`bitmap '${r.name}' on node '${r.node}' (${r.file}), live from ${socket}\n`);
  out.write(
    `  ${r.recording ? 'recording' : 'disabled'}, ${r.persistent ? 'persistent' : 'transient'}, granularity ${humanBytes(r.granularity)}, ` +
      `dirty ${humanBytes(dirty)} in ${r.extents.count} extents\n\n`,
  );
  writeExtentsText(out, r.extents);
}
