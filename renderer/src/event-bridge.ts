// The one place that listens to the core: every pushed event and the transport's connection state
// go from here into the stores. Components never subscribe to the transport themselves.
import { EVENTS, type EventName, type Events } from '../../electron/core/contract';
import type { Transport } from './api/transport';
import { useChainsStore } from './stores/chains';
import { useConnectionStore } from './stores/connection';
import { useHistoryStore } from './stores/history';
import { useWorkspaceStore } from './stores/workspace';
import { useQemuConnectionsStore } from './stores/qemu-connections';
import { useJobsStore } from './stores/jobs';
import { usePlansStore } from './stores/plans';
import { useBackupsStore } from './stores/backups';

type Handlers = { [E in EventName]: (payload: Events[E]) => void };

export function startEventBridge(transport: Transport): () => void {
  const workspace = useWorkspaceStore();
  const chains = useChainsStore();
  const history = useHistoryStore();
  const connection = useConnectionStore();
  const qemu = useQemuConnectionsStore();
  const jobs = useJobsStore();
  const plans = usePlansStore();
  const backups = useBackupsStore();

  const handlers: Handlers = {
    'workspace:changed': (list) => {
      workspace.setImages(list);
      // A removed image's report would otherwise come back stale if it is added again.
      for (const p of Object.keys(chains.reports)) if (!list.some((i) => i.path === p)) chains.forget(p);
    },
    'chain:scanned': (rec) => {
      history.addScan(rec);
      chains.onScanned(rec);
      workspace.onScanned(rec);
    },
    'demo:progress': (p) => workspace.setDemoProgress(p),
    'connection:changed': (list) => {
      qemu.setList(list);
      jobs.pruneConnections(list.map((c) => c.id));
    },
    'job:changed': (j) => {
      jobs.onChanged(j);
      history.refreshActivity();
      // A finished stream or commit changed the chain: re-read what shows it. (A concluded stream's
      // graph waits for its dismissal: see graphHazard.)
      const shown = !!qemu.graphs[j.connection] || qemu.selectedId === j.connection;
      if (shown && (j.state === 'null' || j.state === 'concluded')) void qemu.loadGraph(j.connection);
      if (j.state === 'concluded' && !j.error) {
        const image = qemu.byId[j.connection]?.image;
        if (image && chains.reports[image]) void chains.inspect(image);
      }
    },
    'job:progress': (j) => jobs.put(j),
    'plan:changed': (p) => {
      plans.put(p);
      history.putPlan(p);
    },
    'backup:progress': (p) => backups.onProgress(p),
    'backup:changed': (c) => {
      void backups.onRepositoryChanged(c.repo);
      history.refreshActivity();
    },
  };

  const offs = EVENTS.map((e) => transport.on(e, handlers[e] as (p: unknown) => void));

  let wasOpen = transport.status().state === 'open';
  let hadOpen = wasOpen;
  offs.push(
    transport.onStatus((s) => {
      connection.setStatus(s);
      const open = s.state === 'open';
      // Events pushed while we were away are lost: re-read what is on screen after a reconnect.
      if (open && !wasOpen && hadOpen) {
        void connection.loadAppInfo();
        void workspace.load();
        if (workspace.selectedPath) void chains.inspect(workspace.selectedPath);
        history.reloadLoaded();
        void qemu.load().then(() => {
          if (qemu.selectedId && qemu.byId[qemu.selectedId]?.state === 'connected') void qemu.loadGraph(qemu.selectedId);
        });
        void jobs.load();
        if (jobs.historyLoaded) void jobs.loadHistory();
        void plans.load();
      }
      if (open) hadOpen = true;
      wasOpen = open;
    }),
  );

  return () => offs.forEach((off) => off());
}
