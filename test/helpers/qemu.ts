// Running the real QEMU tools from tests: argument arrays only, output captured, failures loud.
import { execFileSync, type ChildProcess, type ExecFileSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'vitest';

export function run(cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts }) as string;
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${err.stderr || err.stdout || err.message}`);
  }
}

export const qemuImg = (...args: string[]) => run('qemu-img', args);
/** qemu-io with one or more -c commands; output discarded unless asked for. */
export const qemuIo = (image: string, cmds: string[], extra: string[] = []) =>
  run('qemu-io', [...extra, ...cmds.flatMap((c) => ['-c', c]), image]);

/** What a helper needs from vitest's test context: a way to clean up when the test ends. */
export type Cleanup = Pick<TestContext, 'onTestFinished'>;

/** A temporary folder removed when the test ends (pass the test's context). */
export function tempDir(t: Cleanup, prefix = 'strata-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Is a socket listening at `sock`? Read from the kernel's table (/proc/net/unix: the listening flag
 * __SO_ACCEPTCON, 0x10000), not by connecting: a probe connection would be the monitor's client for
 * a moment, and QEMU closes a connection that arrives before it has noticed the probe leave.
 */
function isListening(sock: string): boolean {
  if (!fs.existsSync(sock)) return false;
  const table = fs.readFileSync('/proc/net/unix', 'utf8').split('\n');
  return table.some((row) => {
    const f = row.trim().split(/\s+/);
    return f.length >= 8 && f.slice(7).join(' ') === sock && (parseInt(f[3], 16) & 0x10000) !== 0;
  });
}

/**
 * Resolves once `child` accepts connections on the UNIX socket `sock`. QEMU's tools create the
 * socket file (bind) a moment before they listen on it, so the file alone is not enough: a
 * client connecting in between is refused.
 */
export async function waitListening(sock: string, child: ChildProcess, why: () => string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before it was ready: ${why()}`);
    if (isListening(sock)) return;
    if (Date.now() - t0 > ms) throw new Error(`not listening on ${sock} after ${ms} ms: ${why()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** qemu-img info --backing-chain --output=json, parsed. */
export function qemuInfoChain(image: string): any[] {
  return JSON.parse(qemuImg('info', '-U', '--backing-chain', '--output=json', image));
}

/** qemu-img map --output=json, merged by (depth, present, zero, data) to drop host offsets. */
export function qemuMap(image: string): { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean }[] {
  const raw = JSON.parse(qemuImg('map', '-U', '--output=json', image)) as any[];
  const out: { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean }[] = [];
  for (const e of raw) {
    const last = out[out.length - 1];
    const x = { start: e.start, length: e.length, depth: e.depth, present: e.present, zero: e.zero, data: e.data };
    if (last && last.start + last.length === x.start && last.depth === x.depth && last.present === x.present && last.zero === x.zero && last.data === x.data) {
      last.length += x.length;
    } else out.push(x);
  }
  return out;
}
