// Is another process holding an image? QEMU takes OFD locks when it opens an image; `qemu-img info`
// without -U needs the shared "write" lock and fails while a writer holds it. On-disk in-use flags
// cannot tell a crash from a live holder: the lock can.
import { execFile } from 'node:child_process';
import { StrataError } from '../errors.ts';

export type LockState = 'free' | 'locked';

export function imageLockState(image: string): Promise<LockState> {
  return new Promise((resolve, reject) => {
    execFile('qemu-img', ['info', '--output=json', image], { timeout: 15000 }, (err, _out, stderr) => {
      if (!err) return resolve('free');
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') return reject(new StrataError('E_TOOL', 'qemu-img is not installed (Debian/Ubuntu: qemu-utils; Fedora: qemu-img)'));
      if (/lock/i.test(stderr)) return resolve('locked');
      reject(new StrataError('E_TOOL', `${image}: qemu-img info failed: ${stderr.trim()}`, { file: image }));
    });
  });
}
