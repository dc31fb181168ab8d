// A filesystem that takes an O_DIRECT open but refuses its I/O (some FUSE filesystems, older ZFS):
// the restore's `qemu-img convert -t none` fails there after writing part of the file. Fault
// injection: a `qemu-img` first on PATH that, for a convert with `-t none`, writes garbage into the
// target and fails as such a filesystem does; every other invocation is the real qemu-img. The
// restore then copies through the page cache and still restores the point exactly, and a convert
// that fails both ways (a real error) fails the restore with no file left.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { tmp, makeDisk, truthOf, sameDisk, opts, tsScript } from './helpers.ts';

const ENTRY = path.join(import.meta.dirname, 'strata-entry.ts');
const REAL = execFileSync('sh', ['-c', 'command -v qemu-img'], { encoding: 'utf8' }).trim();

/** A PATH folder whose qemu-img refuses `-t none` I/O (`mode` direct) or every convert (`mode` all), logging each convert. */
function shim(dir: string, mode: 'direct' | 'all'): { bin: string; log: string } {
  const bin = path.join(dir, 'shim-bin');
  const log = path.join(dir, 'shim.log');
  fs.mkdirSync(bin);
  const script = `#!/bin/sh
[ "$1" = convert ] || exec "${REAL}" "$@"
echo "$*" >> "${log}"
case " $* " in *" -t none "*) direct=1 ;; *) direct=0 ;; esac
if [ "$direct" = 1 ] || [ "${mode}" = all ]; then
  for last; do :; done
  printf 'half-written' > "$last"
  echo "qemu-img: error while writing at byte 0: Invalid argument" >&2
  exit 1
fi
exec "${REAL}" "$@"
`;
  fs.writeFileSync(path.join(bin, 'qemu-img'), script, { mode: 0o755 });
  return { bin, log };
}

test('O_DIRECT open accepted but its I/O refused: the restore falls back to the page cache and restores exactly', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x61 0 2M', 'write -P 0x62 9M 512k']);
  const full = await takeBackup(opts(dir, disk));
  const truth = truthOf(disk, dir, 'full');
  const { bin, log } = shim(dir, 'direct');
  const to = path.join(dir, 'restored.qcow2');
  const r = await tsScript(ENTRY, path.join(dir, 'home'), ['restore', '--repo', path.join(dir, 'repo'), full.id, '--to', to, '--json'], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(r.code, 0, r.err);
  const converts = fs.readFileSync(log, 'utf8').trim().split('\n');
  assert.equal(converts.length, 2, 'tried with -t none, then without');
  assert.match(converts[0], / -t none /);
  assert.doesNotMatch(converts[1], / -t none /);
  assert.ok(sameDisk(to, truth), 'the restored image is the point, not the half-written attempt');
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('strata-restore')), [], 'no temporary file left');
});

test('a convert that fails both ways fails the restore, naming the backup file, with no file left', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x71 0 1M']);
  const full = await takeBackup(opts(dir, disk));
  const { bin } = shim(dir, 'all');
  const to = path.join(dir, 'restored.raw');
  const r = await tsScript(ENTRY, path.join(dir, 'home'), ['restore', '--repo', path.join(dir, 'repo'), full.id, '--to', to, '--format', 'raw'], { PATH: `${bin}:${process.env.PATH}` });
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, new RegExp(`${full.id}\\.qcow2`));
  assert.match(r.err, /Invalid argument/);
  assert.equal(fs.existsSync(to), false);
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('strata-restore')), [], 'no temporary file left');
});
