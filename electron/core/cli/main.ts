// `strata`: the command-line face of the core. Exit 0 on success, 2 on bad input (one line naming
// the file), 1 only for a bug. JSON shapes are stable and documented in the README.
import path from 'node:path';
import { parseArgs } from './args.ts';
import { humanBytes, table, writeExtentsJson, writeExtentsText } from './format.ts';
import { Out } from './output.ts';
import { inspect } from '../inspect.ts';
import { openChain, bitmapExtents, type Chain } from '../qcow2/chain.ts';
import { bitmapFlags } from '../inspect.ts';
import { ChainContents, since } from '../checkpoints.ts';
import { forEachMapExtent } from '../chain-map.ts';
import { totalBytes } from '../extents.ts';
import { StrataError } from '../errors.ts';
import { VERSION } from '../version.ts';

// Commands that change images or read the history load SQLite and sockets; the read-only
// commands must not pay for that at start-up, so those modules are loaded on demand.
const CHANGE_COMMANDS = ['add', 'remove', 'enable', 'disable', 'clear', 'merge'];

const HELP: Record<string, string> = {
  main: `strata ${VERSION}: qcow2 backing chains, their checkpoints (dirty bitmaps) and what they hold

Usage: strata <command> [options]

Commands:
  inspect IMAGE               the backing chain, every layer and every bitmap
  bitmap show IMAGE NAME      the areas one bitmap marks as changed
  bitmap show NAME --socket PATH --node NODE
                              the same, read live from a running QEMU (leaves nothing behind)
  since IMAGE CHECKPOINT      the areas changed since a checkpoint, across the chain
  map IMAGE                   which layer defines each area (like qemu-img map)

  bitmap add|remove|enable|disable|clear TARGET NAME [--yes]
  bitmap merge TARGET DEST SRC... [--yes]
                              change bitmaps; without --yes only prints the plan (the QMP)
  TARGET is an IMAGE (opened in Strata's own qemu-storage-daemon) or --socket PATH --node NODE
  (a running QEMU).
  commit TOP [--top L] [--base L] [--scheme seed|libvirt] [--yes]
                              commit the top into its backing, keeping every checkpoint
  repair IMAGE [--yes]        what breaks the chain's checkpoints, and the plan that repairs it
  snapshot IMAGE NEW_TOP [--checkpoint NAME] [--yes]
  snapshot --socket PATH --node NODE NEW_TOP [--new-node NAME] [--checkpoint NAME] [--yes]
                              a new overlay on IMAGE (or live, on a running disk) that keeps every checkpoint
  stream TOP [--base LAYER] [--yes]
  stream --socket PATH --node NODE [--base LAYER] [--yes]
                              pull the backing data into TOP, carrying the checkpoints
  backup IMAGE --repo DIR [--level full|inc|diff|copy] [--since NAME] [--compress] [--dry-run]
                              back up a disk into a repository folder (QEMU copies the data)
  backups --repo DIR          the backups in a repository, oldest first
  restore --repo DIR ID --to PATH [--format qcow2|raw] [--force]
                              restore a backup to a new standalone image
  verify --repo DIR [ID]      check backup files, backing links and the digests of their data
  prune --repo DIR --keep-last N [--keep-daily N] [--keep-weekly N] [--yes]
                              remove backups the policy does not keep (plan without --yes)
  history                     every change Strata made, with its plan and the QMP exchanged
  jobs                        the block jobs Strata recorded
  jobs --socket PATH          the jobs of a running QEMU now: state, progress, allowed verbs

inspect, bitmap show, since, map and jobs change nothing (bitmap show --socket adds a temporary
copy and export to that QEMU and removes them). Every command takes --json and --help.
Exit status: 0 success, 2 bad input (the message names the file), 1 internal error.`,
  inspect: `Usage: strata inspect IMAGE [--json]

Shows the backing chain of IMAGE, top layer first: format, sizes, backing file and every
persistent dirty bitmap with its flags (auto = recording, in-use = inconsistent or held by a
running QEMU) and how many bytes it marks; then every checkpoint and whether
"changes since" it can be known.`,
  'bitmap show': `Usage: strata bitmap show IMAGE NAME [--layer PATH] [--json]
       strata bitmap show NAME --socket PATH --node NODE [--json]

Lists the byte ranges of the virtual disk marked dirty in bitmap NAME. The layer is the
topmost one holding NAME unless --layer names a layer of the chain.

With --socket, reads bitmap NAME of block node NODE in a running QEMU (QMP socket PATH): a
disabled transient copy is exported read-only over a private NBD socket (in $STRATA_HOME/run),
read, and removed again with the export and the NBD server. Refused: an inconsistent bitmap, a
busy one, and a QEMU that already runs an NBD server (QEMU allows one and cannot say where it
listens). QEMU serves one client per monitor: close other clients of PATH first. The --json
shape is the offline one; "layer" is the node's file.`,
  since: `Usage: strata since IMAGE CHECKPOINT [--json]

Lists the byte ranges changed since CHECKPOINT: the union across all layers of the
checkpoint's bitmap and of every bitmap created after it. Exits 2 with the reasons when
the answer cannot be known (an in-use bitmap, a layer without bitmaps, ...).`,
  map: `Usage: strata map IMAGE [--json]

For each area of the virtual disk, the depth of the layer that defines it (0 = top) and
whether it reads as data or as zeroes; the meaning of qemu-img map --output=json.`,
};

