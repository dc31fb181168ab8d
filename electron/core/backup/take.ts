// Taking a backup, push mode: QEMU moves the data (blockdev-backup into a qcow2 target node) in
// Strata's own storage daemon for an offline image. The target file is made first under a
// temporary name (an inc/diff backed by its parent's file, by a relative name), the new checkpoint
// bitmap is added in the same transaction that starts the job, and only a completed job's file is
// fsynced, renamed to its final name and listed in the manifest. Anything else (failure, cancel,
// a crash: the journal is written before the first QMP command) is cleaned up: the partial file is
// deleted and the checkpoint bitmap it added is removed from the source.
import fs from 'node:fs';
import path from 'node:path';
import { StorageDaemon, TOP_NODE } from '../daemon/storage-daemon.ts';
import { JobEngine, type JobView } from '../jobs/engine.ts';
import { QmpClient } from '../qmp/client.ts';
import { plainFileOf } from '../qmp/named-nodes.ts';
import { withFrozenGuest } from './guest-agent.ts';
import { JobStore } from '../store/jobs.ts';
import { QmpTrafficLog } from '../store/qmp-traffic.ts';
import { openDb, type Db } from '../store/db.ts';
import { allocationExtents, withChain } from '../qcow2/chain.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { ChainContents, since } from '../checkpoints.ts';
import { union, totalBytes } from '../extents.ts';
import { StrataError } from '../errors.ts';
import { Repository, BackupJournal, syncCatalog, fsyncPath, type BackupEntry, type JournalRow } from './repository.ts';
import { isStorageDaemonFor, stopStorageDaemon } from '../processes.ts';
import { copyPath, resolveLevel, type CheckpointAnswer, type Level } from './rules.ts';
import { HashPool, guestPieces, recordDigests, worthAPool } from './verify.ts';
import { tool, type MapEntry } from './tools.ts';
import type { BackupTaken } from './contract.ts';
import { proveFromAllocation, type AllocationProof } from './allocation-proof.ts';
import { withLiveChain, liveOwnAllocation } from '../repair/live.ts';
import { backupNames, sweepLiveQemu, sweepRepository, sweepRuntime } from './leftovers.ts';
import { writeBitmapScratch } from '../repair/scratch.ts';
import { SCRATCH_BITMAP } from '../repair/plan.ts';
import type { ExtentList } from '../extents.ts';
import type { ContentSource } from '../contents/contract.ts';

export interface TakeOptions {
  /** an offline image (opened in Strata's own storage daemon)... */
  image?: string;
  /** ...or a running QEMU's disk: its QMP socket and the disk's top node */
  live?: { socket: string; node: string; qga?: string };
  repo: string;
  level: Level | null;
  since: string | null;
  compress: boolean;
  dryRun: boolean;
  dataDir: string;
  /** the catalog to use (the app's own connection); else dataDir/strata.db is opened and closed */
  db?: Db;
  signal?: AbortSignal;
  /** the job's rate limit in bytes/s (0 or absent: as fast as QEMU goes) */
  speed?: number;
  onProgress?: (job: JobView) => void;
  /** lines worth telling the user (a stale lock taken over, a crashed backup cleaned up) */
  onNote?: (line: string) => void;
  /** tests only: awaited at 'looked', 'bridge-recording', 'allocation-read' (a live proof) and 'transaction' */
  hook?: (point: 'looked' | 'bridge-recording' | 'allocation-read' | 'transaction') => void | Promise<void>;
}

/** strata backup --json's object (and backup:take's answer); dryRun only when nothing was written */
export function takenDoc(r: TakeResult): BackupTaken {
  const doc = { id: r.id, level: r.level, requested: r.requested, fallback: r.fallback, checkpoint: r.checkpoint, since: r.since, file: r.file, bytes: r.bytes, dirtyBytes: r.dirtyBytes, seconds: r.seconds, changesFrom: r.changesFrom };
  return r.dryRun ? { ...doc, dryRun: true as const, copies: r.copies ?? null } : doc;
}

export interface TakeResult {
  id: string;
  level: Level;
  requested: Level | null;
  fallback: string | null;
  checkpoint: string | null;
  since: string | null;
  file: string;
  bytes: number;
  dirtyBytes: number;
  seconds: number;
  /**
   * How the changes since the checkpoint were found: its bitmaps, or (an overlay made outside Strata,
   * a gap) the repair's allocation proof; null for a full or a copy
   */
  changesFrom: ChangesFrom | null;
  dryRun: boolean;
  /**
   * A dry run's "where": the inspector's sources whose union is what QEMU will copy (the bitmaps of
   * "changes since", the allocation of layers proven from allocation, every layer's allocation for a
   * full or a copy); null for a running VM (its bitmaps live in QEMU) and on a real run
   */
  copies?: ContentSource[] | null;
  notes: string[];
}

export type ChangesFrom = 'bitmaps' | 'allocation';

