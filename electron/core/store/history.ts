// Workspace and scan history. Each scan stores what later detects external edits: per layer the
// allocation and every bitmap's flags and dirty count, plus the differences from the previous scan.
import type { Db } from './db.ts';
import type { ChainReport, Drift, ScanRecord, WorkspaceImage } from '../contract.ts';
import { driftBetween, driftText } from '../history/drift.ts';
import { chainHealth } from '../history/health.ts';

type ScanLayers = ScanRecord['layers'];

/** A workspace image with its newest scan's layers and health (null columns before the first scan). */
const IMAGE_WITH_LAST_SCAN = `SELECT w.path, w.added_at, w.last_scan_at, s.layers_json, s.health_json FROM workspace_images w
  LEFT JOIN scans s ON s.id = (SELECT MAX(id) FROM scans WHERE image = w.path)`;

function imageRow(r: any): WorkspaceImage {
  return {
    path: r.path,
    addedAt: r.added_at,
    lastScanAt: r.last_scan_at,
    lastScan: r.layers_json ? { layerCount: (JSON.parse(r.layers_json) as unknown[]).length, health: r.health_json ? JSON.parse(r.health_json) : null } : null,
  };
}

export class History {
  constructor(private db: Db) {}

  listWorkspace(): WorkspaceImage[] {
    return (this.db.prepare(`${IMAGE_WITH_LAST_SCAN} ORDER BY w.added_at, w.path`).all() as any[]).map(imageRow);
  }

  addImage(path: string, now = new Date().toISOString()): WorkspaceImage {
    this.db.prepare('INSERT OR IGNORE INTO workspace_images (path, added_at) VALUES (?, ?)').run(path, now);
    return imageRow(this.db.prepare(`${IMAGE_WITH_LAST_SCAN} WHERE w.path = ?`).get(path));
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
    const drift = prev ? driftBetween(JSON.parse(prev.layers_json) as ScanLayers, layers) : [];
    const health = chainHealth(report);
    const id = this.db.transaction(() => {
      const info = this.db
        .prepare('INSERT INTO scans (image, scanned_at, scan_ms, layers_json, changes_json, health_json) VALUES (?, ?, ?, ?, ?, ?)')
        .run(report.image, report.scannedAt, report.scanMs, JSON.stringify(layers), JSON.stringify(drift), JSON.stringify(health));
      this.db.prepare('UPDATE workspace_images SET last_scan_at = ? WHERE path = ?').run(report.scannedAt, report.image);
      return Number(info.lastInsertRowid);
    })();
    return { id, image: report.image, scannedAt: report.scannedAt, layers, first: !prev, drift, changes: drift.map(driftText), health };
  }

  scans(image?: string, limit = 100): ScanRecord[] {
    const lim = Math.max(1, Math.min(1000, Math.floor(limit)));
    const rows = (image
      ? this.db.prepare('SELECT * FROM scans WHERE image = ? ORDER BY id DESC LIMIT ?').all(image, lim)
      : this.db.prepare('SELECT * FROM scans ORDER BY id DESC LIMIT ?').all(lim)) as any[];
    return rows.map((r) => {
      // Scans stored before drift codes kept plain words only.
      const stored = JSON.parse(r.changes_json) as (Drift | string)[];
      const drift = stored.filter((x): x is Drift => typeof x === 'object' && x !== null);
      const words = stored.filter((x): x is string => typeof x === 'string');
      const first = !this.db.prepare('SELECT 1 FROM scans WHERE image = ? AND id < ? LIMIT 1').get(r.image, r.id);
      return { id: r.id, image: r.image, scannedAt: r.scanned_at, layers: JSON.parse(r.layers_json), first, drift, changes: [...words, ...drift.map(driftText)], health: r.health_json ? JSON.parse(r.health_json) : null };
    });
  }
}

