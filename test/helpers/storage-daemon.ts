// A real qemu-storage-daemon for tests: its own folder, a QMP socket, killed when the test ends.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import type { Cleanup } from './qemu.ts';

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
  const deadline = Date.now() + 5000;
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null) throw new Error(`qemu-storage-daemon exited: ${err}`);
    if (Date.now() > deadline) throw new Error(`qemu-storage-daemon did not create ${socket}: ${err}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  // The file appears a moment before QEMU listens on it: wait until a connection is accepted.
  while (!(await new Promise<boolean>((resolve) => {
    const s = net.createConnection({ path: socket });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  }))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`qemu-storage-daemon never listened on ${socket}: ${err}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return { child, socket, stderr: () => err };
}
