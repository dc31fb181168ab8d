// Restore any point to a new standalone image: qemu-img convert of the backup's chain (the point's
// file, backed by its parents), thin: unallocated and zero areas stay so. An existing file is never
// overwritten without `force`. With `checkpoint` (qcow2 only) the restored image gets a fresh,
// empty, recording persistent bitmap named as the point's own checkpoint (qemu-img bitmap --add),
// and the manifest records that this file holds it at that point, so the next backup of the restored
// disk is incremental to the point.
// Durable before it is named: the file is written under a temporary name, flushed, renamed, and its
// folder flushed. Speed (bench 8): convert's default output cache is `unsafe` (page cache, no flush),
// so the flush afterwards wrote the whole GiB again as one fsync; with `-t none` (O_DIRECT, and QEMU
// flushes at close) the data goes to the disk while it is copied, and the fsync finds nothing left.
// A filesystem without O_DIRECT gets the page-cache copy and the fsync.
import fs from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.ts';
import { withChain } from '../qcow2/chain.ts';
import { Repository, fsyncPath, type BackupEntry } from './repository.ts';
import { tool } from './tools.ts';

export interface RestoreOptions {
  repo: string;
  id: string;
  to: string;
  format: 'qcow2' | 'raw';
  force: boolean;
  /** give the restored image a fresh checkpoint (the point's) and record it in the repository */
  checkpoint?: boolean;
}

export interface RestoreResult {
  id: string;
  to: string;
  /** bytes of the restored file on disk */
  bytes: number;
  /** the checkpoint bitmap the restored image holds (restore --checkpoint), else null */
  checkpoint: string | null;
}

/** QEMU's own default for a qcow2 of 64 KiB clusters, when nothing says otherwise. */
const DEFAULT_GRANULARITY = 65536;

/** The granularity the point's checkpoint had: recorded at backup time, else read from the source disk if it still holds it. */
function granularityOf(b: BackupEntry): number {
  if (b.granularity) return b.granularity;
  try {
    const found = withChain(b.source.image, (c) => c.layers.flatMap((l) => l.bitmaps).find((x) => x.name === b.checkpoint));
    if (found) return found.granularity;
  } catch {
    // the source disk is gone or unreadable: QEMU's default
  }
  return DEFAULT_GRANULARITY;
}

export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  if (o.checkpoint && o.format !== 'qcow2') {
    throw new StrataError('E_BAD_INPUT', `${path.resolve(o.to)}: a checkpoint is a qcow2 bitmap; --checkpoint needs --format qcow2, not ${o.format}; nothing was written`, { file: path.resolve(o.to) });
  }
  const repo = Repository.open(o.repo);
  const b = repo.find(o.id);
  const to = path.resolve(o.to);
  if (o.checkpoint && !b.checkpoint) {
    throw new StrataError('E_BAD_INPUT', `${repo.manifestPath}: backup ${b.id} is a ${b.level} without a checkpoint, so no backup can be incremental to it; restore it without --checkpoint`, { file: repo.manifestPath });
  }
  if (fs.existsSync(to)) {
    if (!o.force) throw new StrataError('E_BAD_INPUT', `${to}: already exists; pass --force to overwrite it`, { file: to });
    if (fs.statSync(to).isDirectory()) throw new StrataError('E_BAD_INPUT', `${to}: is a folder`, { file: to });
  }
  if (!fs.existsSync(path.dirname(to))) throw new StrataError('E_NOT_FOUND', `${path.dirname(to)}: no such folder`, { file: to });
  const src = repo.fileOf(b);
  if (!fs.existsSync(src)) throw new StrataError('E_NOT_FOUND', `${src}: backup ${b.id} is listed in the manifest but its file is missing`, { file: src });
  const checkpoint = o.checkpoint ? b.checkpoint : null;
  // The manifest is written: one Strata process at a time.
  if (checkpoint) repo.lock();
  // Written under a temporary name and renamed when complete: a failed restore leaves no half image.
  const tmp = path.join(path.dirname(to), `.${path.basename(to)}.strata-restore-${process.pid}`);
  const recordedBefore = repo.manifest.restored;
  let recorded = false;
  try {
    const convert = (cache: string[]) => tool('qemu-img', ['convert', '-U', ...cache, '-f', 'qcow2', '-O', o.format, src, tmp], src);
    if (!directIo(tmp)) await convert([]);
    else {
      // Some filesystems (FUSE, older ZFS) take an O_DIRECT open but refuse its I/O: then the
      // page-cache copy and the fsync below. A real error (a missing backing file) fails both ways.
      try {
        await convert(['-t', 'none']);
      } catch {
        await convert([]);
      }
    }
    if (checkpoint) await tool('qemu-img', ['bitmap', '--add', '-f', 'qcow2', '-g', String(granularityOf(b)), tmp, checkpoint], tmp);
    fsyncPath(tmp);
    // Recorded before the rename: a failed manifest write leaves an existing `to` as it was.
    if (checkpoint) {
      repo.recordRestored({ image: to, id: b.id, checkpoint, restoredAt: new Date().toISOString() });
      repo.save();
      recorded = true;
    }
    fs.renameSync(tmp, to);
    fsyncPath(path.dirname(to));
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    if (recorded) undoRecord(repo, recordedBefore);
    throw e;
  } finally {
    repo.unlock();
  }
  return { id: b.id, to, bytes: fs.statSync(to).blocks * 512, checkpoint };
}

/** Whether `file` (created here, empty) can be opened with O_DIRECT on its filesystem; it is left for qemu-img to overwrite. */
function directIo(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | (fs.constants.O_DIRECT ?? 0), 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw new StrataError('E_IO', `${file}: cannot create the restored file: ${(e as Error).message}`, { file, cause: e });
  }
  fs.closeSync(fd);
  return fs.constants.O_DIRECT !== undefined;
}

/** A restore that failed after its record was written: the records as they were (best effort: a record without its bitmap in the file only makes the next backup full). */
function undoRecord(repo: Repository, before: Repository['manifest']['restored']): void {
  repo.manifest.restored = before;
  try {
    repo.save();
  } catch {
    // the checkpoint math still refuses it: the file at `to` does not hold that bitmap
  }
}
