// strata bitmap show NAME --socket S --node N against real qemu-storage-daemons: the live contents
// equal what the offline reader finds once the daemon has stored the bitmaps, and nothing is left
// behind (no export, no extra bitmap, no NBD server); refusals exit 2 with one line naming the file.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir, qemuImg, qemuIo, run } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { buildSeed, clusters } from '../core/seed-chain.ts';
import { strata, withQmp, leftovers, scatteredWrites, waitExit } from './helpers.ts';

const blockdev = (node: string, file: string, ro = false) => ['--blockdev', `driver=qcow2,node-name=${node},read-only=${ro ? 'on' : 'off'},file.driver=file,file.filename=${file}`];

test('seed chain: live show of recording and disabled bitmaps (top and read-only backing node) equals the offline reader after the daemon stops', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top, base } = buildSeed(dir);
  const d = await startDaemon(t, dir, blockdev('top', top));
  const baseNode = await withQmp(d.socket, async (q) => {
    const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
    return nodes.find((n) => n.drv === 'qcow2' && n.file === base)['node-name'] as string;
  });
  const before = await leftovers(d.socket);

  const live: Record<string, any> = {};
  for (const [name, node] of [['bitmap3', 'top'], ['bitmap1', baseNode], ['bitmap2', baseNode]]) {
    const r = await strata(home, 'bitmap', 'show', name, '--socket', d.socket, '--node', node, '--json');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, '');
    live[name] = JSON.parse(r.out);
  }
  assert.deepEqual(Object.keys(live.bitmap3), ['layer', 'name', 'granularity', 'flags', 'dirtyBytes', 'extents']);
  assert.equal(live.bitmap3.layer, top);
  assert.equal(live.bitmap1.layer, base);
  assert.deepEqual(live.bitmap3.flags, ['auto']);
  assert.deepEqual(live.bitmap1.flags, []);
  assert.deepEqual(live.bitmap2.flags, ['auto']);
  // The seed table (domain.md): bitmap1 --11----, bitmap2 ----11--, bitmap3 ---1-11-.
  assert.equal(clusters(live.bitmap1.extents), '--11----');
  assert.equal(clusters(live.bitmap2.extents), '----11--');
  assert.equal(clusters(live.bitmap3.extents), '---1-11-');

  // The text form, and a second call on the same bitmap works the same.
  const text = await strata(home, 'bitmap', 'show', 'bitmap3', '--socket', d.socket, '--node', 'top');
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /^bitmap 'bitmap3' on node 'top' \(.*top\.qcow2\), live from /);
  assert.match(text.out, /recording, persistent, granularity 64 KiB, dirty 192 KiB in 2 extents/);

  assert.deepEqual(await leftovers(d.socket), before);
  assert.deepEqual(before.exports, []);
  assert.equal(before.nbdServerRunning, false);
  assert.deepEqual(fs.readdirSync(path.join(home, 'run')), [], 'the private NBD socket folder is removed');

  d.child.kill('SIGTERM'); // QEMU stores the persistent bitmaps
  await waitExit(d.child);
  for (const name of ['bitmap1', 'bitmap2', 'bitmap3']) {
    const off = await strata(home, 'bitmap', 'show', top, name, '--json');
    assert.equal(off.code, 0, off.err);
    assert.deepEqual(JSON.parse(off.out), live[name], name);
  }
});

