// A backup repository: a folder the user picks, one per disk chain, holding plain qcow2 files and a
// versioned manifest (strata-backups.json) that makes the folder self-describing. The manifest is
// written atomically (temp file, fsync, rename, fsync of the folder); a lock file (O_EXCL, holding
// the pid) keeps two Strata processes from writing one repository. The SQLite catalog mirrors the
// manifest for the app and is rebuilt from it whenever the repository is opened.
import { processAlive } from '../processes.ts';
import fs from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.ts';
import type { Db } from '../store/db.ts';
import { isLevel, pointsOfDisk, type Level, type PointFacts, type RestoredDisk } from './rules.ts';

export const MANIFEST = 'strata-backups.json';
export const LOCK = 'strata-backups.lock';
/** 2: some backup's digests are of the "guest" scheme (verify.ts); a manifest whose digests are all
 * "host" ones is written as version 1, which older Strata versions read. */
export const MANIFEST_VERSION = 2;

export type Consistency = 'crash' | 'frozen' | 'offline';

/** sha256 of one run of the data a backup holds: disk bytes [start, start + length), which lie at
 * host `offset` of its own file in the "host" scheme; the "guest" scheme has no offset. */
export interface DigestRun {
  start: number;
  length: number;
  offset?: number;
  sha256: string;
}

/** How a backup's digests were taken (verify.ts): absent is "host". */
export type DigestScheme = 'host' | 'guest';

export interface BackupEntry {
  id: string;
  level: Level;
  parent: string | null;
  checkpoint: string | null;
  since: string | null;
  source: { image: string };
  createdAt: string;
  finishedAt: string;
  /** file name inside the repository */
  file: string;
  bytes: number;
  dirtyBytes: number;
  /** the checkpoint bitmap's granularity in bytes (absent in manifests from before it was recorded) */
  granularity?: number;
  consistency: Consistency;
  state: 'ok';
  digests: { algorithm: 'sha256'; scheme?: DigestScheme; fileBytes: number; runs: DigestRun[]; unverifiable: { start: number; length: number }[] };
}

export interface Manifest {
  version: number;
  disk: { image: string; virtualSize: number } | null;
  backups: BackupEntry[];
  /** disks restored with a fresh checkpoint (strata restore --checkpoint), one per file, oldest first */
  restored?: RestoredDisk[];
}

export function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function isDamaged(file: string, why: string): StrataError {
  return new StrataError('E_CORRUPT', `${file}: damaged backup manifest: ${why}; nothing was written`, { file });
}

function validate(file: string, doc: unknown): Manifest {
  const m = doc as Manifest;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw isDamaged(file, 'not a JSON object');
  if (m.version !== MANIFEST_VERSION && m.version !== 1) {
    if (typeof m.version === 'number' && m.version > MANIFEST_VERSION) {
      throw new StrataError('E_UNSUPPORTED', `${file}: manifest version ${m.version} is from a newer Strata (this one reads ${MANIFEST_VERSION})`, { file });
    }
    throw isDamaged(file, `unknown version ${JSON.stringify(m.version)}`);
  }
  if (!Array.isArray(m.backups)) throw isDamaged(file, '"backups" is not a list');
  const ids = new Set<string>();
  for (const b of m.backups) {
    if (typeof b !== 'object' || b === null || typeof b.id !== 'string' || !/^[a-z]+-\d+$/.test(b.id)) throw isDamaged(file, `a backup has no valid id`);
    if (ids.has(b.id)) throw isDamaged(file, `backup ${b.id} is listed twice`);
    ids.add(b.id);
    if (!isLevel(b.level)) throw isDamaged(file, `backup ${b.id} has level ${JSON.stringify(b.level)}`);
    if (typeof b.file !== 'string' || b.file.includes('/') || b.file.startsWith('.')) throw isDamaged(file, `backup ${b.id} names file ${JSON.stringify(b.file)}`);
    if (b.parent !== null && !ids.has(b.parent)) throw isDamaged(file, `backup ${b.id} has parent ${JSON.stringify(b.parent)}, not an older backup`);
    if ((b.level === 'inc' || b.level === 'diff') !== (b.parent !== null)) throw isDamaged(file, `backup ${b.id} (${b.level}) ${b.parent ? 'has' : 'lacks'} a parent`);
    if (!b.digests || !Array.isArray(b.digests.runs)) throw isDamaged(file, `backup ${b.id} has no digests`);
    const scheme = b.digests.scheme ?? 'host';
    if (scheme !== 'host' && (scheme !== 'guest' || m.version < 2)) throw isDamaged(file, `backup ${b.id} has digests of scheme ${JSON.stringify(b.digests.scheme)}`);
    const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    for (const run of b.digests.runs) {
      const ok = typeof run === 'object' && run !== null && count(run.start) && count(run.length) && /^[0-9a-f]{64}$/.test(run.sha256) && (scheme === 'guest' || count(run.offset));
      if (!ok) throw isDamaged(file, `backup ${b.id} has a digest that is not {start, length, ${scheme === 'host' ? 'offset, ' : ''}sha256}: ${JSON.stringify(run).slice(0, 200)}`);
    }
  }
  if (m.restored !== undefined) {
    if (!Array.isArray(m.restored)) throw isDamaged(file, '"restored" is not a list');
    for (const r of m.restored) {
      const ok = typeof r === 'object' && r !== null && typeof r.image === 'string' && path.isAbsolute(r.image) && typeof r.id === 'string' && typeof r.checkpoint === 'string' && r.checkpoint !== '' && typeof r.restoredAt === 'string';
      if (!ok) throw isDamaged(file, `a restored disk is not {image: ABS, id, checkpoint, restoredAt}: ${JSON.stringify(r)}`);
    }
  }
  return m;
}

