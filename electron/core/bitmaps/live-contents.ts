// A bitmap's contents read from a running QEMU, leaving nothing behind.
//
//   1. query-named-block-nodes: the node and the bitmap exist; an inconsistent bitmap is refused
//      (its bits cannot be trusted) and a busy one too (QEMU would refuse to read it).
//   2. One `transaction`: a transient, disabled copy (same granularity) + a merge of the bitmap
//      into it. A read-only export cannot carry an enabled (recording) bitmap, and exporting a
//      copy never makes the user's own bitmap busy; the copy is also a point-in-time snapshot.
//   3. nbd-server-start on a private UNIX socket (QEMU has at most one NBD server), a read-only
//      block-export-add carrying the copy, NBD block status on qemu:dirty-bitmap:COPY.
//   4. finally, in reverse: block-export-del (hard: the export and the socket are ours) and wait
//      for BLOCK_EXPORT_DELETED (the export keeps the copy busy until it is really gone),
//      block-dirty-bitmap-remove of the copy, nbd-server-stop, remove the private folder.
//
// An NBD server that is already running is not used: QEMU 7.2 cannot say where it listens
// (there is no query for it), and stopping or re-addressing someone else's server (libvirt's
// backup, a migration) would break them. So that case is refused with NbdServerRunningError.
// Temporary names start with `strata-show-PID-` so a leftover (a killed Strata) is recognisable.
// One server is provably Strata's own leftover, and is reclaimed: when every export it has is a
// `strata-show-PID-` export of a Strata that is no longer running. Strata adds an export only to a
// server it has just started itself, and nbd-server-stop closes every NBD export (measured on QEMU
// 7.2: BLOCK_EXPORT_DELETED for each before it returns), so while such an export exists, the server
// has not been stopped since that Strata started it. A server with no export proves nothing (a
// Strata killed between its start and its export, or someone else's): it stays refused.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import { QmpExecuteError } from '../qmp/errors.ts';
import { NbdClient } from '../nbd/client.ts';
import { ExtentBuilder, type ExtentList } from '../extents.ts';
import { StrataError } from '../errors.ts';
import { processAlive } from '../processes.ts';

import { SHOW_COPY_PREFIX } from './temporary.ts';

/** the names of the copies a live read makes start with this */
export const TEMP_PREFIX = SHOW_COPY_PREFIX;

/** QEMU already runs an NBD server (someone else's); Strata will neither reuse nor stop it. */
export class NbdServerRunningError extends StrataError {
  readonly socket: string;
  constructor(socket: string) {
    super(
      'E_UNSUPPORTED',
      `${socket}: this QEMU already runs an NBD server (a backup, a migration or another tool started it); QEMU allows only one and ` +
        'cannot tell where it listens, so Strata does not touch it: read the bitmap when that server has been stopped',
      { file: socket },
    );
    this.name = 'NbdServerRunningError';
    this.socket = socket;
  }
}

export interface LiveBitmapContents {
  node: string;
  /** the node's file name (what the offline reader calls the layer) */
  file: string;
  name: string;
  granularity: number;
  recording: boolean;
  persistent: boolean;
  /** the exported node's size in bytes */
  virtualSize: number;
  extents: ExtentList;
}

export interface LiveReadOptions {
  /** a folder of Strata's own; the private NBD socket goes in a fresh folder under it */
  runtimeDir: string;
  /** how the QMP socket is named in messages (defaults to the client's path) */
  where?: string;
  /** aborting stops the read and still cleans up */
  signal?: AbortSignal;
  /** every QMP step with its time, for tests and the benchmark */
  trace?: (step: string, ms: number) => void;
  /** ms to wait for BLOCK_EXPORT_DELETED */
  exportGoneTimeoutMs?: number;
}

// sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH = 107;