interface Resolved {
  level: Level;
  requested: Level | null;
  fallback: string | null;
  since: string | null;
  parent: string | null;
  dirtyBytes: number;
  virtualSize: number;
  /** the bitmaps making up "changes since", each by its layer's file (offline) or node (live) */
  sources: { layer?: string; node?: string; bitmap: string; granularity: number }[];
  /**
   * the rest of "changes since", proven from the allocation of layers no bitmap tracks; liveTop: the
   * running QEMU's top node is one of them, so its allocation is read again, live, at backup time
   */
  fromAllocation: { extents: ExtentList; granularity: number; layers: string[]; liveTop?: boolean } | null;
}

function checkDisk(repo: Repository, image: string, virtualSize: number): void {
  const disk = repo.manifest.disk;
  if (disk && disk.virtualSize !== virtualSize) {
    throw new StrataError('E_BAD_INPUT', `${image}: virtual size ${virtualSize} differs from the disk this repository backs up (${disk.image}, ${disk.virtualSize} bytes); one repository per disk`, { file: image });
  }
}

function levelOrThrow(repo: Repository, req: Parameters<typeof resolveLevel>[0]) {
  const r = resolveLevel(req);
  if (!r.ok) throw new StrataError('E_BAD_INPUT', `${repo.dir}: ${r.error}`, { file: repo.dir });
  return r;
}

/** What the chain defines (the union of every layer's allocation): what a full copies. */
function allocatedBytes(image: string): number {
  return withChain(image, (chain) => totalBytes(union(chain.layers.map((l) => allocationExtents(l)))));
}

/**
 * A running QEMU: its bitmaps on disk are in-use (stale), so the answer comes from QMP. A checkpoint
 * is usable when the disk's top node holds it recording, consistent and not busy: Strata's
 * checkpoints are added to the top node and record from then on, so it alone covers every write
 * since. Anything else (a new overlay on top, a disabled or inconsistent bitmap) is asked of the
 * repair's allocation proof, over the chain as that QEMU sees it (the top node read live, the layers
 * below, which it holds read-only, from their files); where that gives none, it is unknown.
 */
async function resolveLive(repo: Repository, qmp: QmpClient, node: string, level: Level | null, sinceName: string | null, runtimeDir: string, note: (s: string) => void): Promise<Resolved & { image: string }> {
  const nodes = await qmp.execute<any[]>('query-named-block-nodes', { flat: true });
  const n = nodes.find((x) => x['node-name'] === node);
  if (!n) throw new StrataError('E_BAD_INPUT', `${qmp.path}: no block node '${node}' (see query-named-block-nodes)`, { file: qmp.path });
  if (n.drv !== 'qcow2') throw new StrataError('E_NOT_QCOW2', `${qmp.path}: node '${node}' is ${n.drv}, not qcow2 (checkpoints are qcow2 bitmaps)`, { file: qmp.path });
  const file = plainFileOf(n);
  if (!file) throw new StrataError('E_UNSUPPORTED', `${qmp.path}: node '${node}' has no plain file name (${n.file})`, { file: qmp.path });
  const image = path.resolve(file);
  const virtualSize = n.image['virtual-size'] as number;
  checkDisk(repo, image, virtualSize);
  const bitmaps = (n['dirty-bitmaps'] ?? []) as any[];
  const onTop = (cp: string): CheckpointAnswer => {
    const b = bitmaps.find((x) => x.name === cp);
    if (!b) return { state: 'missing' };
    const problems = [
      ...(b.inconsistent ? [`bitmap '${cp}' on node ${node} is inconsistent`] : []),
      ...(!b.recording ? [`bitmap '${cp}' on node ${node} is disabled: writes since are not tracked`] : []),
      ...(b.busy ? [`bitmap '${cp}' on node ${node} is busy (in use by a job or an export)`] : []),
    ];
    return problems.length ? { state: 'unknown', problems } : { state: 'ok', dirtyBytes: b.count };
  };
  const points = repo.pointsOf(image);
  // The proofs are read once, only when a point's checkpoint is not usable on the top node as it is.
  const proofs = new Map<string, AllocationProof | null>();
  /** what the checkpoint math says over the whole live chain, where the top node alone cannot say */
  const chainSays = new Map<string, string[]>();
  let proofProblem: string | null = null;
  const asked = points.map((p) => p.checkpoint).filter((cp): cp is string => cp !== null && onTop(cp).state !== 'ok');
  if (asked.length && level !== 'full' && level !== 'copy') {
    try {
      await withLiveChain(qmp, { socket: qmp.path, node }, runtimeDir, ({ contents }) => {
        for (const cp of asked) {
          proofs.set(cp, proveFromAllocation(contents, cp));
          if (contents.chain.layers.some((l) => l.bitmaps.some((b) => b.name === cp))) chainSays.set(cp, since(contents, cp).problems);
        }
      });
    } catch (e) {
      proofProblem = `the allocation of node ${node} could not be read live: ${(e as Error).message}`;
      note(`no allocation proof for the checkpoints node ${node} does not hold: ${proofProblem}`);
    }
  }
  const answer = (cp: string): CheckpointAnswer => {
    const a = onTop(cp);
    if (a.state === 'ok') return a;
    const p = proofs.get(cp);
    if (p) return { state: 'ok', dirtyBytes: totalBytes(p.extents) };
    const problems = chainSays.get(cp);
    if (problems?.length) return { state: 'unknown', problems };
    if (a.state === 'unknown' && proofProblem) return { state: 'unknown', problems: [...a.problems, proofProblem] };
    return a;
  };
  const r = levelOrThrow(repo, { requested: level, since: sinceName, points, answer });
  if (r.since !== null) {
    const p = onTop(r.since).state === 'ok' ? null : proofs.get(r.since)!;
    if (p) {
      return { ...r, image, dirtyBytes: r.dirtyBytes ?? 0, virtualSize, sources: p.sources, fromAllocation: { extents: p.allocation, granularity: p.granularity, layers: p.layers, liveTop: p.layers.includes(image) } };
    }
    const b = bitmaps.find((x) => x.name === r.since);
    return { ...r, image, dirtyBytes: r.dirtyBytes ?? 0, virtualSize, sources: [{ node, bitmap: r.since, granularity: b.granularity }], fromAllocation: null };
  }
  return { ...r, image, dirtyBytes: allocatedBytes(image), virtualSize, sources: [], fromAllocation: null };
}

