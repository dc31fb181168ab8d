// The composition root: builds the shared pieces (database, stores, connection manager, plans,
// events) and wires each feature's handlers. Both transports (Electron IPC, browser-mode WebSocket)
// call these through dispatch(), which validates every argument against its channel's schema first.
import path from 'node:path';
import type { AppInfo } from './contract.ts';
import { openDb, type Db } from './store/db.ts';
import { History } from './store/history.ts';
import { JobStore } from './store/jobs.ts';
import { QmpTrafficLog } from './store/qmp-traffic.ts';
import { Operations } from './store/operations.ts';
import { PlanStore } from './store/plans.ts';
import { ConnectionManager } from './connections/manager.ts';
import { ServicePlans } from './plans/service-plans.ts';
import { ARG_SCHEMAS, type ArgSchemas } from './arg-schemas.ts';
import type { EventListener, Handlers } from './handlers.ts';
import { createWorkspaceHandlers } from './workspace/handlers.ts';
import { createContentsHandlers } from './contents/handlers.ts';
import { createConnectionHandlers } from './connections/handlers.ts';
import { createJobHandlers } from './jobs/handlers.ts';
import { createBitmapHandlers } from './bitmaps/handlers.ts';
import { createPlanHandlers } from './plans/handlers.ts';
import { createHistoryHandlers } from './history/handlers.ts';
import { createRepairHandlers } from './repair/handlers.ts';
import { createChainOpHandlers } from './chain-ops/handlers.ts';
import { createBackupHandlers } from './backup/handlers.ts';
import { BackupActivityLog } from './backup/activity.ts';

export type { EventListener, Handlers } from './handlers.ts';

export interface ServiceOptions {
  dataDir: string;
  mode: AppInfo['mode'];
  /** better_sqlite3.node for the running ABI (Electron) */
  nativeBinding?: string;
  /** native file picker, Electron only */
  openImageDialog?: () => Promise<string | null>;
}

export interface Service {
  handlers: Handlers;
  /** each channel's argument schema; dispatch() validates against it (a test double may leave it out) */
  schemas?: ArgSchemas;
  subscribe(listener: EventListener): () => void;
  /** stops Strata's own daemons (SIGTERM: bitmaps are stored) and closes the database */
  close(): Promise<void>;
}

export function createService(opts: ServiceOptions): Service {
  const db: Db = openDb(path.join(opts.dataDir, 'strata.db'), { nativeBinding: opts.nativeBinding });
  const runtimeDir = path.join(opts.dataDir, 'run');
  const listeners = new Set<EventListener>();
  const emit: EventListener = (event, payload) => {
    for (const l of listeners) l(event, payload);
  };
  const history = new History(db);
  const jobStore = new JobStore(db);
  const operations = new Operations(db);
  const planStore = new PlanStore(db);
  const traffic = new QmpTrafficLog(db);
  const connections = new ConnectionManager({
    runtimeDir,
    store: jobStore,
    traffic,
    events: {
      connections: (list) => emit('connection:changed', list),
      jobChanged: (j) => emit('job:changed', j),
      jobProgress: (j) => emit('job:progress', j),
    },
  });
  const plans = new ServicePlans(planStore, (p) => emit('plan:changed', p), { runtimeDir, connection: (id) => connections.planConnection(id), traffic });
  // Plans a crash left unfinished are finished now, in the background; plan:changed says how.
  const recovered = plans.recoverAll().catch(() => []);

  const handlers = {
    ...createWorkspaceHandlers({ mode: opts.mode, dataDir: opts.dataDir, history, emit, openImageDialog: opts.openImageDialog, connections }),
    ...createContentsHandlers({ connections, runtimeDir }),
    ...createConnectionHandlers({ connections }),
    ...createJobHandlers({ connections }),
    ...createBitmapHandlers({ connections, operations, runtimeDir }),
    ...createPlanHandlers({ plans }),
    ...createHistoryHandlers({ history, jobStore, operations, planStore, backupActivity: new BackupActivityLog(db), recovered }),
    ...createRepairHandlers({ db, runtimeDir, history, emit }),
    ...createChainOpHandlers({ db, history, emit, runtimeDir, connections }),
    ...createBackupHandlers({ db, dataDir: opts.dataDir, emit }),
  } satisfies Handlers;

  return {
    handlers,
    schemas: ARG_SCHEMAS,
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    async close() {
      await recovered;
      await connections.closeAll();
      listeners.clear();
      db.close();
    },
  };
}
