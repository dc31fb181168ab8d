// Strata's own qemu-storage-daemon for an offline chain: a private runtime folder, a QMP socket and
// a pidfile; the top image opened by file name so QEMU opens its backing chain from the header
// (explicit backing references would give truncated json: pseudo-filenames). Stopped with SIGTERM,
// which makes QEMU store persistent bitmaps before it exits.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { QmpClient, type QmpTraffic } from '../qmp/client.ts';
import { StrataError } from '../errors.ts';
import { DEFAULT_DEVICE } from '../jobs/start-command.ts';

/** the node name of the image Strata's daemon opens (the default device of jobs) */
export const TOP_NODE = DEFAULT_DEVICE;

export interface DaemonOptions {
  image: string;
  /** a folder of Strata's own (under the data dir's runtime folder) */
  runtimeDir: string;
  readOnly: boolean;
  onTraffic?: (entry: QmpTraffic) => void;
}

export type DaemonExit = { code: number | null; signal: NodeJS.Signals | null; expected: boolean; stderr: string };

export class StorageDaemon {
  readonly image: string;
  readonly socket: string;
  readonly pidfile: string;
  readonly readOnly: boolean;
  private child: ChildProcess;
  private stopping = false;
  private exitListeners = new Set<(e: DaemonExit) => void>();
  exited: DaemonExit | null = null;
  qmp!: QmpClient;
  private stderrText = '';

  private constructor(opts: DaemonOptions, child: ChildProcess, socket: string, pidfile: string) {
    this.image = opts.image;
    this.readOnly = opts.readOnly;
    this.child = child;
    this.socket = socket;
    this.pidfile = pidfile;
    child.stderr?.on('data', (d) => {
      this.stderrText = (this.stderrText + d).slice(-8192);
    });
    // 'close', not 'exit': by then stderr is read to its end, so the reason QEMU gave is complete.
    child.on('close', (code, signal) => {
      this.exited = { code, signal, expected: this.stopping, stderr: this.stderrText.trim() };
      for (const l of this.exitListeners) l(this.exited);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Called once when the daemon exits; `expected` is false for a crash or a kill from outside. */
  onExit(l: (e: DaemonExit) => void): () => void {
    this.exitListeners.add(l);
    return () => this.exitListeners.delete(l);
  }

  /**
   * Starts the daemon and connects to its monitor. A read-write open is refused while another
   * process holds the image: QEMU takes its locks when it attaches the file, before it reads or
   * writes any qcow2 metadata, so the daemon's own open is the check (no race with a separate probe,
   * and no probe's start-up time); its lock failure becomes E_BAD_INPUT naming the image.
   */
  static async start(opts: DaemonOptions): Promise<StorageDaemon> {
    const image = path.resolve(opts.image);
    if (!fs.existsSync(image)) throw new StrataError('E_NOT_FOUND', `${image}: no such file`, { file: image });
    fs.mkdirSync(opts.runtimeDir, { recursive: true, mode: 0o700 });
    const dir = fs.mkdtempSync(path.join(opts.runtimeDir, `qsd-${process.pid}-`));
    const socket = path.join(dir, 'qmp.sock');
    const pidfile = path.join(dir, 'qsd.pid');
    const blockdev = `driver=qcow2,node-name=${TOP_NODE},read-only=${opts.readOnly ? 'on' : 'off'},file.driver=file,file.filename=${image.replaceAll(',', ',,')}`;
    const child = spawn(
      'qemu-storage-daemon',
      ['--chardev', `socket,id=strata,path=${socket},server=on,wait=off`, '--monitor', 'chardev=strata', '--pidfile', pidfile, '--blockdev', blockdev],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const d = new StorageDaemon({ ...opts, image }, child, socket, pidfile);
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 10000;
      const poll = () => {
        if (d.exited) return reject(openFailure(image, d.exited));
        if (fs.existsSync(socket)) return resolve();
        if (Date.now() > deadline) return reject(new StrataError('E_TOOL', `${image}: qemu-storage-daemon did not start within 10 s`, { file: image }));
        setTimeout(poll, 3);
      };
      child.once('error', (e: NodeJS.ErrnoException) =>
        reject(new StrataError('E_TOOL', e.code === 'ENOENT' ? 'qemu-storage-daemon is not installed (Debian/Ubuntu: qemu-system-common)' : e.message)),
      );
      poll();
    }).catch(async (e) => {
      d.kill();
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    });
    // The socket file exists a moment before QEMU listens on it: retry a refused connection briefly.
    const connectBy = Date.now() + 5000;
    for (;;) {
      try {
        d.qmp = await QmpClient.connect(socket, { onTraffic: opts.onTraffic });
        return d;
      } catch (e) {
        // QEMU makes the monitor socket before it opens the image, so a refused open ends here too:
        // the connection is taken, then closed without a greeting as QEMU exits. Give its exit a
        // moment to be seen, so the reason is QEMU's own words, not a closed socket.
        const giveUp = (e as StrataError).code !== 'E_QMP_CONNECT' || Date.now() > connectBy;
        if (giveUp && !d.exited) {
          await new Promise<void>((r) => {
            const t = setTimeout(r, 2000);
            d.onExit(() => {
              clearTimeout(t);
              r();
            });
          });
        }
        if (d.exited || giveUp) {
          d.kill();
          fs.rmSync(dir, { recursive: true, force: true });
          if (d.exited) throw openFailure(image, d.exited);
          throw e;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  }

  private kill(): void {
    this.stopping = true;
    if (!this.exited) this.child.kill('SIGKILL');
  }

  /** SIGTERM: QEMU stores persistent bitmaps and exits 0. SIGKILL only if it hangs. */
  async stop(timeoutMs = 10000): Promise<DaemonExit> {
    this.stopping = true;
    if (!this.exited) {
      const done = new Promise<void>((r) => this.onExit(() => r()));
      await this.qmp?.close().catch(() => {});
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
      await done;
      clearTimeout(t);
    }
    fs.rmSync(path.dirname(this.socket), { recursive: true, force: true });
    return this.exited!;
  }
}

/** Why the daemon exited before its monitor answered: another process's lock, or QEMU's own words. */
function openFailure(image: string, exited: DaemonExit): StrataError {
  if (/Failed to get "[a-z ]+" lock|Is another process using the image/i.test(exited.stderr)) {
    return new StrataError('E_BAD_INPUT', `${image}: in use by another QEMU (a running VM or tool holds its lock); attach to that QEMU's QMP socket instead`, { file: image });
  }
  return new StrataError('E_TOOL', `${image}: qemu-storage-daemon could not open the image: ${exited.stderr || `exit ${exited.code}`}`, { file: image });
}