function usage(cmd: string): never {
  throw new StrataError('E_BAD_INPUT', `wrong arguments; see strata ${cmd} --help`);
}

function cmdInspect(argv: string[], out: Out): void {
  const a = parseArgs(argv, {});
  if (a.flags.has('help')) return out.write(HELP.inspect + '\n');
  if (a.positionals.length !== 1) usage('inspect');
  const r = inspect(a.positionals[0]);
  if (a.flags.has('json')) {
    const doc = {
      image: r.image,
      layers: r.layers.map((l) => ({
        path: l.path,
        format: l.format,
        virtualSize: l.virtualSize,
        clusterSize: l.clusterSize,
        backingFile: l.backingFile,
        backingFormat: l.backingFormat,
        allocatedBytes: l.allocatedBytes,
        bitmaps: l.bitmaps.map((b) => ({ name: b.name, granularity: b.granularity, flags: b.flags, dirtyBytes: b.dirtyBytes })),
      })),
      checkpoints: r.checkpoints.map((c) => ({ name: c.name, state: c.state, dirtyBytes: c.dirtyBytes, problems: c.problems })),
    };
    return out.write(JSON.stringify(doc, null, 2) + '\n');
  }
  out.write(`image: ${r.image}\n`);
  r.layers.forEach((l, depth) => {
    out.write(`\n[${depth}] ${l.path}${depth === 0 ? '  (active)' : ''}\n`);
    out.write(`    format ${l.format}${l.qcow2Version ? ` v${l.qcow2Version}` : ''}, virtual size ${humanBytes(l.virtualSize)} (${l.virtualSize} bytes)`);
    out.write(l.clusterSize ? `, cluster ${humanBytes(l.clusterSize)}${l.extendedL2 ? ' with subclusters' : ''}` : '');
    out.write(`, allocated ${humanBytes(l.allocatedBytes)}\n`);
    if (l.backingFile) out.write(`    backing: ${l.backingFile}${l.backingFormat ? ` (${l.backingFormat})` : ''}\n`);
    if (l.bitmapsStale) out.write('    warning: the bitmap directory is stale; QEMU will discard these bitmaps\n');
    for (const w of l.warnings) out.write(`    warning: is this a disk? ${w}\n`);
    if (l.bitmaps.length) {
      const rows = l.bitmaps.map((b) => [
        b.name,
        b.flags.includes('in-use') ? 'IN-USE' : b.flags.includes('auto') ? 'recording' : 'disabled',
        humanBytes(b.granularity),
        `${humanBytes(b.dirtyBytes)}`,
      ]);
      out.write(table(['bitmap', 'state', 'granularity', 'dirty'], rows).replace(/^/gm, '    ') + '\n');
    }
  });
  if (r.checkpoints.length) {
    out.write('\ncheckpoints (oldest first):\n');
    for (const c of r.checkpoints) {
      out.write(`  ${c.name}: ${c.state === 'ok' ? `changes since = ${humanBytes(c.dirtyBytes ?? 0)}` : 'UNKNOWN'}\n`);
      for (const p of c.problems) out.write(`    - ${p}\n`);
    }
  }
}

