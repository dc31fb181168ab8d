// The SQLite store (better-sqlite3 on a real file). Opening applies pending migrations in one
// transaction each; the schema version lives in PRAGMA user_version.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.ts';
import { StrataError } from '../errors.ts';

export type Db = Database.Database;

export interface OpenDbOptions {
  /** a better_sqlite3.node built for another ABI (the Electron app passes its own) */
  nativeBinding?: string;
}

export function openDb(file: string, opts: OpenDbOptions = {}): Db {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let db: Db;
  try {
    db = new Database(file, opts.nativeBinding ? { nativeBinding: opts.nativeBinding } : {});
  } catch (e) {
    throw new StrataError('E_IO', `${file}: cannot open the history database: ${(e as Error).message}`, { file, cause: e });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('foreign_keys = ON');
  migrate(db, file);
  return db;
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function migrate(db: Db, file: string): void {
  const current = schemaVersion(db);
  const latest = MIGRATIONS[MIGRATIONS.length - 1].version;
  if (current > latest) {
    throw new StrataError('E_UNSUPPORTED', `${file}: history database is from a newer Strata (schema ${current}, this build knows ${latest})`, { file });
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}
