// A real qemu-storage-daemon for tests: its own folder, a QMP socket, killed when the test ends.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { waitListening, type Cleanup } from './qemu.ts';

export interface Daemon {
  child: ChildProcess;
  socket: string;
  stderr: () => string;
}

export async function startDaemon(t: Cleanup, dir: string, extra: string[] = []): Promise<Daemon> {
  const socket = path.join(dir, `qmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const child = spawn('qemu-storage-daemon', ['--chardev', `socket,id=m,path=${socket},server=on,wait=off`, '--monitor', 'chardev=m', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  t.onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await waitListening(socket, child, () => `qemu-storage-daemon: ${err}`);
  return { child, socket, stderr: () => err };
}
