// Repair: look (writes nothing), or apply the plan the user confirmed; the chain is rescanned after.
import type { HandlersFor } from '../handlers.ts';
import type { Db } from '../store/db.ts';
import type { History } from '../store/history.ts';
import type { EventListener } from '../handlers.ts';
import { inspect, inspectPartial } from '../inspect.ts';
import type { repairArgs } from './contract.ts';
import { repairImage } from './report.ts';
import { checkBackingCandidate, rebaseOntoCandidate } from './locate-backing.ts';

export function createRepairHandlers(d: { db: Db; runtimeDir: string; history: History; emit: EventListener }): HandlersFor<typeof repairArgs> {
  return {
    'repair:plan': async ({ image, backing }) => (await repairImage(image, { apply: false, backing: backing ?? null, db: d.db, runtimeDir: d.runtimeDir })).report,
    'repair:apply': async ({ image, backing }) => {
      const { report } = await repairImage(image, { apply: true, backing: backing ?? null, db: d.db, runtimeDir: d.runtimeDir });
      // The chain as it is now, so the views show the repair (and the history keeps the scan).
      if (report.applied) d.emit('chain:scanned', d.history.recordScan(inspect(image)));
      return report;
    },
    'repair:check-backing': ({ image, backing }) => checkBackingCandidate(image, backing, d),
    'repair:rebase': async ({ image, backing }) => {
      const out = await rebaseOntoCandidate(image, backing, d);
      d.emit('chain:scanned', d.history.recordScan(inspectPartial(image)));
      return out;
    },
  };
}