export class Repository {
  readonly dir: string;
  readonly manifestPath: string;
  manifest: Manifest;
  /** what taking the lock had to say (a stale lock taken over), or null */
  lockNote: string | null = null;
  private locked = false;

  private constructor(dir: string, manifest: Manifest) {
    this.dir = dir;
    this.manifestPath = path.join(dir, MANIFEST);
    this.manifest = manifest;
  }

  /** Reads the manifest. `create`: a missing or empty folder is a new repository (nothing is written until lock()). */
  static open(dir: string, opts: { create?: boolean } = {}): Repository {
    const abs = path.resolve(dir);
    const file = path.join(abs, MANIFEST);
    if (!fs.existsSync(abs)) {
      if (!opts.create) throw new StrataError('E_NOT_FOUND', `${abs}: no such backup repository`, { file: abs });
      return new Repository(abs, { version: MANIFEST_VERSION, disk: null, backups: [] });
    }
    if (!fs.statSync(abs).isDirectory()) throw new StrataError('E_BAD_INPUT', `${abs}: a backup repository is a folder, this is a file`, { file: abs });
    if (!fs.existsSync(file)) {
      const others = fs.readdirSync(abs).filter((n) => n !== LOCK);
      if (!opts.create || others.length > 0) {
        throw new StrataError('E_BAD_INPUT', `${abs}: not a Strata backup repository (no ${MANIFEST}${others.length ? ', and the folder is not empty' : ''})`, { file: abs });
      }
      return new Repository(abs, { version: MANIFEST_VERSION, disk: null, backups: [] });
    }
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new StrataError('E_IO', `${file}: cannot read the manifest: ${(e as Error).message}`, { file, cause: e });
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw isDamaged(file, `not valid JSON (${(e as Error).message})`);
    }
    return new Repository(abs, validate(file, doc));
  }

  get points(): PointFacts[] {
    return this.manifest.backups.map((b) => ({ id: b.id, level: b.level, parent: b.parent, checkpoint: b.checkpoint, createdAt: b.createdAt, source: b.source?.image }));
  }

  /** The points a backup of `image` can start from (rules.ts pointsOfDisk). */
  pointsOf(image: string): PointFacts[] {
    return pointsOfDisk(this.points, this.manifest.restored ?? [], image);
  }

  /** Records a disk restored with a fresh checkpoint, replacing what was recorded for that file. */
  recordRestored(r: RestoredDisk): void {
    this.manifest.restored = [...(this.manifest.restored ?? []).filter((x) => x.image !== r.image), r];
  }

  find(id: string): BackupEntry {
    const b = this.manifest.backups.find((x) => x.id === id);
    if (!b) throw new StrataError('E_BAD_INPUT', `${this.manifestPath}: no backup '${id}' (see strata backups --repo ${this.dir})`, { file: this.manifestPath });
    return b;
  }

  fileOf(b: BackupEntry): string {
    return path.join(this.dir, b.file);
  }

  /** The next id for a level: numbers count every backup the repository ever listed. */
  nextId(level: Level): string {
    const n = this.manifest.backups.reduce((m, b) => Math.max(m, Number(b.id.split('-')[1])), 0) + 1;
    return `${level}-${n}`;
  }

  /** O_EXCL lock file holding our pid; a lock left by a dead process is taken over, and said so. */
  lock(): void {
    const file = path.join(this.dir, LOCK);
    fs.mkdirSync(this.dir, { recursive: true });
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
        fs.writeSync(fd, `${process.pid}\n`);
        fs.closeSync(fd);
        this.locked = true;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new StrataError('E_IO', `${file}: cannot create the repository lock: ${(e as Error).message}`, { file, cause: e });
        }
      }
      const pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
        throw new StrataError('E_BUSY', `${this.dir}: another Strata process (pid ${pid}) is writing this repository (${file})`, { file });
      }
      fs.rmSync(file, { force: true });
      this.lockNote = `took over a stale lock ${file} left by ${Number.isInteger(pid) ? `pid ${pid}, which is no longer running` : 'an unknown process'}`;
    }
    throw new StrataError('E_BUSY', `${file}: could not take the repository lock`, { file });
  }

  unlock(): void {
    if (!this.locked) return;
    fs.rmSync(path.join(this.dir, LOCK), { force: true });
    this.locked = false;
  }

  /** Temp file + fsync + rename + fsync of the folder: a reader sees the old manifest or the new one. */
  save(): void {
    if (!this.locked) throw new StrataError('E_INTERNAL', `${this.manifestPath}: written without the repository lock`);
    const tmp = path.join(this.dir, `.${MANIFEST}.${process.pid}.tmp`);
    // Version 1 while every digest is a host one, so an older Strata can still read the repository.
    this.manifest.version = this.manifest.backups.some((b) => b.digests.scheme === 'guest') ? MANIFEST_VERSION : 1;
    try {
      const fd = fs.openSync(tmp, 'w', 0o644);
      try {
        fs.writeSync(fd, JSON.stringify(this.manifest, null, 2) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, this.manifestPath);
      fsyncPath(this.dir);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw new StrataError('E_IO', `${this.manifestPath}: cannot write the manifest: ${(e as Error).message}`, { file: this.manifestPath, cause: e });
    }
  }
}

