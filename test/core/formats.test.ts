// Formats Strata does not read are refused by name, never misread as raw.
import { test } from 'vitest';
import assert from 'node:assert/strict';
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