async function cmdBitmapShow(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { options: ['layer', 'socket', 'node'] });
  if (a.flags.has('help')) return out.write(HELP['bitmap show'] + '\n');
  // The live form needs sockets: loaded only when asked for.
  if (a.options.has('socket')) return (await import('./bitmap-live.ts')).cmdBitmapShowLive(a, out);
  if (a.options.has('node')) throw new StrataError('E_BAD_INPUT', '--node needs --socket PATH (a running QEMU); for an offline image use --layer');
  if (a.positionals.length !== 2) usage('bitmap show');
  const [image, name] = a.positionals;
  withChain(image, (chain) => {
    const want = a.options.get('layer');
    const layers = want ? chain.layers.filter((l) => l.path === path.resolve(want)) : chain.layers;
    if (want && layers.length === 0) {
      throw new StrataError('E_NO_LAYER', `${chain.image}: ${path.resolve(want)} is not a layer of this chain`, { file: chain.image });
    }
    const layer = layers.find((l) => l.bitmaps.some((b) => b.name === name));
    if (!layer) {
      throw new StrataError('E_NO_BITMAP', `${want ? path.resolve(want) : chain.image}: no bitmap named '${name}'${want ? '' : ' in any layer'}`, {
        file: chain.image,
      });
    }
    const bm = layer.bitmaps.find((b) => b.name === name)!;
    const ext = bitmapExtents(layer, bm);
    const dirty = totalBytes(ext);
    if (a.flags.has('json')) {
      out.write(`{\n  "layer": ${JSON.stringify(layer.path)},\n  "name": ${JSON.stringify(bm.name)},\n  "granularity": ${bm.granularity},\n`);
      out.write(`  "flags": ${JSON.stringify(bitmapFlags(bm))},\n  "dirtyBytes": ${dirty},\n  "extents": `);
      writeExtentsJson(out, ext);
      return out.write('\n}\n');
    }
    out.write(`bitmap '${bm.name}' in ${layer.path}\n`);
    out.write(`  ${bitmapFlags(bm).join(', ') || 'disabled'}, granularity ${humanBytes(bm.granularity)}, dirty ${humanBytes(dirty)} in ${ext.count} extents\n\n`);
    if (bm.inUse) out.write('  warning: marked in-use: inconsistent after a crash, or held by a running QEMU\n\n');
    writeExtentsText(out, ext);
  });
}

function withChain(image: string, fn: (c: Chain) => void): void {
  const c = openChain(image);
  try {
    fn(c);
  } finally {
    c.close();
  }
}

function cmdSince(argv: string[], out: Out): void {
  const a = parseArgs(argv, {});
  if (a.flags.has('help')) return out.write(HELP.since + '\n');
  if (a.positionals.length !== 2) usage('since');
  const [image, checkpoint] = a.positionals;
  withChain(image, (chain) => {
    const r = since(new ChainContents(chain), checkpoint);
    if (!r.extents) {
      throw new StrataError('E_CHECKPOINT_UNKNOWN', `${chain.image}: changes since '${checkpoint}' cannot be known: ${r.problems.join('; ')}`, {
        file: chain.image,
      });
    }
    const dirty = totalBytes(r.extents);
    if (a.flags.has('json')) {
      out.write(`{\n  "checkpoint": ${JSON.stringify(checkpoint)},\n  "sources": ${JSON.stringify(r.sources.map((s) => ({ layer: s.layer.path, bitmap: s.bitmap.name })))},\n`);
      out.write(`  "dirtyBytes": ${dirty},\n  "extents": `);
      writeExtentsJson(out, r.extents);
      return out.write('\n}\n');
    }
    out.write(`changes since checkpoint '${checkpoint}' in ${chain.image}: ${humanBytes(dirty)} in ${r.extents.count} extents\n`);
    out.write(`from: ${r.sources.map((s) => `${path.basename(s.layer.path)}/${s.bitmap.name}`).join(' + ')}\n\n`);
    writeExtentsText(out, r.extents);
  });
}