/**
 * The points of a repository as strata backups --json (and backup:list) lists them, oldest first, each
 * with the disks restored from it with a fresh checkpoint (`restored`: the manifest's records, or the
 * catalog's mirror of them).
 */
export function listPoints(repo: Repository, restored: RestoredDisk[] = repo.manifest.restored ?? []) {
  return repo.manifest.backups.map((b) => ({
    id: b.id, level: b.level, parent: b.parent, checkpoint: b.checkpoint, createdAt: b.createdAt, file: repo.fileOf(b), bytes: b.bytes, state: b.state, consistency: b.consistency,
    finishedAt: b.finishedAt, dirtyBytes: b.dirtyBytes,
    restored: restored.filter((r) => r.id === b.id).map((r) => ({ image: r.image, checkpoint: r.checkpoint, restoredAt: r.restoredAt })),
  }));
}

/** (processes.ts; a zombie counts as dead) */
export const pidAlive = (pid: number): boolean => processAlive(pid);

/** The SQLite catalog for one repository, rebuilt from its manifest (the manifest is the truth): its backups and its restored disks. */
export function syncCatalog(db: Db, repo: Repository): void {
  db.transaction(() => {
    db.prepare('DELETE FROM backup_catalog WHERE repo = ?').run(repo.dir);
    const ins = db.prepare(
      'INSERT INTO backup_catalog (repo, id, level, parent, checkpoint, source, created_at, finished_at, file, bytes, dirty_bytes, state, consistency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    for (const b of repo.manifest.backups) {
      ins.run(repo.dir, b.id, b.level, b.parent, b.checkpoint, b.source.image, b.createdAt, b.finishedAt, repo.fileOf(b), b.bytes, b.dirtyBytes, b.state, b.consistency);
    }
    db.prepare('DELETE FROM backup_restored WHERE repo = ?').run(repo.dir);
    const restored = db.prepare('INSERT INTO backup_restored (repo, image, id, checkpoint, restored_at) VALUES (?, ?, ?, ?, ?)');
    for (const r of repo.manifest.restored ?? []) restored.run(repo.dir, r.image, r.id, r.checkpoint, r.restoredAt);
  })();
}

