// Strata's NBD client against a real qemu-nbd: bitmap contents and allocation depth read live must
// equal what the offline reader finds in the file.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { NbdClient } from '../../electron/core/nbd/client.ts';
import { openChain, bitmapExtents, allocationExtents } from '../../electron/core/qcow2/chain.ts';
import { ExtentBuilder, toExtents } from '../../electron/core/extents.ts';
import { tempDir, qemuImg, qemuIo, waitListening, type Cleanup } from '../helpers/qemu.ts';

async function qemuNbd(t: Cleanup, dir: string, args: string[]): Promise<string> {
  const sock = path.join(dir, `nbd-${Math.random().toString(36).slice(2, 8)}.sock`);
  const child = spawn('qemu-nbd', ['-k', sock, '-t', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  t.onTestFinished(() => {
    child.kill('SIGKILL');
  });
  await waitListening(sock, child, () => `qemu-nbd: ${err}`);
  return sock;
}

function seededWrites(n: number, clusters: number, seed: number): string[] {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, () => `write -P 3 ${Math.floor(rnd() * clusters) * 65536} ${(1 + Math.floor(rnd() * 3)) * 65536}`);
}

test('bitmap contents over NBD equal the offline reader, across many block-status requests', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'a.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '64M');
  qemuImg('bitmap', '--add', '-g', '64K', img, 'b1');
  qemuIo(img, seededWrites(60, 1000, 7));
  const offline = openChain(img);
  const want = toExtents(bitmapExtents(offline.layers[0], offline.layers[0].bitmaps[0]));
  offline.close();
  assert.ok(want.length > 20);

  const sock = await qemuNbd(t, dir, ['-r', '-f', 'qcow2', '-B', 'b1', img]);
  const c = await NbdClient.open(sock, '', ['qemu:dirty-bitmap:b1', 'qemu:unknown-context']);
  t.onTestFinished(() => c.close());
  assert.equal(c.export?.size, 64 * 1024 * 1024);
  // Unknown contexts are silently not granted (a QEMU trait the caller must check).
  assert.deepEqual([...c.export!.contexts.keys()], ['qemu:dirty-bitmap:b1']);
  const b = new ExtentBuilder();
  await c.blockStatus('qemu:dirty-bitmap:b1', (off, len, flags) => {
    if (flags & 1) b.push(off, off + len);
  });
  assert.deepEqual(toExtents(b.finish()), want);
  await assert.rejects(c.blockStatus('qemu:unknown-context', () => {}), (e: any) => e.code === 'E_BAD_INPUT');
});

test('allocation depth over NBD: depth 1 is exactly the top layer allocation', async (t) => {
  const dir = tempDir(t);
  const base = path.join(dir, 'base.qcow2');
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, '32M');
  qemuIo(base, seededWrites(30, 500, 3));
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
  qemuIo(top, [...seededWrites(25, 500, 11), 'write -z 1M 128k']);
  const offline = openChain(top);
  const want = toExtents(allocationExtents(offline.layers[0]));
  offline.close();
  const sock = await qemuNbd(t, dir, ['-r', '-f', 'qcow2', '-A', top]);
  const c = await NbdClient.open(sock, '', ['qemu:allocation-depth']);
  t.onTestFinished(() => c.close());
  const b = new ExtentBuilder();
  await c.blockStatus('qemu:allocation-depth', (off, len, depth) => {
    if (depth === 1) b.push(off, off + len);
  });
  assert.deepEqual(toExtents(b.finish()), want);
});

test('a server that is not NBD, and a missing socket, give typed errors naming the socket', async (t) => {
  const dir = tempDir(t);
  const bogus = path.join(dir, 'bogus.sock');
  const server = net.createServer((s) => s.end('HELLO this is not nbd at all\n'));
  await new Promise<void>((r) => server.listen(bogus, r));
  t.onTestFinished(() => {
    server.close();
  });
  await assert.rejects(NbdClient.open(bogus, '', []), (e: any) => e.code === 'E_IO' && e.message.startsWith(bogus) && /not an NBD server/.test(e.message));
  const missing = path.join(dir, 'none.sock');
  await assert.rejects(NbdClient.open(missing, '', []), (e: any) => e.message.startsWith(missing) && /no such socket/.test(e.message));
});

test('an unknown export is refused with the server reason', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'a.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '1M');
  const sock = await qemuNbd(t, dir, ['-r', '-f', 'qcow2', '-x', 'disk', img]);
  await assert.rejects(NbdClient.open(sock, 'nope', []), (e: any) => /refused \(unknown export\)/.test(e.message));
  const ok = await NbdClient.open(sock, 'disk', []);
  assert.equal(ok.export?.size, 1024 * 1024);
  await ok.close();
});
