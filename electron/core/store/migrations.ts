// Versioned schema. A migration is appended, never edited: user databases carry the older ones.
export const MIGRATIONS: { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE workspace_images (
        path TEXT PRIMARY KEY,
        added_at TEXT NOT NULL,
        last_scan_at TEXT
      );
      CREATE TABLE scans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image TEXT NOT NULL,
        scanned_at TEXT NOT NULL,
        scan_ms REAL NOT NULL,
        layers_json TEXT NOT NULL,
        changes_json TEXT NOT NULL
      );
      CREATE INDEX scans_image ON scans(image, id);
    `,
  },
  {
    version: 2,
    sql: `
      -- Every change Strata makes to an image: journaled before its first QMP command.
      CREATE TABLE operations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        summary TEXT NOT NULL,
        plan_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'running', 'done', 'failed')),
        error TEXT,
        log_json TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        finished_at TEXT
      );
      CREATE INDEX operations_target ON operations(target, id);
    `,
  },
  {
    version: 3,
    sql: `
      -- Every QEMU job Strata started or saw, and every state it went through.
      CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        qemu_id TEXT NOT NULL,
        connection TEXT NOT NULL,
        type TEXT NOT NULL,
        args_json TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT
      );
      CREATE TABLE job_events (
        job INTEGER NOT NULL REFERENCES jobs(id),
        at TEXT NOT NULL,
        state TEXT NOT NULL,
        note TEXT
      );
      CREATE INDEX job_events_job ON job_events(job);
    `,
  },
  {
    version: 4,
    sql: `
      -- Multi-step plans, journaled before their first step: what survives a crash of Strata.
      CREATE TABLE plans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        summary TEXT NOT NULL,
        target_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done', 'rolled-back', 'failed')),
        error TEXT,
        resolution TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT
      );
      CREATE TABLE plan_steps (
        plan INTEGER NOT NULL REFERENCES plans(id),
        idx INTEGER NOT NULL,
        label TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'undone', 'failed')),
        note TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (plan, idx)
      );
    `,
  },
  {
    version: 5,
    sql: `
      -- A job step's progress as a typed column (what a restart reads), not a note to be parsed.
      ALTER TABLE plan_steps ADD COLUMN phase TEXT CHECK (phase IS NULL OR phase IN ('starting', 'started', 'ready', 'concluded', 'failed', 'dismissed', 'cancelled'));
      ALTER TABLE plans ADD COLUMN effects_json TEXT;
      -- Plans journaled before version 5 said the same in their notes.
      UPDATE plan_steps SET phase = CASE
          WHEN note LIKE '%failed:%' THEN 'failed'
          WHEN note LIKE '%concluded%' THEN 'dismissed'
          WHEN note LIKE 'started job%' THEN 'started'
          WHEN note LIKE 'starting job%' THEN 'starting'
        END
        WHERE spec_json LIKE '{"kind":"job"%' AND note IS NOT NULL;
    `,
  },
  {
    version: 6,
    sql: `
      -- Backups: the catalog mirrors each repository's manifest (rebuilt from it); the journal holds
      -- backups in flight, written before the first QMP command, so a crash is cleaned up next time.
      CREATE TABLE backup_catalog (
        repo TEXT NOT NULL,
        id TEXT NOT NULL,
        level TEXT NOT NULL CHECK (level IN ('full', 'inc', 'diff', 'copy')),
        parent TEXT,
        checkpoint TEXT,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        file TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        dirty_bytes INTEGER NOT NULL,
        state TEXT NOT NULL,
        consistency TEXT NOT NULL CHECK (consistency IN ('crash', 'frozen', 'offline')),
        PRIMARY KEY (repo, id)
      );
      CREATE TABLE backup_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        repo TEXT NOT NULL,
        backup_id TEXT NOT NULL,
        image TEXT NOT NULL,
        partial TEXT NOT NULL,
        final TEXT NOT NULL,
        checkpoint TEXT,
        daemon_pid INTEGER,
        state TEXT NOT NULL CHECK (state IN ('planned', 'running', 'writing-manifest', 'ok', 'failed', 'cancelled')),
        note TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT
      );
      CREATE INDEX backup_journal_repo ON backup_journal(repo, state);
    `,
  },
  {
    version: 7,
    sql: `
      -- How healthy the chain looked at each scan (checkpoint states, a missing backing file), so the
      -- workspace can show it before the image is read again.
      ALTER TABLE scans ADD COLUMN health_json TEXT;
    `,
  },
  {
    version: 8,
    sql: `
      -- Restores, verifies and prunes of backup repositories (backups themselves are in
      -- backup_journal), for the activity history. A prune is written here before its first write.
      CREATE TABLE backup_activity (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL CHECK (action IN ('restore', 'verify', 'prune')),
        repo TEXT NOT NULL,
        file TEXT,
        state TEXT NOT NULL CHECK (state IN ('running', 'ok', 'failed', 'damaged')),
        summary TEXT NOT NULL,
        points_json TEXT NOT NULL,
        bytes INTEGER,
        note TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT
      );
      CREATE INDEX backup_activity_repo ON backup_activity(repo, action, state);
    `,
  },
  {
    version: 9,
    sql: `
      -- One QMP traffic log per connection: a session per QMP connection Strata opens, and every line
      -- sent and received on it, raw. Operations, jobs and plan steps reference their lines by tag
      -- (the columns operation, job, plan/step); a job's events are found by its QEMU id in its session.
      CREATE TABLE qmp_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        label TEXT NOT NULL,
        socket TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        closed_at TEXT,
        close_reason TEXT
      );
      CREATE TABLE qmp_traffic (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session INTEGER NOT NULL REFERENCES qmp_sessions(id),
        dir TEXT NOT NULL CHECK (dir IN ('out', 'in')),
        line TEXT NOT NULL,
        at TEXT NOT NULL,
        call_id TEXT,
        event TEXT,
        qemu_job TEXT,
        operation INTEGER,
        job INTEGER,
        plan INTEGER,
        step INTEGER
      );
      CREATE INDEX qmp_traffic_session ON qmp_traffic(session, id);
      CREATE INDEX qmp_traffic_operation ON qmp_traffic(operation) WHERE operation IS NOT NULL;
      CREATE INDEX qmp_traffic_job ON qmp_traffic(job) WHERE job IS NOT NULL;
      CREATE INDEX qmp_traffic_step ON qmp_traffic(plan, step) WHERE plan IS NOT NULL;
      CREATE INDEX qmp_traffic_qemu_job ON qmp_traffic(session, qemu_job) WHERE qemu_job IS NOT NULL;
      -- The session a job ran in (its events are that session's lines about its QEMU id).
      ALTER TABLE jobs ADD COLUMN session INTEGER;
    `,
  },
  {
    version: 10,
    sql: `
      -- A prune's journal: the step it has begun and what it needs to be finished or rolled back
      -- after a crash (the points it removes, each merge with its copy and, once digested, its new
      -- manifest fields). Written before the first write, updated as each step begins.
      ALTER TABLE backup_activity ADD COLUMN step TEXT;
      ALTER TABLE backup_activity ADD COLUMN journal_json TEXT;
    `,
  },
  {
    version: 11,
    sql: `
      -- The manifest's restored list mirrored for the app (rebuilt from it with backup_catalog): a
      -- disk restored from point id with a fresh checkpoint, one per file and repository.
      CREATE TABLE backup_restored (
        repo TEXT NOT NULL,
        image TEXT NOT NULL,
        id TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        restored_at TEXT NOT NULL,
        PRIMARY KEY (repo, image)
      );
    `,
  },
];