/** Reads the chain offline and applies the level rules. */
function resolve(repo: Repository, image: string, level: Level | null, sinceName: string | null): Resolved {
  const r = withChain(image, (chain) => {
    const virtualSize = chain.layers[0].virtualSize;
    if (chain.layers[0].format !== 'qcow2') throw new StrataError('E_NOT_QCOW2', `${image}: only qcow2 images can be backed up (checkpoints are qcow2 bitmaps)`, { file: image });
    checkDisk(repo, image, virtualSize);
    const contents = new ChainContents(chain);
    const answers = new Map<string, ReturnType<typeof since> | null>();
    const ask = (cp: string) => {
      if (!answers.has(cp)) answers.set(cp, chain.layers.some((l) => l.bitmaps.some((b) => b.name === cp)) ? since(contents, cp) : null);
      return answers.get(cp)!;
    };
    // Where the bitmaps cannot say, the repair's allocation proof may (one per checkpoint asked).
    const proofs = new Map<string, ReturnType<typeof proveFromAllocation>>();
    const proof = (cp: string) => {
      if (!proofs.has(cp)) proofs.set(cp, proveFromAllocation(contents, cp));
      return proofs.get(cp)!;
    };
    const answer = (cp: string): CheckpointAnswer => {
      const s = ask(cp);
      if (s === null) return { state: 'missing' };
      if (s.extents) return { state: 'ok', dirtyBytes: totalBytes(s.extents) };
      const p = proof(cp);
      return p ? { state: 'ok', dirtyBytes: totalBytes(p.extents) } : { state: 'unknown', problems: s.problems };
    };
    const r = levelOrThrow(repo, { requested: level, since: sinceName, points: repo.pointsOf(image), answer });
    if (r.since === null) return { ...r, dirtyBytes: 0, virtualSize, sources: [], fromAllocation: null };
    const s = ask(r.since)!;
    if (s.extents) {
      return { ...r, dirtyBytes: r.dirtyBytes ?? 0, virtualSize, sources: s.sources.map((x) => ({ layer: x.layer.path, bitmap: x.bitmap.name, granularity: x.bitmap.granularity })), fromAllocation: null };
    }
    const p = proof(r.since)!;
    return { ...r, dirtyBytes: r.dirtyBytes ?? 0, virtualSize, sources: p.sources, fromAllocation: { extents: p.allocation, granularity: p.granularity, layers: p.layers } };
  });
  return r.since === null ? { ...r, dirtyBytes: allocatedBytes(image) } : r;
}

/** What an offline backup copies, as the inspector's sources: their union is the data QEMU reads. */
function copiesOf(r: Resolved, image: string): ContentSource[] {
  if (r.since === null) return withChain(image, (chain) => chain.layers.map((l): ContentSource => ({ kind: 'allocation', layer: l.path })));
  return [
    ...r.sources.filter((x) => x.layer).map((x): ContentSource => ({ kind: 'bitmap', layer: x.layer!, name: x.bitmap })),
    ...(r.fromAllocation?.layers ?? []).map((layer): ContentSource => ({ kind: 'allocation', layer })),
  ];
}

const changesFromOf = (r: Resolved): ChangesFrom | null => (r.since === null ? null : r.fromAllocation ? 'allocation' : 'bitmaps');

/** Where the changes came from allocation, in words: which layers, and why that is a proof. */
function allocationNote(r: Resolved): string | null {
  if (!r.fromAllocation) return null;
  const names = r.fromAllocation.layers.map((l) => path.basename(l)).join(', ');
  return `changes since checkpoint '${r.since}' found from allocation: ${names} ${r.fromAllocation.layers.length === 1 ? 'has' : 'have'} no bitmap for it but ${r.fromAllocation.layers.length === 1 ? 'sits' : 'sit'} above the layers that do, so ${r.fromAllocation.layers.length === 1 ? 'it was' : 'they were'} created after it: everything allocated there (rounded out to the granularity) counts as written since; the image's bitmaps are not changed`;
}