function cmdMap(argv: string[], out: Out): void {
  const a = parseArgs(argv, {});
  if (a.flags.has('help')) return out.write(HELP.map + '\n');
  if (a.positionals.length !== 1) usage('map');
  withChain(a.positionals[0], (chain) => {
    const json = a.flags.has('json');
    let first = true;
    if (json) out.write('[');
    else out.write(`${'start'.padStart(16)}  ${'length'.padStart(16)}  depth  kind   layer\n`);
    forEachMapExtent(chain, (e) => {
      if (json) {
        out.write(`${first ? '' : ',\n'}{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}}`);
      } else {
        const kind = !e.present ? 'hole' : e.data ? 'data' : 'zero';
        out.write(`${String(e.start).padStart(16)}  ${String(e.length).padStart(16)}  ${String(e.depth).padStart(5)}  ${kind.padEnd(5)}  ${path.basename(chain.layers[e.depth].path)}\n`);
      }
      first = false;
    });
    if (json) out.write(']\n');
  });
}

export async function main(argv: string[]): Promise<number> {
  const out = new Out();
  try {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') out.write(HELP.main + '\n');
    else if (cmd === '--version' || cmd === '-V') out.write(`strata ${VERSION}\n`);
    else if (cmd === 'inspect') cmdInspect(rest, out);
    else if (cmd === 'since') cmdSince(rest, out);
    else if (cmd === 'map') cmdMap(rest, out);
    else if (cmd === 'history') (await import('./history.ts')).cmdHistory(rest, out);
    else if (cmd === 'jobs') await (await import('./jobs.ts')).cmdJobs(rest, out);
    else if (cmd === 'commit') await (await import('./commit.ts')).cmdCommit(rest, out);
    else if (cmd === 'repair') await (await import('./repair.ts')).cmdRepair(rest, out);
    else if (cmd === 'snapshot') await (await import('./snapshot.ts')).cmdSnapshot(rest, out);
    else if (cmd === 'stream') await (await import('./stream.ts')).cmdStream(rest, out);
    else if (cmd === 'backup') await (await import('./backup.ts')).cmdBackup(rest, out);
    else if (cmd === 'backups') await (await import('./backup.ts')).cmdBackups(rest, out);
    else if (cmd === 'restore') await (await import('./backup.ts')).cmdRestore(rest, out);
    else if (cmd === 'verify') await (await import('./backup.ts')).cmdVerify(rest, out);
    else if (cmd === 'prune') await (await import('./backup.ts')).cmdPrune(rest, out);
    else if (cmd === 'bitmap') {
      const [sub, ...more] = rest;
      if (sub === 'show') await cmdBitmapShow(more, out);
      else if (sub !== undefined && CHANGE_COMMANDS.includes(sub)) {
        const m = await import('./bitmap-change.ts');
        await m.cmdBitmapChange(sub as keyof typeof m.BITMAP_CHANGE_HELP, more, out);
      } else if (sub === undefined || sub === '--help' || sub === '-h') {
        const m = await import('./bitmap-change.ts');
        out.write(HELP['bitmap show'] + '\n\n' + Object.values(m.BITMAP_CHANGE_HELP).join('\n\n') + '\n');
      }
      else throw new StrataError('E_BAD_INPUT', `unknown command 'bitmap ${sub}'; see strata --help`);
    } else throw new StrataError('E_BAD_INPUT', `unknown command '${cmd}'; see strata --help`);
    out.flush();
    return 0;
  } catch (e) {
    out.flush();
    if (e instanceof StrataError && e.code !== 'E_INTERNAL') {
      process.stderr.write(`strata: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`strata: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

