// Workspace and scan history. Each scan stores what later detects external edits: per layer the
// allocation and every bitmap's flags and dirty count, plus the differences from the previous scan.
import type { Db } from './db.ts';
import type { ChainReport, ScanRecord, WorkspaceImage } from '../contract.ts';

type ScanLayers = ScanRecord['layers'];

export class History {
  constructor(private db: Db) {}

  listWorkspace(): WorkspaceImage[] {
    return (this.db.prepare('SELECT path, added_at, last_scan_at FROM workspace_images ORDER BY added_at, path').all() as any[]).map((r) => ({
      path: r.path,
      addedAt: r.added_at,
      lastScanAt: r.last_scan_at,
    }));
  }

  addImage(path: string, now = new Date().toISOString()): WorkspaceImage {
    this.db.prepare('INSERT OR IGNORE INTO workspace_images (path, added_at) VALUES (?, ?)').run(path, now);
    const r = this.db.prepare('SELECT path, added_at, last_scan_at FROM workspace_images WHERE path = ?').get(path) as any;
    return { path: r.path, addedAt: r.added_at, lastScanAt: r.last_scan_at };
  }

  removeImage(path: string): boolean {
    return this.db.prepare('DELETE FROM workspace_images WHERE path = ?').run(path).changes > 0;
  }

  recordScan(report: ChainReport): ScanRecord {
    const layers: ScanLayers = report.layers.map((l) => ({
      path: l.path,
      allocatedBytes: l.allocatedBytes,
      bitmaps: l.bitmaps.map((b) => ({ name: b.name, flags: b.flags, dirtyBytes: b.dirtyBytes })),
    }));
    const prev = this.db.prepare('SELECT layers_json FROM scans WHERE image = ? ORDER BY id DESC LIMIT 1').get(report.image) as
      | { layers_json: string }
      | undefined;
    const changes = prev ? diffScans(JSON.parse(prev.layers_json) as ScanLayers, layers) : [];
    const id = this.db.transaction(() => {
      const info = this.db
        .prepare('INSERT INTO scans (image, scanned_at, scan_ms, layers_json, changes_json) VALUES (?, ?, ?, ?, ?)')
        .run(report.image, report.scannedAt, report.scanMs, JSON.stringify(layers), JSON.stringify(changes));
      this.db.prepare('UPDATE workspace_images SET last_scan_at = ? WHERE path = ?').run(report.scannedAt, report.image);
      return Number(info.lastInsertRowid);
    })();
    return { id, image: report.image, scannedAt: report.scannedAt, layers, changes };
  }

  scans(image?: string, limit = 100): ScanRecord[] {
    const lim = Math.max(1, Math.min(1000, Math.floor(limit)));
    const rows = (image
      ? this.db.prepare('SELECT * FROM scans WHERE image = ? ORDER BY id DESC LIMIT ?').all(image, lim)
      : this.db.prepare('SELECT * FROM scans ORDER BY id DESC LIMIT ?').all(lim)) as any[];
    return rows.map((r) => ({ id: r.id, image: r.image, scannedAt: r.scanned_at, layers: JSON.parse(r.layers_json), changes: JSON.parse(r.changes_json) }));
  }
}

const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);

/** Plain-words differences between two scans of one chain: what someone changed outside Strata. */
export function diffScans(before: ScanLayers, after: ScanLayers): string[] {
  const out: string[] = [];
  const beforePaths = before.map((l) => l.path);
  const afterPaths = after.map((l) => l.path);
  for (const p of afterPaths) if (!beforePaths.includes(p)) out.push(`layer ${base(p)} appeared in the chain`);
  for (const p of beforePaths) if (!afterPaths.includes(p)) out.push(`layer ${base(p)} left the chain`);
  for (const a of after) {
    const b = before.find((l) => l.path === a.path);
    if (!b) continue;
    if (a.allocatedBytes !== b.allocatedBytes) out.push(`layer ${base(a.path)}: allocated bytes ${b.allocatedBytes} → ${a.allocatedBytes}`);
    for (const bm of a.bitmaps) {
      const old = b.bitmaps.find((x) => x.name === bm.name);
      if (!old) {
        out.push(`bitmap '${bm.name}' added in ${base(a.path)}`);
        continue;
      }
      if (old.flags.join() !== bm.flags.join()) out.push(`bitmap '${bm.name}' in ${base(a.path)}: flags [${old.flags.join(', ')}] → [${bm.flags.join(', ')}]`);
      if (old.dirtyBytes !== bm.dirtyBytes) out.push(`bitmap '${bm.name}' in ${base(a.path)}: dirty bytes ${old.dirtyBytes} → ${bm.dirtyBytes}`);
    }
    for (const old of b.bitmaps) if (!a.bitmaps.some((x) => x.name === old.name)) out.push(`bitmap '${old.name}' removed from ${base(a.path)}`);
  }
  return out;
}