test('1 GiB image, thousands of scattered writes (some only in memory, through the daemon): live equals offline for 3 granularities, recording and disabled', { timeout: 120000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const img = path.join(dir, 'big.qcow2');
  // A size that is not a multiple of the largest granularity: the last granule is partial.
  const size = 1024 * 1024 * 1024 + 192 * 1024;
  qemuImg('create', '-q', '-f', 'qcow2', img, String(size));
  qemuImg('bitmap', '--add', '-g', '64K', img, 'rec');
  qemuImg('bitmap', '--add', '-g', '4K', img, 'fine');
  qemuImg('bitmap', '--add', '-g', '1M', img, 'coarse');
  qemuImg('bitmap', '--add', '-g', '64K', img, 'dis');
  // Phase 1: all four record. Phase 2: 'dis' disabled first. Phase 3: live, through an NBD export.
  qemuIo(img, [...scatteredWrites(1200, size, 1, 0x11), `write -P 0x12 ${size - 4096} 4096`]);
  qemuImg('bitmap', '--disable', img, 'dis');
  qemuIo(img, scatteredWrites(1200, size, 2, 0x22));

  const d = await startDaemon(t, dir, blockdev('disk', img));
  const nbdSock = path.join(dir, 'w.sock');
  await withQmp(d.socket, async (q) => {
    await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbdSock } } });
    await q.execute('block-export-add', { type: 'nbd', id: 'w', name: 'w', 'node-name': 'disk', writable: true });
    run('qemu-io', ['-f', 'raw', ...scatteredWrites(600, size, 3, 0x33).flatMap((c) => ['-c', c]), `nbd+unix:///w?socket=${nbdSock}`]);
    const gone = q.waitEvent((e) => e.event === 'BLOCK_EXPORT_DELETED');
    await q.execute('block-export-del', { id: 'w' });
    await gone;
    await q.execute('nbd-server-stop');
  });
  const counts = await withQmp(d.socket, async (q) => {
    const n = (await q.execute<any[]>('query-named-block-nodes', { flat: true })).find((x) => x['node-name'] === 'disk');
    return Object.fromEntries((n['dirty-bitmaps'] as any[]).map((b) => [b.name, b.count]));
  });
  const before = await leftovers(d.socket);

  const live: Record<string, any> = {};
  for (const name of ['rec', 'fine', 'coarse', 'dis']) {
    const r = await strata(home, 'bitmap', 'show', name, '--socket', d.socket, '--node', 'disk', '--json');
    assert.equal(r.code, 0, r.err);
    live[name] = JSON.parse(r.out);
    // QEMU's count is whole granules: a dirty partial last granule counts in full there, while the
    // export (and the offline reader) end at the virtual size.
    const g = live[name].granularity;
    const ext = live[name].extents;
    const tailDirty = ext.length > 0 && ext[ext.length - 1].start + ext[ext.length - 1].length === size;
    const overcount = tailDirty && size % g ? g - (size % g) : 0;
    assert.equal(live[name].dirtyBytes + overcount, counts[name], `${name}: QEMU's own count`);
    const again = await strata(home, 'bitmap', 'show', name, '--socket', d.socket, '--node', 'disk', '--json');
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(JSON.parse(again.out), live[name], `${name}: a second call reads the same`);
  }
  assert.ok(live.rec.extents.length > 1000, `${live.rec.extents.length} extents in rec`);
  assert.ok(live.fine.extents.length > live.rec.extents.length);
  assert.ok(live.dis.dirtyBytes < live.rec.dirtyBytes, 'the disabled bitmap missed phases 2 and 3');
  const last = live.coarse.extents[live.coarse.extents.length - 1];
  assert.equal(last.start + last.length, size, 'the partial last granule ends at the virtual size');
  assert.deepEqual(await leftovers(d.socket), before);
  assert.deepEqual(before.bitmaps, { disk: ['coarse', 'dis', 'fine', 'rec'] });

  d.child.kill('SIGTERM');
  await waitExit(d.child);
  for (const name of ['rec', 'fine', 'coarse', 'dis']) {
    const off = await strata(home, 'bitmap', 'show', img, name, '--json');
    assert.equal(off.code, 0, off.err);
    assert.deepEqual(JSON.parse(off.out), live[name], name);
  }
});

