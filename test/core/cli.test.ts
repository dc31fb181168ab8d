// The strata command as a user runs it: the bundled bin, real images, the documented JSON shapes.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir, qemuImg, qemuIo, qemuMap } from '../helpers/qemu.ts';
import { buildSeed, clusters } from './seed-chain.ts';

const root = path.resolve(import.meta.dirname, '../..');
const strata = (...args: string[]) => {
  const r = spawnSync(process.execPath, [path.join(root, 'bin/strata.cjs'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('inspect --json has the documented shape, top layer first', (t) => {
  const { top, base } = buildSeed(tempDir(t));
  const r = strata('inspect', top, '--json');
  assert.equal(r.code, 0, r.err);
  const doc = JSON.parse(r.out);
  assert.equal(doc.image, top);
  assert.deepEqual(
    doc.layers.map((l: any) => Object.keys(l)),
    [0, 1].map(() => ['path', 'format', 'virtualSize', 'clusterSize', 'backingFile', 'backingFormat', 'allocatedBytes', 'bitmaps']),
  );
  assert.deepEqual(doc.layers.map((l: any) => l.path), [top, base]);
  assert.equal(doc.layers[0].backingFile, 'base.qcow2');
  assert.equal(doc.layers[0].backingFormat, 'qcow2');
  assert.equal(doc.layers[0].allocatedBytes, 3 * 65536);
  assert.equal(doc.layers[1].allocatedBytes, 6 * 65536);
  assert.deepEqual(doc.layers[1].bitmaps, [
    { name: 'bitmap1', granularity: 65536, flags: [], dirtyBytes: 2 * 65536 },
    { name: 'bitmap2', granularity: 65536, flags: ['auto'], dirtyBytes: 2 * 65536 },
  ]);
  assert.deepEqual(doc.layers[0].bitmaps, [{ name: 'bitmap3', granularity: 65536, flags: ['auto'], dirtyBytes: 3 * 65536 }]);
});

test('since gives the seed table exactly', (t) => {
  const { top } = buildSeed(tempDir(t));
  const expected: Record<string, string> = { bitmap1: '--11111-', bitmap2: '---1111-', bitmap3: '---1-11-' };
  for (const [cp, want] of Object.entries(expected)) {
    const r = strata('since', top, cp, '--json');
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out);
    assert.equal(doc.checkpoint, cp);
    assert.equal(clusters(doc.extents), want, cp);
    assert.equal(doc.dirtyBytes, want.split('1').length - 1 === 0 ? 0 : [...want].filter((c) => c === '1').length * 65536);
  }
});

test('bitmap show picks the topmost layer holding the name, or --layer', (t) => {
  const dir = tempDir(t);
  const { top, base } = buildSeed(dir);
  const r = strata('bitmap', 'show', top, 'bitmap2', '--json');
  assert.equal(r.code, 0, r.err);
  const doc = JSON.parse(r.out);
  assert.deepEqual(Object.keys(doc), ['layer', 'name', 'granularity', 'flags', 'dirtyBytes', 'extents']);
  assert.equal(doc.layer, base);
  assert.equal(clusters(doc.extents), '----11--');
  const bad = strata('bitmap', 'show', top, 'bitmap2', '--layer', top);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /top\.qcow2: no bitmap named 'bitmap2'/);
});

test('map --json agrees with qemu-img map', (t) => {
  const { top } = buildSeed(tempDir(t));
  const r = strata('map', top, '--json');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), qemuMap(top));
});

test('since exits 2 with the reason when a layer was made outside Strata', (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const outer = path.join(dir, 'outer.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', top, '-F', 'qcow2', outer);
  qemuIo(outer, ['write -P 0x55 0 64k']);
  const r = strata('since', outer, 'bitmap1');
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.match(r.err, /^strata: .*outer\.qcow2.*cannot be known.*outer\.qcow2 has no bitmap/);
  assert.equal(r.err.trim().split('\n').length, 1);
});

test('bad input exits 2 with one line naming the file; nothing is written', (t) => {
  const dir = tempDir(t);
  const junk = path.join(dir, 'junk.qcow2');
  fs.writeFileSync(junk, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(60)]));
  const before = fs.readFileSync(junk);
  for (const args of [['inspect', junk], ['inspect', path.join(dir, 'missing.qcow2')], ['map', dir]]) {
    const r = strata(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.equal(r.err.trim().split('\n').length, 1);
    assert.ok(r.err.includes(args[1]), r.err);
  }
  assert.deepEqual(fs.readFileSync(junk), before);
  assert.equal(strata('frobnicate').code, 2);
  assert.equal(strata('inspect').code, 2);
  assert.equal(strata('inspect', junk, '--bogus').code, 2);
});

test('inspect of a chain whose backing file is missing still exits 2 with its one-line error (scripts rely on it)', (t) => {
  const { top, base } = buildSeed(tempDir(t));
  fs.rmSync(base);
  const r = strata('inspect', top, '--json');
  assert.equal(r.code, 2, r.err);
  assert.equal(r.out, '');
  assert.equal(r.err.trim().split('\n').length, 1);
  assert.equal(r.err.trim(), `strata: ${top}: backing file ${base} does not exist`);
});

test('inspect of a truncated qcow2 names the file and offset and says what to do, on one line', (t) => {
  const { top } = buildSeed(tempDir(t));
  fs.truncateSync(top, 3 * 65536 + 100);
  const r = strata('inspect', top);
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err.trim().split('\n').length, 1);
  // the file, the field with its offset, then what the user can do
  assert.match(r.err, new RegExp(`^strata: ${top}: .*\\w+ \\(offset \\d+\\) .*; the file is shorter than its tables say: it was cut off .*restore it from a backup, or recover what is readable with \`qemu-img convert\`$`, 'm'));
});

test('--help for every command', () => {
  for (const args of [['--help'], ['inspect', '--help'], ['bitmap', 'show', '--help'], ['since', '--help'], ['map', '--help']]) {
    const r = strata(...args);
    assert.equal(r.code, 0);
    assert.match(r.out, /Usage: strata/);
  }
});

test('npx strata works from the repository after install (the README promise)', () => {
  const r = spawnSync('npx', ['--no-install', 'strata', '--version'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^strata \d+\.\d+\.\d+/);
});