async function bitmapGranularity(qmp: QmpClient, node: string, name: string): Promise<number | null> {
  const nodes = await qmp.execute<any[]>('query-named-block-nodes', { flat: true });
  const b = (nodes.find((x) => x['node-name'] === node)?.['dirty-bitmaps'] ?? []).find((x: any) => x.name === name);
  return typeof b?.granularity === 'number' ? b.granularity : null;
}

/**
 * The "guest" digests of an offline full or copy (verify.ts): every run of the source chain that
 * holds data, hashed from the layers' own files on `pool` while QEMU copies it. Only once Strata's
 * daemon holds the image: from then on nothing else writes it, and the job reads exactly these bytes.
 * Null when some data has no fixed place in a file (compressed clusters): the backup's own file is
 * hashed after the job instead.
 */
async function sourceDigests(image: string, pool: HashPool): Promise<Omit<BackupEntry['digests'], 'fileBytes'> | null> {
  const layers = withChain(image, (c) => c.layers.map((l) => l.path));
  const map = JSON.parse(await tool('qemu-img', ['map', '-U', '-f', 'qcow2', '--output=json', image], image)) as MapEntry[];
  const pieces = guestPieces(map, (depth) => layers[depth] ?? null);
  if (!pieces) return null;
  const hashes = await pool.hashPieces(pieces.map((p) => p.segs));
  const runs = pieces.map((p, i) => {
    if (hashes[i] === null) throw new StrataError('E_CORRUPT', `${image}: its map places disk bytes ${p.start}..${p.start + p.length} past the end of a layer's file`, { file: image });
    return { start: p.start, length: p.length, sha256: hashes[i]! };
  });
  return { algorithm: 'sha256', scheme: 'guest', runs, unverifiable: [] };
}