/** The catalog's restored disks of one repository, oldest first (as the manifest lists them). */
export function catalogRestored(db: Db, repo: string): RestoredDisk[] {
  return (db.prepare('SELECT image, id, checkpoint, restored_at FROM backup_restored WHERE repo = ? ORDER BY restored_at, image').all(repo) as any[]).map((r) => ({
    image: r.image, id: r.id, checkpoint: r.checkpoint, restoredAt: r.restored_at,
  }));
}

/** Every backup of the catalog that has a checkpoint, oldest first, with its repository. */
export function catalogCheckpoints(db: Db): { checkpoint: string; repo: string; id: string; level: Level; createdAt: string }[] {
  return (db.prepare('SELECT checkpoint, repo, id, level, created_at FROM backup_catalog WHERE checkpoint IS NOT NULL ORDER BY created_at, repo, id').all() as any[]).map((r) => ({
    checkpoint: r.checkpoint, repo: r.repo, id: r.id, level: r.level, createdAt: r.created_at,
  }));
}

export interface JournalRow {
  id: number;
  repo: string;
  backupId: string;
  image: string;
  partial: string;
  final: string;
  checkpoint: string | null;
  /** Strata's storage daemon for this backup, while it runs (a killed Strata leaves it behind) */
  daemonPid: number | null;
  state: string;
}

function journalRow(r: any): JournalRow {
  return { id: r.id, repo: r.repo, backupId: r.backup_id, image: r.image, partial: r.partial, final: r.final, checkpoint: r.checkpoint, daemonPid: r.daemon_pid, state: r.state };
}

/** Journal of backups in flight: written before the first QMP command, so a crash is cleaned up next time. */
export class BackupJournal {
  constructor(private db: Db) {}

  begin(r: Omit<JournalRow, 'id' | 'state' | 'daemonPid'>): number {
    return Number(
      this.db
        .prepare("INSERT INTO backup_journal (repo, backup_id, image, partial, final, checkpoint, state, created_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)")
        .run(r.repo, r.backupId, r.image, r.partial, r.final, r.checkpoint, new Date().toISOString()).lastInsertRowid,
    );
  }

  setDaemon(id: number, pid: number | null): void {
    this.db.prepare('UPDATE backup_journal SET daemon_pid = ? WHERE id = ?').run(pid, id);
  }

  set(id: number, state: 'writing-manifest' | 'ok' | 'failed' | 'cancelled', note: string | null = null): void {
    this.db.prepare('UPDATE backup_journal SET state = ?, note = ?, finished_at = ? WHERE id = ?').run(state, note, state === 'writing-manifest' ? null : new Date().toISOString(), id);
  }

  unfinished(repo: string): JournalRow[] {
    return (this.db.prepare("SELECT * FROM backup_journal WHERE repo = ? AND state IN ('planned', 'running', 'writing-manifest') ORDER BY id").all(repo) as any[]).map(journalRow);
  }

  /** The repositories with a backup left unfinished (a crash mid-backup). */
  unfinishedRepos(): string[] {
    return (this.db.prepare("SELECT DISTINCT repo FROM backup_journal WHERE state IN ('planned', 'running', 'writing-manifest') ORDER BY repo").all() as any[]).map((r) => r.repo);
  }

  /** The last backup journaled for a repository, with its note, or null. */
  latest(repo: string): (JournalRow & { note: string | null }) | null {
    const r = this.db.prepare('SELECT * FROM backup_journal WHERE repo = ? ORDER BY id DESC LIMIT 1').get(repo) as any;
    return r ? { ...journalRow(r), note: r.note } : null;
  }
}