function privateSocketDir(runtimeDir: string): { dir: string; socket: string } {
  fs.mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  let dir = fs.mkdtempSync(path.join(runtimeDir, `nbd-${process.pid}-`));
  if (Buffer.byteLength(path.join(dir, 'nbd.sock')) > MAX_SOCKET_PATH) {
    // A deep data dir: a UNIX socket path that long cannot be bound. The system temp dir instead.
    fs.rmSync(dir, { recursive: true, force: true });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `strata-nbd-${process.pid}-`));
  }
  fs.chmodSync(dir, 0o700);
  return { dir, socket: path.join(dir, 'nbd.sock') };
}

/** The pid in a live read's temporary name (`strata-show-PID-…`), else null. */
function ownerOf(name: unknown): number | null {
  const m = typeof name === 'string' && name.startsWith(TEMP_PREFIX) ? /^(\d+)-/.exec(name.slice(TEMP_PREFIX.length)) : null;
  return m ? Number(m[1]) : null;
}

/**
 * The running NBD server, when it is provably the leftover of a killed Strata (see the top of this
 * file): stopped (which closes its exports), and the transient copies such Stratas left on any node
 * removed. Answers the exports it closed; empty when the server is not provably a leftover, and then
 * nothing was changed.
 */
async function reclaimLeftoverServer(qmp: QmpClient, where: string): Promise<string[]> {
  const exports = ((await qmp.execute('query-block-exports')) as { id: string; type: string }[]).filter((x) => x.type === 'nbd');
  const leftover = (id: string) => {
    const pid = ownerOf(id);
    return pid !== null && pid !== process.pid && !processAlive(pid);
  };
  if (!exports.length || !exports.every((x) => leftover(x.id))) return [];
  await qmp.execute('nbd-server-stop');
  for (const n of await queryNamedNodes(qmp, where)) {
    for (const b of (n['dirty-bitmaps'] ?? []) as { name?: string; persistent?: boolean }[]) {
      if (b.persistent !== true && leftover(String(b.name))) {
        // best effort: a copy that stays is a transient bitmap QEMU drops when it exits
        await qmp.execute('block-dirty-bitmap-remove', { node: n['node-name'], name: b.name }).catch(() => {});
      }
    }
  }
  return exports.map((x) => x.id);
}

