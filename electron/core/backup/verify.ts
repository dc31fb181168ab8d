// Digests of the data each backup wrote, recorded when it is taken and re-read by verify: sha256 of
// every run of host bytes the file's own data clusters occupy (from qemu-img map of the file alone,
// its backing file not opened), so the cost grows with the backup's own data, never with the disk.
// Verify also runs qemu-img check on each file and checks that its backing link is present,
// relative, and names its parent's file.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { StrataError } from '../errors.ts';
import { openLayer } from '../qcow2/chain.ts';
import type { BackupEntry, DigestRun, Repository } from './repository.ts';
import { mapAlone, tool } from './tools.ts';

const CHUNK = 1 << 20;

function hashRange(fd: number, offset: number, length: number, buf: Buffer): string | null {
  const h = createHash('sha256');
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, 0, Math.min(CHUNK, length - done), offset + done);
    if (n === 0) return null; // the file ends before the run: truncated
    h.update(buf.subarray(0, n));
    done += n;
  }
  return h.digest('hex');
}

export async function recordDigests(file: string): Promise<BackupEntry['digests']> {
  const map = await mapAlone(file);
  const runs: DigestRun[] = [];
  const unverifiable: { start: number; length: number }[] = [];
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (const e of map) {
      if (e.depth !== 0 || !e.data) continue;
      // Compressed clusters have no fixed host offset in the map: their content is checked by
      // qemu-img check only.
      if (e.offset === undefined) {
        unverifiable.push({ start: e.start, length: e.length });
        continue;
      }
      const sha256 = hashRange(fd, e.offset, e.length, buf);
      if (sha256 === null) throw new StrataError('E_CORRUPT', `${file}: data at ${e.offset} lies past the end of the file`, { file });
      runs.push({ start: e.start, length: e.length, offset: e.offset, sha256 });
    }
    return { algorithm: 'sha256', fileBytes: fs.fstatSync(fd).size, runs, unverifiable };
  } finally {
    fs.closeSync(fd);
  }
}

export interface VerifyResult {
  id: string;
  file: string;
  ok: boolean;
  problems: string[];
  checkedBytes: number;
}

export async function verifyBackup(repo: Repository, b: BackupEntry): Promise<VerifyResult> {
  const file = repo.fileOf(b);
  const problems: string[] = [];
  let checkedBytes = 0;
  const r = (): VerifyResult => ({ id: b.id, file, ok: problems.length === 0, problems, checkedBytes });
  if (!fs.existsSync(file)) {
    problems.push(`${file} is missing`);
    return r();
  }
  const size = fs.statSync(file).size;
  if (size < b.digests.fileBytes) problems.push(`${file} is truncated: ${size} bytes, ${b.digests.fileBytes} when written`);
  // The backing link, read from the header with Strata's own reader.
  try {
    const layer = openLayer(file, 'qcow2');
    try {
      const parent = b.parent ? repo.find(b.parent) : null;
      if (!parent && layer.backingFile !== null) problems.push(`${file}: a ${b.level} backup must be standalone, but its header names backing file '${layer.backingFile}'`);
      if (parent) {
        if (layer.backingFile === null) problems.push(`${file}: its backing link to ${parent.file} is missing`);
        else if (path.isAbsolute(layer.backingFile)) problems.push(`${file}: backing link '${layer.backingFile}' is absolute (the repository could not be moved)`);
        else if (layer.backingFile !== parent.file) problems.push(`${file}: backing link '${layer.backingFile}' should name ${parent.file}`);
        else if (!fs.existsSync(repo.fileOf(parent))) problems.push(`${file}: its backing file ${parent.file} is missing`);
      }
    } finally {
      layer.file.close();
    }
  } catch (e) {
    problems.push(`${file}: ${(e as Error).message}`);
    return r();
  }
  try {
    await tool('qemu-img', ['check', '-U', '-q', '-f', 'qcow2', file], file);
  } catch (e) {
    problems.push(`qemu-img check: ${(e as Error).message}`);
  }
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (const run of b.digests.runs) {
      const got = hashRange(fd, run.offset, run.length, buf);
      checkedBytes += run.length;
      if (got === null) problems.push(`${file}: the data of disk bytes ${run.start}..${run.start + run.length} is cut off (file truncated)`);
      else if (got !== run.sha256) problems.push(`${file}: the data of disk bytes ${run.start}..${run.start + run.length} differs from what was written (sha256 mismatch)`);
    }
  } finally {
    fs.closeSync(fd);
  }
  return r();
}

export async function verifyRepository(repo: Repository, id?: string): Promise<VerifyResult[]> {
  const list = id ? [repo.find(id)] : repo.manifest.backups;
  const out: VerifyResult[] = [];
  for (const b of list) out.push(await verifyBackup(repo, b));
  return out;
}