async function fsyncAsync(file: string): Promise<void> {
  const h = await fs.promises.open(file, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Removes what an unfinished backup left: its partial (or unlisted final) file and its checkpoint bitmap. */
export async function cleanupLeftovers(repo: Repository, row: Pick<JournalRow, 'image' | 'partial' | 'final' | 'checkpoint' | 'backupId'>): Promise<string[]> {
  const said = removeUnlistedFiles(repo, row);
  const listed = repo.manifest.backups.some((b) => repo.fileOf(b) === row.final);
  if (!fs.existsSync(row.image) || (await imageLockState(row.image)) === 'locked') return said;
  let top: { name: string; inUse: boolean }[] = [];
  try {
    top = withChain(row.image, (c) => c.layers[0].bitmaps.map((b) => ({ name: b.name, inUse: b.inUse })));
  } catch {
    return said;
  }
  if (!listed && row.checkpoint && top.some((b) => b.name === row.checkpoint)) {
    await tool('qemu-img', ['bitmap', '--remove', row.image, row.checkpoint], row.image);
    said.push(`removed checkpoint bitmap '${row.checkpoint}' from ${row.image}`);
  }
  // A QEMU killed while it had the image open leaves its bitmaps in-use: never to be trusted
  // again. Those that are this repository's checkpoints are removed (the next backup is a full,
  // saying why); other programs' bitmaps are left alone.
  const ours = new Set(repo.manifest.backups.map((b) => b.checkpoint));
  for (const b of top) {
    if (b.inUse && ours.has(b.name)) {
      await tool('qemu-img', ['bitmap', '--remove', row.image, b.name], row.image);
      said.push(`removed checkpoint bitmap '${b.name}' from ${row.image}: a killed QEMU left it in-use (inconsistent)`);
    }
  }
  return said;
}

/** An unfinished backup's files: its partial file, and its final one unless the manifest lists it. */
function removeUnlistedFiles(repo: Repository, row: Pick<JournalRow, 'partial' | 'final'>): string[] {
  const said: string[] = [];
  const listed = repo.manifest.backups.some((b) => repo.fileOf(b) === row.final);
  for (const f of listed ? [row.partial] : [row.partial, row.final]) {
    if (fs.existsSync(f)) {
      fs.rmSync(f, { force: true });
      said.push(`removed ${f}`);
    }
  }
  if (said.length) fsyncPath(repo.dir);
  return said;
}

/** A daemon a killed Strata left behind: SIGTERM (QEMU stores the bitmaps and frees the image). */
async function stopOrphan(pid: number | null, image: string): Promise<string | null> {
  if (!isStorageDaemonFor(pid, image)) return null;
  if (!(await stopStorageDaemon(pid!))) process.kill(pid!, 'SIGKILL');
  return `stopped the storage daemon (pid ${pid}) it left holding ${image}`;
}

async function recover(repo: Repository, journal: BackupJournal, note: (s: string) => void, live: { qmp: QmpClient; node: string } | null, runtimeDir: string): Promise<void> {
  for (const row of journal.unfinished(repo.dir)) {
    const stopped = await stopOrphan(row.daemonPid, row.image);
    const said = [...(stopped ? [stopped] : []), ...(await cleanupLeftovers(repo, row))];
    // A backup of a running VM: its checkpoint lives in that QEMU until it shuts down.
    if (live && row.checkpoint && !repo.manifest.backups.some((b) => b.checkpoint === row.checkpoint)) {
      const removed = await live.qmp.execute('block-dirty-bitmap-remove', { node: live.node, name: row.checkpoint }).then(() => true, () => false);
      if (removed) said.push(`removed checkpoint bitmap '${row.checkpoint}' from node ${live.node} of ${live.qmp.path}`);
    }
    journal.set(row.id, 'failed', `cleaned up at a later run: ${said.join('; ') || 'nothing was left'}`);
    note(`backup ${row.backupId} was interrupted (Strata or QEMU stopped mid-backup); ${said.length ? said.join('; ') : 'it left nothing behind'}`);
  }
  // What no journal row names: a killed backup's objects in the VM's QEMU, temporary files.
  const swept = [...(live ? await sweepLiveQemu(live.qmp) : []), ...sweepRepository(repo), ...sweepRuntime(runtimeDir)];
  if (swept.length) note(`left by interrupted backups: ${swept.join('; ')}`);
}

/**
 * For `strata backups` and the app's start: what interrupted backups of repository `dir` left is
 * removed where that writes no user's image: their daemons stopped (QEMU stores the bitmaps and
 * frees the image), their files and Strata's abandoned runtime entries removed. Their journal rows
 * stay unfinished, so the next backup still removes the checkpoint bitmaps they added (that writes
 * the disk, which only a backup is asked to do). Nothing while another Strata holds the lock.
 */
export async function tidyInterruptedBackups(db: Db | null, dir: string, runtimeDir: string): Promise<string[]> {
  const repo = Repository.open(dir);
  try {
    repo.lock();
  } catch (e) {
    if ((e as StrataError).code === 'E_BUSY') return [];
    throw e;
  }
  try {
    const said = repo.lockNote ? [repo.lockNote] : [];
    for (const row of db ? new BackupJournal(db).unfinished(repo.dir) : []) {
      const stopped = await stopOrphan(row.daemonPid, row.image);
      const files = removeUnlistedFiles(repo, row);
      if (stopped || files.length) said.push(`backup ${row.backupId} was interrupted: ${[...(stopped ? [stopped] : []), ...files].join('; ')} (its checkpoint bitmap, if any, is removed by the next backup)`);
    }
    return [...said, ...sweepRepository(repo), ...sweepRuntime(runtimeDir)];
  } finally {
    repo.unlock();
  }
}

export async function takeBackup(o: TakeOptions): Promise<TakeResult> {
  const t0 = performance.now();
  if (!o.image === !o.live) throw new StrataError('E_BAD_INPUT', 'name the disk either as an IMAGE or as --socket PATH --node NODE');
  const offline = o.image ? path.resolve(o.image) : null;
  if (offline && !fs.existsSync(offline)) throw new StrataError('E_NOT_FOUND', `${offline}: no such file`, { file: offline });
  const repo = Repository.open(o.repo, { create: true });
  const notes: string[] = [];
  const note = (s: string) => {
    notes.push(s);
    o.onNote?.(s);
  };
  // A running QEMU is reached over its QMP socket for the whole backup (also to look).
  const liveQmp = o.live ? await QmpClient.connect(path.resolve(o.live.socket)) : null;
  const node = o.live ? o.live.node : TOP_NODE;
  const decide = async () => (liveQmp ? resolveLive(repo, liveQmp, node, o.level, o.since, path.join(o.dataDir, 'run'), note) : { ...resolve(repo, offline!, o.level, o.since), image: offline! });
  if (o.dryRun) {
    try {
      const r = await decide();
      const said = allocationNote(r);
      if (said) note(said);
      const id = repo.nextId(r.level);
      return {
        id, level: r.level, requested: r.requested, fallback: r.fallback, checkpoint: r.level === 'copy' ? null : `(new, named at backup time)`, since: r.since,
        file: path.join(repo.dir, `${id}.qcow2`), bytes: 0, dirtyBytes: r.dirtyBytes, seconds: 0, changesFrom: changesFromOf(r), dryRun: true, copies: offline ? copiesOf(r, offline) : null, notes,
      };
    } finally {
      await liveQmp?.close();
    }
  }
  repo.lock();
  let db: Db | null = null;
  try {
    if (repo.lockNote) note(repo.lockNote);
    db = o.db ?? openDb(path.join(o.dataDir, 'strata.db'));
    const journal = new BackupJournal(db);
    await recover(repo, journal, note, liveQmp ? { qmp: liveQmp, node } : null, path.join(o.dataDir, 'run'));
    syncCatalog(db, repo);
    const r = await decide();
    await o.hook?.('looked');
    const said = allocationNote(r);
    if (said) note(said);
    const image = r.image;
    const id = repo.nextId(r.level);
    const final = path.join(repo.dir, `${id}.qcow2`);
    const partial = path.join(repo.dir, `.partial-${id}.qcow2`);
    const checkpoint = r.level === 'copy' ? null : `strata-${id}-${Date.now().toString(36)}`;
    const parent = r.parent ? repo.find(r.parent) : null;
    const createdAt = new Date().toISOString();
    const jid = journal.begin({ repo: repo.dir, backupId: id, image, partial, final, checkpoint });
    let daemon: StorageDaemon | null = null;
    let engine: JobEngine | null = null;
    // Strata's own daemon's QMP goes to the traffic log, and the backup job's record points at it.
    const traffic = liveQmp ? null : new QmpTrafficLog(db).open(`backup ${id} of ${image}`, `qemu-storage-daemon for ${image}`);
    const names = backupNames(process.pid, id, path.join(o.dataDir, 'run'));
    const jobId = names.job;
    let jobStarted = false;
    const { allocationScratch, allocationNode, bridge, target, merged: tmp } = names;
    let bridgeAdded = false;
    let hashPool: HashPool | null = null;
    // How the data reaches the disk, and where its digests come from (rules.ts copyPath).
    const fromSource = copyPath({ offline: !liveQmp, since: r.since, compress: o.compress === true }) === 'direct';
    let fromTheSource: Promise<Omit<BackupEntry['digests'], 'fileBytes'> | null> | null = null;
    let direct = false;
    /** the scratch has done its part once merged (in the transaction): its node closed, its file removed */
    const dropAllocationScratch = async (q: QmpClient | null | undefined) => {
      if (q) await q.execute('blockdev-del', { 'node-name': allocationNode }).catch(() => {});
      fs.rmSync(allocationScratch, { force: true });
    };
    const onAbort = () => {
      if (engine && jobStarted) void (liveQmp ?? daemon?.qmp)?.execute('job-cancel', { id: jobId }).catch(() => {});
    };
    o.signal?.addEventListener('abort', onAbort);
    try {
      // The daemon (which refuses an image another QEMU holds) and the target file start together:
      // the partial file is journaled already, so whichever fails, the clean-up below removes it.
      // A copy adds no checkpoint, so its daemon opens the image read-only: the image is left
      // byte for byte as it was (a read-write open marks its bitmaps in-use and stores them again).
      const create = ['create', '-q', '-f', 'qcow2'];
      if (parent) create.push('-b', parent.file, '-F', 'qcow2');
      const [started, created] = await Promise.allSettled([
        liveQmp ? Promise.resolve(null) : StorageDaemon.start({ image, runtimeDir: path.join(o.dataDir, 'run'), readOnly: r.level === 'copy', onTraffic: traffic?.sink }),
        tool('qemu-img', [...create, partial, String(r.virtualSize)], partial),
      ]);
      if (started.status === 'fulfilled' && started.value) {
        daemon = started.value;
        journal.setDaemon(jid, daemon.pid ?? null);
      }
      if (started.status === 'rejected') throw started.reason;
      if (created.status === 'rejected') throw created.reason;
      if (fromSource) {
        // Hashed beside the job, on threads of the lowest priority (QEMU's copy comes first).
        hashPool = new HashPool(undefined, { background: true });
        fromTheSource = sourceDigests(image, hashPool);
        fromTheSource.catch(() => {}); // awaited after the job; a failure then fails the backup
      }
      if (o.signal?.aborted) throw new StrataError('E_BAD_INPUT', `${image}: the backup was cancelled`, { file: image });
      const qmp = liveQmp ?? daemon!.qmp;
      engine = new JobEngine(qmp, { connection: qmp.path, store: new JobStore(db), session: traffic?.id ?? null, onUpdate: o.onProgress });
      const targetNode = (odirect: boolean) => ({
        driver: 'qcow2',
        'node-name': target,
        backing: null,
        cache: { 'no-flush': true },
        'detect-zeroes': 'unmap',
        discard: 'unmap',
        file: { driver: 'file', filename: partial, cache: { 'no-flush': true, direct: odirect } },
      });
      direct = fromSource;
      try {
        await qmp.execute('blockdev-add', targetNode(direct));
      } catch (e) {
        // A repository whose filesystem has no O_DIRECT (ramfs, tmpfs before Linux 6.6, some FUSE
        // mounts): through the page cache.
        if (!direct) throw e;
        direct = false;
        await qmp.execute('blockdev-add', targetNode(false));
        note(`${repo.dir}: its filesystem takes no O_DIRECT writes (${(e as Error).message}); the backup goes through the page cache`);
      }
      const actions: { type: string; data: Record<string, unknown> }[] = [];
      const granularity = r.sources[0]?.granularity ?? r.fromAllocation?.granularity;
      if (checkpoint) actions.push({ type: 'block-dirty-bitmap-add', data: { node, name: checkpoint, persistent: true, ...(granularity ? { granularity } : {}) } });
      const backup: Record<string, unknown> = { device: node, target, 'job-id': jobId, 'auto-dismiss': false, sync: 'full' };
      if (r.since !== null) {
        // Changes since the checkpoint: its bitmaps in every layer (the checkpoint math's sources),
        // merged into one transient bitmap on the top node inside the same transaction.
        const nodes = await qmp.execute<any[]>('query-named-block-nodes', { flat: true });
        const nodeOf = (src: Resolved['sources'][number]) => {
          if (src.node) return src.node;
          const layer = src.layer!;
          const n = nodes.find((x) => x.drv === 'qcow2' && plainFileOf(x) !== null && path.resolve(plainFileOf(x)!) === layer);
          if (!n) throw new StrataError('E_INTERNAL', `${image}: layer ${layer} is not open in the storage daemon`, { file: image });
          return n['node-name'] as string;
        };
        const merged: { node: string; name: string }[] = r.sources.map((s) => ({ node: nodeOf(s), name: s.bitmap }));
        const grans = r.sources.map((s) => s.granularity);
        if (r.fromAllocation) {
          // The allocation proof's part: a new scratch qcow2 Strata writes in its own folder, holding
          // only a bitmap of those extents, opened read-only in the daemon and merged like the others.
          const a = r.fromAllocation;
          let extents = a.extents;
          if (liveQmp && a.liveTop) {
            // A running VM keeps writing its top node, so what the look read is already old. The order
            // that loses no write:
            //   1. a transient recording bitmap (the bridge) is added on the top node: from now on every
            //      guest write is in it;
            //   2. only then the top's own allocation is read again over NBD (qemu:allocation-depth);
            //   3. the transaction below merges the bridge, the scratch (that allocation, with the
            //      lower untracked layers' from the look) and the checkpoint's bitmaps below into the
            //      disabled merged bitmap, adds the new checkpoint and starts the job, all at one instant
            //      (QEMU drains the guest's I/O around a transaction).
            // A write before 1 is allocated in the top by 2 (a qcow2 layer with a backing file never
            // drops a cluster back to "not here": a discard leaves a zero cluster, still depth 1); a
            // write between 1 and 3 is in the bridge; a write after 3 is in the new checkpoint; the
            // writes since the checkpoint up to the overlay are in its bitmaps below. So the job copies
            // every cluster changed between the checkpoint and the transaction, and the next backup
            // starts from the new checkpoint. The bridge is removed once the transaction has merged it.
            await qmp.execute('block-dirty-bitmap-add', { node, name: bridge, persistent: false, granularity: a.granularity });
            bridgeAdded = true;
            await o.hook?.('bridge-recording');
            const now = await liveOwnAllocation(qmp, node, a.granularity, path.join(o.dataDir, 'run'));
            extents = union([extents, now.extents]);
            merged.push({ node, name: bridge });
            await o.hook?.('allocation-read');
          }
          fs.mkdirSync(path.dirname(allocationScratch), { recursive: true });
          writeBitmapScratch(allocationScratch, r.virtualSize, SCRATCH_BITMAP, a.granularity, extents);
          await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': allocationNode, 'read-only': true, file: { driver: 'file', filename: allocationScratch } });
          merged.push({ node: allocationNode, name: SCRATCH_BITMAP });
          grans.push(a.granularity);
        }
        const g = Math.min(...grans);
        actions.push({ type: 'block-dirty-bitmap-add', data: { node, name: tmp, persistent: false, disabled: true, granularity: g } });
        actions.push({ type: 'block-dirty-bitmap-merge', data: { node, target: tmp, bitmaps: merged } });
        Object.assign(backup, { sync: 'bitmap', bitmap: tmp, 'bitmap-mode': 'never' });
      }
      if (o.speed) backup.speed = o.speed;
      if (o.compress) backup.compress = true;
      // copy_file_range moves page-cache pages in the kernel (1 GiB in ~0.33 s here); into an O_DIRECT
      // target it is twice as slow as QEMU's own reads and writes, which keep 8 writes of 2 MiB in flight.
      else backup['x-perf'] = direct ? { 'use-copy-range': false, 'max-workers': 8, 'max-chunk': 2097152 } : { 'use-copy-range': true, 'max-chunk': 4194304 };
      actions.push({ type: 'blockdev-backup', data: backup });
      const record = engine.adopt(jobId, 'backup', backup).record;
      const tag = record !== null ? { tag: { job: record } } : {};
      if (o.signal?.aborted) throw new StrataError('E_BAD_INPUT', `${image}: the backup was cancelled`, { file: image });
      // With a guest agent, the guest's filesystems are frozen around the transaction only (the
      // backup job copies the point in time the transaction fixed), and always thawed.
      if (o.live?.qga) await withFrozenGuest(path.resolve(o.live.qga), () => qmp.execute('transaction', { actions }, tag));
      else await qmp.execute('transaction', { actions }, tag);
      jobStarted = true;
      // The digest threads start while QEMU copies, so they are up when the data is complete (an
      // incremental's few MiB are hashed on this thread: cheaper than starting threads).
      if (worthAPool(r.dirtyBytes)) hashPool ??= new HashPool();
      await o.hook?.('transaction');
      if (r.fromAllocation) await dropAllocationScratch(qmp);
      if (bridgeAdded) {
        await qmp.execute('block-dirty-bitmap-remove', { node, name: bridge });
        bridgeAdded = false;
      }
      if (o.signal?.aborted) onAbort();
      const done = await engine.waitFor(jobId, (j) => j.state === 'concluded', 24 * 3600 * 1000);
      if (done.error) {
        throw new StrataError(o.signal?.aborted ? 'E_BAD_INPUT' : 'E_TOOL', o.signal?.aborted ? `${image}: the backup was cancelled` : `${partial}: the backup job failed: ${done.error}`, { file: o.signal?.aborted ? image : partial });
      }
      await engine.verb(jobId, 'dismiss');
      jobStarted = false;
      if (r.since !== null) await qmp.execute('block-dirty-bitmap-remove', { node, name: tmp });
      // The checkpoint's granularity, recorded so a restore can give its fresh checkpoint the same.
      const checkpointGranularity = checkpoint ? await bitmapGranularity(qmp, node, checkpoint) : null;
      await qmp.execute('blockdev-del', { 'node-name': target });
      engine.close();
      engine = null;
      // Durable before it is listed: one fsync of the file and of its folder, then the rename. The
      // digests are taken meanwhile (hashing is CPU, the fsync is the disk). Strata's daemon, done
      // with the target, stops meanwhile too (storing the new checkpoint in the image), but only once
      // the source's own digests are read: its lock is what keeps anything else from writing the
      // source while they are. The manifest lists the backup only once all of it is done.
      const fileBytes = fs.statSync(partial).size;
      const flushed = fsyncAsync(partial);
      flushed.catch(() => {}); // awaited below
      const fromSourceDone = fromTheSource
        ? await fromTheSource.catch((e: Error) => {
            note(`the digests are taken from the backup file itself: reading the source's failed (${e.message})`);
            return null;
          })
        : null;
      const stopping = daemon ? daemon.stop() : Promise.resolve({ code: 0, signal: null, stderr: '' });
      const digesting = fromSourceDone ? Promise.resolve({ ...fromSourceDone, fileBytes }) : recordDigests(partial, hashPool ?? undefined);
      const [digests, , exit] = await Promise.all([digesting, flushed, stopping]);
      daemon = null;
      fs.renameSync(partial, final);
      fsyncPath(repo.dir);
      if (exit.code !== 0) throw new StrataError('E_TOOL', `${image}: qemu-storage-daemon exited with ${exit.code ?? exit.signal} while storing the checkpoint bitmap: ${exit.stderr}`, { file: image });
      journal.set(jid, 'writing-manifest');
      const entry: BackupEntry = {
        id, level: r.level, parent: r.parent, checkpoint, since: r.since, source: { image }, createdAt, finishedAt: new Date().toISOString(),
        file: path.basename(final), bytes: digests.fileBytes, dirtyBytes: r.dirtyBytes, ...(checkpointGranularity ? { granularity: checkpointGranularity } : {}), consistency: !liveQmp ? 'offline' : o.live?.qga ? 'frozen' : 'crash', state: 'ok', digests,
      };
      repo.manifest.disk ??= { image, virtualSize: r.virtualSize };
      repo.manifest.backups.push(entry);
      try {
        repo.save();
      } catch (e) {
        repo.manifest.backups.pop();
        throw e;
      }
      journal.set(jid, 'ok');
      syncCatalog(db, repo);
      return {
        id, level: r.level, requested: r.requested, fallback: r.fallback, checkpoint, since: r.since, file: final, bytes: entry.bytes,
        dirtyBytes: r.dirtyBytes, seconds: Math.round(performance.now() - t0) / 1000, changesFrom: changesFromOf(r), dryRun: false, notes,
      };
    } catch (e) {
      // Cancel the job (QEMU would on quit too), stop the daemon so the image is free, then remove
      // the partial file and the checkpoint bitmap the transaction added.
      const q = liveQmp ?? daemon?.qmp;
      if (q && jobStarted) {
        await q.execute('job-cancel', { id: jobId }).catch(() => {});
        await engine?.waitFor(jobId, (j) => j.state === 'concluded' || j.state === 'null', 30000).catch(() => {});
        await q.execute('job-dismiss', { id: jobId }).catch(() => {});
      }
      engine?.close();
      if (liveQmp) {
        // The VM keeps running: undo in its QEMU what the transaction added, and close the target.
        for (const name of [checkpoint, tmp, ...(bridgeAdded ? [bridge] : [])]) if (name) await liveQmp.execute('block-dirty-bitmap-remove', { node, name }).catch(() => {});
        await liveQmp.execute('blockdev-del', { 'node-name': target }).catch(() => {});
      }
      if (daemon) await daemon.stop().catch(() => {});
      if (r.fromAllocation) await dropAllocationScratch(null);
      let said: string[] = [];
      try {
        said = await cleanupLeftovers(repo, { image, partial, final, checkpoint, backupId: id });
      } catch (c) {
        said = [`clean-up failed (the next backup retries it): ${(c as Error).message}`];
        throw e;
      } finally {
        const cancelled = o.signal?.aborted ?? false;
        if (!said.some((s) => s.startsWith('clean-up failed'))) journal.set(jid, cancelled ? 'cancelled' : 'failed', `${(e as Error).message}; ${said.join('; ')}`);
      }
      throw e;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
      await hashPool?.close();
      traffic?.close('the backup ended');
    }
  } finally {
    if (db !== o.db) db?.close();
    repo.unlock();
    await liveQmp?.close();
  }
}
