// Whether a process Strata recorded (a daemon, another Strata, the owner named in a temporary name)
// is still running: the one test every recovery and clean-up asks before it touches what that
// process may be using.
import fs from 'node:fs';

/** Is a process with this pid alive? A zombie (killed, not yet reaped by whoever inherited it) is not. */
export function processAlive(pid: number | null): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (not Linux): the signal test is all there is
  }
}

/**
 * Is `pid` a qemu-storage-daemon serving `image` (its command line names both)? A pid recorded by an
 * earlier Strata may since belong to another program: that one is neither waited for nor signalled.
 */
export function isStorageDaemonFor(pid: number | null, image: string): boolean {
  if (!pid || !processAlive(pid)) return false;
  let argv: string[];
  try {
    argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false; // gone meanwhile, or not ours to read
  }
  return argv.length > 0 && /(^|\/)qemu-storage-daemon$/.test(argv[0]) && argv.some((a) => a.includes(image));
}

/** SIGTERM a storage daemon (QEMU then stores the bitmaps it holds) and wait at most `timeoutMs`; true once it is gone. */
export async function stopStorageDaemon(pid: number, timeoutMs = 10_000): Promise<boolean> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return !processAlive(pid);
  }
  const until = Date.now() + timeoutMs;
  while (processAlive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  return !processAlive(pid);
}
