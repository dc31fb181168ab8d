// Formats Strata does not read are refused by name, never misread as raw.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openChain } from '../../electron/core/qcow2/chain.ts';
import { inspect } from '../../electron/core/inspect.ts';
import { tempDir, qemuImg } from '../helpers/qemu.ts';

for (const fmt of ['vmdk', 'vdi', 'vpc', 'vhdx', 'qed']) {
  test(`a ${fmt} image is refused by name, directly or as a backing file`, (t) => {
    const dir = tempDir(t);
    const base = path.join(dir, `base.${fmt}`);
    const top = path.join(dir, 'top.qcow2');
    qemuImg('create', '-q', '-f', fmt, base, '4M');
    // Probed by magic (no format given): refused, not read as raw.
    assert.throws(
      () => openChain(base),
      (e: any) => e.code === 'E_UNSUPPORTED' && e.file === base && e.message.startsWith(base),
    );
    qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', fmt, top);
    assert.throws(
      () => openChain(top),
      (e: any) => e.code === 'E_UNSUPPORTED' && e.file === top && e.message.includes(`backing format '${fmt}'`),
    );
  });
}

test('a raw image is one raw layer that defines every byte', (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'disk.img');
  qemuImg('create', '-q', '-f', 'raw', img, '3M');
  const r = inspect(img);
  assert.equal(r.layers.length, 1);
  assert.equal(r.layers[0].format, 'raw');
  assert.equal(r.layers[0].virtualSize, 3 * 1024 * 1024);
  assert.equal(r.layers[0].clusterSize, null);
});

test('a text file or an archive read as raw is shown with a warning; a real raw disk is not', ({ onTestFinished }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-raw-'));
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'just some notes\n');
  const w = inspect(text).layers[0].warnings;
  assert.equal(w.length, 2, w.join(' | '));
  assert.match(w[0], /size \(16 bytes\) is not a whole number of 512-byte sectors/);
  assert.match(w[1], /starts with text/);
  const gz = path.join(dir, 'backup.gz');
  fs.writeFileSync(gz, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(1020)]));
  assert.deepEqual(inspect(gz).layers[0].warnings, ['it starts like a gzip archive, not a disk']);
  const disk = path.join(dir, 'disk.raw');
  fs.writeFileSync(disk, Buffer.alloc(1024 * 1024));
  assert.deepEqual(inspect(disk).layers[0].warnings, []);
  const mbr = Buffer.alloc(4096);
  mbr.writeUInt16LE(0xaa55, 510);
  fs.writeFileSync(disk, mbr);
  assert.deepEqual(inspect(disk).layers[0].warnings, [], 'a boot sector is a disk');
});
