// Internal snapshots: Strata reports none of them, but QEMU walks the whole snapshot table when it
// opens an image (block/qcow2-snapshot.c, qcow2_read_snapshots) and refuses the image when an
// entry carries too much extra data or the table grows past its ceiling. The same walk here, one
// 40-byte entry header at a time (names and extra data are skipped, never allocated), reading
// zeroes past the end of the file as QEMU's block layer does.
import type { ImageFile } from './image-file.ts';
import type { Qcow2Header } from './header.ts';
import { badField } from '../errors.ts';

const ENTRY_HEADER = 40; // sizeof(QCowSnapshotHeader)
const MAX_EXTRA_DATA = 1024; // QCOW_MAX_SNAPSHOT_EXTRA_DATA
const MAX_TABLE_BYTES = 1024 * 65536; // QCOW_MAX_SNAPSHOTS_SIZE

const round8 = (n: number) => Math.ceil(n / 8) * 8;

export function checkSnapshotTable(img: ImageFile, h: Qcow2Header): void {
  const f = img.path;
  let pos = h.snapshotsOffset;
  let length = 0;
  for (let i = 0; i < h.nbSnapshots; i++) {
    pos = round8(pos);
    length = round8(length);
    let extra = 0;
    let names = 0;
    if (pos < img.size) {
      const e = img.readPadded(pos, ENTRY_HEADER, `snapshot table entry ${i}`);
      extra = e.readUInt32BE(36);
      if (extra > MAX_EXTRA_DATA) {
        throw badField(f, `snapshot table entry ${i} field extra_data_size`, pos + 36, `is ${extra}, QEMU's limit is ${MAX_EXTRA_DATA}`);
      }
      names = e.readUInt16BE(12) + e.readUInt16BE(14);
    } // past the end of the file an entry reads as zeroes: 40 bytes, nothing more
    const entry = ENTRY_HEADER + extra + names;
    length += entry;
    pos += entry;
    if (length > MAX_TABLE_BYTES) {
      throw badField(f, 'header field nb_snapshots', 60, `is ${h.nbSnapshots}: the snapshot table at ${h.snapshotsOffset} passes QEMU's limit of ${MAX_TABLE_BYTES} bytes at entry ${i}`);
    }
  }
}