function uniqueName(): string {
  return `${TEMP_PREFIX}${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Prefix a QMP error with the file it is about (the CLI prints one line naming the file). */
function about(file: string, e: unknown): unknown {
  if (e instanceof QmpExecuteError) return new StrataError('E_QMP_EXECUTE', `${file}: ${e.message}`, { file, cause: e });
  return e;
}

export async function readLiveBitmap(qmp: QmpClient, node: string, name: string, opts: LiveReadOptions): Promise<LiveBitmapContents> {
  const r = await readLiveNode(qmp, node, { bitmaps: [name] }, opts);
  const b = r.bitmaps[0];
  return { node, file: r.file, name, granularity: b.granularity, recording: b.recording, persistent: b.persistent, virtualSize: r.virtualSize, extents: b.extents };
}

export interface LiveNodeContents {
  node: string;
  file: string;
  virtualSize: number;
  /** in the order asked for */
  bitmaps: { name: string; granularity: number; recording: boolean; persistent: boolean; extents: ExtentList }[];
  /** what this node itself defines (qemu:allocation-depth = 1), when asked for */
  allocation: ExtentList | null;
}

/**
 * Several bitmaps of one node, and optionally what the node itself allocates, read in one pass:
 * one transaction copies every bitmap (so all copies are of the same instant), one export carries
 * the copies and `allocation-depth`, one NBD connection reads them all.
 */
export async function readLiveNode(qmp: QmpClient, node: string, want: { bitmaps: string[]; allocation?: boolean }, opts: LiveReadOptions): Promise<LiveNodeContents> {
  const where = opts.where ?? qmp.path;
  const trace = opts.trace ?? (() => {});
  let t = performance.now();
  const step = (s: string) => {
    const now = performance.now();
    trace(s, now - t);
    t = now;
  };
  const what = want.bitmaps.length === 1 ? `bitmap '${want.bitmaps[0]}'` : `the contents of node '${node}'`;
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new StrataError('E_QMP_INTERRUPTED', `${where}: reading ${what} was interrupted`, { file: where });
  };

  // 1. what is there
  const nodes = await queryNamedNodes(qmp, where);
  const n = nodes.find((x) => x['node-name'] === node);
  if (!n) {
    const named = nodes.filter((x) => !String(x['node-name']).startsWith('#')).map((x) => `${x['node-name']} (${x.file})`);
    throw new StrataError('E_BAD_INPUT', `${where}: no block node named '${node}' (named nodes: ${named.join(', ') || 'none'})`, { file: where });
  }
  const file: string = n.file;
  const present: any[] = n['dirty-bitmaps'] ?? [];
  const found = want.bitmaps.map((name) => {
    const bm = present.find((b) => b.name === name);
    if (!bm) {
      const names = present.map((b) => b.name).filter((x) => typeof x === 'string' && !x.startsWith(TEMP_PREFIX));
      throw new StrataError('E_NO_BITMAP', `${file}: no bitmap named '${name}' on node '${node}' (it has: ${names.join(', ') || 'none'})`, { file });
    }
    if (bm.inconsistent === true) {
      throw new StrataError(
        'E_CHECKPOINT_UNKNOWN',
        `${file}: bitmap '${name}' is inconsistent (it was in-use on disk when QEMU opened the image: its last writer did not store it, e.g. after a crash); ` +
          'its contents cannot be trusted: remove it and start a new checkpoint',
        { file },
      );
    }
    if (bm.busy === true) {
      throw new StrataError('E_BAD_INPUT', `${file}: bitmap '${name}' is busy (an export or a job is using it); QEMU will not copy it until that ends`, { file });
    }
    return { name, granularity: bm.granularity as number, recording: bm.recording === true, persistent: bm.persistent === true, copy: uniqueName() };
  });
  const virtualSize: number = n.image?.['virtual-size'] ?? 0;
  step('query-named-block-nodes');
  checkAbort();

  // 2. disabled transient copies, atomically
  if (found.length) {
    try {
      await qmp.execute('transaction', {
        actions: found.flatMap((b) => [
          { type: 'block-dirty-bitmap-add', data: { node, name: b.copy, granularity: b.granularity, persistent: false, disabled: true } },
          { type: 'block-dirty-bitmap-merge', data: { node, target: b.copy, bitmaps: [b.name] } },
        ]),
      });
    } catch (e) {
      throw about(file, e);
    }
    step('transaction (add copy + merge)');
  }
  const exportId = found[0]?.copy ?? uniqueName();

  const left: string[] = [];
  let primary: unknown = null;
  let result: LiveNodeContents | null = null;
  let sock: { dir: string; socket: string } | null = null;
  let serverStarted = false;
  let exportAdded = false;
  let nbd: NbdClient | null = null;
  let nbdClosing: Promise<void> | null = null;
  // Closing the connection makes a pending block status fail at once; then the cleanup runs.
  const closeNbd = () => (nbd ? (nbdClosing ??= nbd.close().catch(() => {})) : Promise.resolve());
  const onAbort = () => void closeNbd();
  opts.signal?.addEventListener('abort', onAbort);
  try {
    checkAbort();
    // 3. our own NBD server, a read-only export of the copies, block status
    sock = privateSocketDir(opts.runtimeDir);
    const startServer = () => qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: sock!.socket } } });
    try {
      try {
        await startServer();
      } catch (e) {
        if (!(e instanceof QmpExecuteError && /already running/i.test(e.desc))) throw e;
        const reclaimed = await reclaimLeftoverServer(qmp, where);
        if (!reclaimed.length) throw new NbdServerRunningError(where);
        step(`reclaimed the NBD server a killed Strata left (${reclaimed.join(', ')})`);
        await startServer();
      }
    } catch (e) {
      if (e instanceof NbdServerRunningError) throw e;
      if (e instanceof QmpExecuteError && /already running/i.test(e.desc)) throw new NbdServerRunningError(where);
      if (e instanceof QmpExecuteError && /denied|permission/i.test(e.desc)) {
        throw new StrataError('E_QMP_EXECUTE', `${where}: QEMU cannot create a socket in ${sock.dir} (${e.desc}); is it running as another user?`, { file: where, cause: e });
      }
      throw about(file, e);
    }
    serverStarted = true;
    step('nbd-server-start');
    checkAbort();
    try {
      await qmp.execute('block-export-add', {
        type: 'nbd',
        id: exportId,
        'node-name': node,
        name: exportId,
        writable: false,
        bitmaps: found.map((b) => b.copy),
        ...(want.allocation ? { 'allocation-depth': true } : {}),
      });
    } catch (e) {
      throw about(file, e);
    }
    exportAdded = true;
    step('block-export-add');
    checkAbort();
    const contexts = found.map((b) => `qemu:dirty-bitmap:${b.copy}`);
    if (want.allocation) contexts.push('qemu:allocation-depth');
    nbd = await NbdClient.open(sock.socket, exportId, contexts);
    step('NBD handshake');
    const out: LiveNodeContents['bitmaps'] = [];
    for (const b of found) {
      checkAbort();
      const eb = new ExtentBuilder();
      await nbd.blockStatus(`qemu:dirty-bitmap:${b.copy}`, (off, len, flags) => {
        if (flags & 1) eb.push(off, off + len);
      });
      out.push({ name: b.name, granularity: b.granularity, recording: b.recording, persistent: b.persistent, extents: eb.finish() });
    }
    let allocation: ExtentList | null = null;
    if (want.allocation) {
      checkAbort();
      const eb = new ExtentBuilder();
      // allocation-depth: 0 = unallocated, 1 = this node, N = the (N-1)th backing below it
      await nbd.blockStatus('qemu:allocation-depth', (off, len, depth) => {
        if (depth === 1) eb.push(off, off + len);
      });
      allocation = eb.finish();
    }
    checkAbort();
    step('NBD block status');
    result = { node, file, virtualSize: nbd.export?.size ?? virtualSize, bitmaps: out, allocation };
  } catch (e) {
    primary = opts.signal?.aborted ? new StrataError('E_QMP_INTERRUPTED', `${where}: reading ${what} was interrupted`, { file: where }) : e;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    // 4. undo, in reverse; every step is tried even if an earlier one failed
    await closeNbd();
    if (exportAdded) {
      const gone = qmp.waitEvent((ev) => ev.event === 'BLOCK_EXPORT_DELETED' && (ev.data as { id?: string } | undefined)?.id === exportId, opts.exportGoneTimeoutMs ?? 10000);
      gone.catch(() => {}); // observed below; never an unhandled rejection if the del fails
      try {
        await qmp.execute('block-export-del', { id: exportId, mode: 'hard' });
        await gone;
        step('block-export-del + BLOCK_EXPORT_DELETED');
      } catch (e) {
        left.push(`export '${exportId}' (${(e as Error).message})`);
      }
    }
    for (const b of found) {
      try {
        await qmp.execute('block-dirty-bitmap-remove', { node, name: b.copy });
        step('block-dirty-bitmap-remove');
      } catch (e) {
        left.push(`transient bitmap '${b.copy}' on node '${node}' (${(e as Error).message})`);
      }
    }
    if (serverStarted) {
      try {
        await qmp.execute('nbd-server-stop');
        step('nbd-server-stop');
      } catch (e) {
        left.push(`the NBD server on ${sock?.socket} (${(e as Error).message})`);
      }
    }
    if (sock) fs.rmSync(sock.dir, { recursive: true, force: true });
  }
  if (primary && left.length) {
    const code = primary instanceof StrataError ? primary.code : 'E_INTERNAL';
    throw new StrataError(code, `${(primary as Error).message}; cleaning up also failed, left behind: ${left.join('; ')}`, { file: where, cause: primary });
  }
  if (primary) throw primary;
  if (left.length) {
    throw new StrataError('E_QMP_EXECUTE', `${where}: the contents were read, but cleaning up failed; left behind: ${left.join('; ')}`, { file: where });
  }
  return result!;
}
