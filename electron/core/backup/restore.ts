// Restore any point to a new standalone image: qemu-img convert of the backup's chain (the point's
// file, backed by its parents), thin: unallocated and zero areas stay so. An existing file is never
// overwritten without `force`.
import fs from 'node:fs';
import path from 'node:path';
import { StrataError } from '../errors.ts';
import { Repository } from './repository.ts';
import { tool } from './tools.ts';

export interface RestoreOptions {
  repo: string;
  id: string;
  to: string;
  format: 'qcow2' | 'raw';
  force: boolean;
}

export interface RestoreResult {
  id: string;
  to: string;
  /** bytes of the restored file on disk */
  bytes: number;
}

export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  const repo = Repository.open(o.repo);
  const b = repo.find(o.id);
  const to = path.resolve(o.to);
  if (fs.existsSync(to)) {
    if (!o.force) throw new StrataError('E_BAD_INPUT', `${to}: already exists; pass --force to overwrite it`, { file: to });
    if (fs.statSync(to).isDirectory()) throw new StrataError('E_BAD_INPUT', `${to}: is a folder`, { file: to });
  }
  if (!fs.existsSync(path.dirname(to))) throw new StrataError('E_NOT_FOUND', `${path.dirname(to)}: no such folder`, { file: to });
  const src = repo.fileOf(b);
  if (!fs.existsSync(src)) throw new StrataError('E_NOT_FOUND', `${src}: backup ${b.id} is listed in the manifest but its file is missing`, { file: src });
  // Written under a temporary name and renamed when complete: a failed restore leaves no half image.
  const tmp = path.join(path.dirname(to), `.${path.basename(to)}.strata-restore-${process.pid}`);
  try {
    await tool('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', o.format, src, tmp], src);
    const fd = fs.openSync(tmp, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, to);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return { id: b.id, to, bytes: fs.statSync(to).blocks * 512 };
}
