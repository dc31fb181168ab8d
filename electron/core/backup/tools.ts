// The QEMU tools the backup capability runs: argument arrays, never a shell; failures as typed
// errors naming the file.
import { execFile } from 'node:child_process';
import { StrataError } from '../errors.ts';
import type { MapExtent } from '../chain-map.ts';

export function tool(cmd: string, args: string[], file: string, opts: { maxBuffer?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: opts.maxBuffer ?? 256 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') return reject(new StrataError('E_TOOL', `${cmd} is not installed (Debian/Ubuntu: qemu-utils)`));
      reject(new StrataError('E_TOOL', `${file}: ${cmd} ${args[0]} failed: ${(stderr || stdout || e.message).trim()}`, { file }));
    });
  });
}

/** A qcow2 file opened alone (its backing file not opened): the data this one file holds. */
export function aloneSpec(file: string): string {
  return `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: file } })}`;
}

/** One row of qemu-img map --output=json: Strata's MapExtent plus QEMU's host offset. */
export type MapEntry = MapExtent & { offset?: number };

export async function mapAlone(file: string): Promise<MapEntry[]> {
  return JSON.parse(await tool('qemu-img', ['map', '-U', '--output=json', aloneSpec(file)], file)) as MapEntry[];
}