test('an inconsistent bitmap (after a kill -9) is refused: exit 2, one line naming the file; nothing left behind', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const img = path.join(dir, 'crashed.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '64M');
  qemuImg('bitmap', '--add', '-g', '64K', img, 'cp1');
  qemuIo(img, ['write -P 1 0 1M']);
  const first = await startDaemon(t, dir, blockdev('disk', img));
  // The daemon listens on its monitor before it opens the --blockdev: a QMP answer means the
  // image is open (and its bitmaps marked in-use on disk), so the kill leaves them inconsistent.
  await withQmp(first.socket, (q) => q.execute('query-named-block-nodes'));
  assert.match(qemuImg('info', '-U', img), /in-use/);
  first.child.kill('SIGKILL');
  await waitExit(first.child);
  const d = await startDaemon(t, dir, blockdev('disk', img));
  const before = await leftovers(d.socket);
  const r = await strata(home, 'bitmap', 'show', 'cp1', '--socket', d.socket, '--node', 'disk', '--json');
  assert.equal(r.code, 2, r.err);
  assert.equal(r.out, '');
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.match(r.err, /^strata: .*crashed\.qcow2: bitmap 'cp1' is inconsistent/);
  assert.deepEqual(await leftovers(d.socket), before);
});

test('a QEMU that already runs an NBD server is refused (exit 2, naming the socket), and its server and export are untouched', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top } = buildSeed(dir);
  const d = await startDaemon(t, dir, blockdev('top', top));
  const theirs = path.join(dir, 'theirs.sock');
  await withQmp(d.socket, async (q) => {
    await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: theirs } } });
    await q.execute('block-export-add', { type: 'nbd', id: 'backup', 'node-name': 'top', writable: false });
  });
  const r = await strata(home, 'bitmap', 'show', 'bitmap3', '--socket', d.socket, '--node', 'top');
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.ok(r.err.startsWith(`strata: ${d.socket}: this QEMU already runs an NBD server`), r.err);
  await withQmp(d.socket, async (q) => {
    assert.deepEqual((await q.execute<any[]>('query-block-exports')).map((e) => e.id), ['backup']);
    const n = (await q.execute<any[]>('query-named-block-nodes', { flat: true })).find((x) => x['node-name'] === 'top');
    assert.deepEqual(n['dirty-bitmaps'].map((b: any) => b.name), ['bitmap3']);
  });
  assert.ok(fs.existsSync(theirs), 'their NBD socket is still there');
});

test('argument errors exit 2 with one line; the offline form is unchanged', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const home = path.join(dir, 'home');
  const { top } = buildSeed(dir);
  const d = await startDaemon(t, dir, blockdev('top', top, true));
  const cases: [string[], RegExp][] = [
    [['bitmap', 'show', 'bitmap3', '--socket', d.socket], /--socket needs --node/],
    [['bitmap', 'show', 'bitmap3', '--socket', d.socket, '--node', 'top', '--layer', top], /--layer is for an offline IMAGE/],
    [['bitmap', 'show', top, 'bitmap3', '--node', 'top'], /--node needs --socket/],
    [['bitmap', 'show', 'a', 'b', '--socket', d.socket, '--node', 'top'], /wrong arguments/],
    [['bitmap', 'show', 'bitmap3', '--socket', d.socket, '--node', 'nope'], /no block node named 'nope' \(named nodes: top /],
    [['bitmap', 'show', 'nope', '--socket', d.socket, '--node', 'top'], /top\.qcow2: no bitmap named 'nope' on node 'top' \(it has: bitmap3\)/],
    [['bitmap', 'show', 'bitmap3', '--socket', path.join(dir, 'missing.sock'), '--node', 'top'], /missing\.sock: cannot connect to the QMP monitor: no such socket/],
  ];
  for (const [args, re] of cases) {
    const r = await strata(home, ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, re);
  }
  // A read-only node (the daemon opened the image read-only) can still be read live.
  const ro = await strata(home, 'bitmap', 'show', 'bitmap3', '--socket', d.socket, '--node', 'top', '--json');
  assert.equal(ro.code, 0, ro.err);
  assert.equal(clusters(JSON.parse(ro.out).extents), '---1-11-');
  const off = await strata(home, 'bitmap', 'show', top, 'bitmap2', '--json');
  assert.equal(off.code, 0, off.err);
  assert.equal(clusters(JSON.parse(off.out).extents), '----11--');
  const help = await strata(home, 'bitmap', 'show', '--help');
  assert.match(help.out, /strata bitmap show NAME --socket PATH --node NODE/);
  const main = await strata(home, '--help');
  assert.match(main.out, /bitmap show NAME --socket PATH --node NODE/);
  assert.match(main.out, /jobs --socket PATH/);
});
