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
