// Workspace and chain: the app's facts, the images the user keeps, reading a chain, the demo.
import { execFileSync } from 'node:child_process';
import type { AppInfo, DemoResult } from '../contract.ts';
import type { History } from '../store/history.ts';
import type { EventListener, HandlersFor } from '../handlers.ts';
import type { workspaceArgs } from './contract.ts';
import { inspect, inspectOpenChain } from '../inspect.ts';
import { openPartialChain } from '../qcow2/chain.ts';
import { buildDemo } from '../demo/build-demo.ts';
import { StrataError } from '../errors.ts';
import { VERSION } from '../version.ts';
import type { ConnectionManager } from '../connections/manager.ts';
import type { ChainReport } from '../contract.ts';

export interface WorkspaceDeps {
  mode: AppInfo['mode'];
  dataDir: string;
  history: History;
  emit: EventListener;
  /** native file picker, Electron only */
  openImageDialog?: () => Promise<string | null>;
  /** who holds a chain's files open (Strata's daemons, VMs), and what they see */
  connections: Pick<ConnectionManager, 'heldAndLive'>;
}

function qemuImgVersion(): string | null {
  try {
    return execFileSync('qemu-img', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0].trim();
  } catch {
    return null;
  }
}

export function createWorkspaceHandlers({ mode, dataDir, history, emit, openImageDialog, connections }: WorkspaceDeps): HandlersFor<typeof workspaceArgs> {
  let demoRunning: Promise<DemoResult> | null = null;
  /**
   * The chain as read from disk (down to a missing backing file), except the layers a connected QEMU
   * holds: those as that QEMU sees them (on disk their bitmaps read in-use and stale while it runs),
   * and the holders named.
   */
  const read = async (p: string): Promise<ChainReport> => {
    const chain = openPartialChain(p);
    try {
      const { held, live } = await connections.heldAndLive(chain.layers.map((l) => l.path));
      return held.length ? { ...inspectOpenChain(chain, live, chain.missingBacking), heldBy: held } : inspectOpenChain(chain, undefined, chain.missingBacking);
    } finally {
      chain.close();
    }
  };
  return {
    'app:info': () => ({ version: VERSION, mode, dataDir, qemuImg: qemuImgVersion(), platform: process.platform }),
    'workspace:list': () => history.listWorkspace(),
    'workspace:add': async ({ path }) => {
      // Reading the chain first means a bad path is refused before it is remembered.
      const report = await read(path);
      const img = history.addImage(report.image);
      emit('chain:scanned', history.recordScan(report));
      emit('workspace:changed', history.listWorkspace());
      return { image: { ...img, lastScanAt: report.scannedAt }, report };
    },
    'workspace:remove': ({ path }) => {
      history.removeImage(path);
      emit('workspace:changed', history.listWorkspace());
    },
    'chain:inspect': async ({ path }) => {
      const report = await read(path);
      emit('chain:scanned', history.recordScan(report));
      return report;
    },
    'demo:create': async () => {
      demoRunning ??= buildDemo(dataDir, (step, done, total) => emit('demo:progress', { step, done, total })).finally(() => {
        demoRunning = null;
      });
      const out = await demoRunning;
      for (const img of out.images) {
        const report = inspect(img);
        history.addImage(report.image);
        emit('chain:scanned', history.recordScan(report));
      }
      emit('workspace:changed', history.listWorkspace());
      return out;
    },
    'dialog:open-image': async () => {
      if (!openImageDialog) throw new StrataError('E_BAD_INPUT', 'the file picker is only available in the desktop app; type the image path instead');
      return openImageDialog();
    },
  };
}
