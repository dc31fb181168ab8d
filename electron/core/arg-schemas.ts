// Every channel's argument schema, merged from the features' contracts: dispatch() checks each
// argument against its channel's schema before the handler runs. The mapped type makes this list
// complete (a channel without a schema does not compile) and ties each schema to ArgOf<C>.
import type * as v from 'valibot';
import type { ArgOf, Channel } from './contract.ts';
import { workspaceArgs } from './workspace/contract.ts';
import { contentsArgs } from './contents/contract.ts';
import { connectionArgs } from './connections/contract.ts';
import { jobArgs } from './jobs/contract.ts';
import { bitmapArgs } from './bitmaps/contract.ts';
import { planArgs } from './plans/contract.ts';
import { historyArgs } from './history/contract.ts';
import { repairArgs } from './repair/contract.ts';
import { backupArgs } from './backup/contract.ts';
import { chainOpArgs } from './chain-ops/contract.ts';

export type ArgSchemas = { [C in Channel]: v.GenericSchema<unknown, ArgOf<C>> };

export const ARG_SCHEMAS = {
  ...workspaceArgs,
  ...contentsArgs,
  ...connectionArgs,
  ...jobArgs,
  ...bitmapArgs,
  ...planArgs,
  ...historyArgs,
  ...repairArgs,
  ...backupArgs,
  ...chainOpArgs,
} satisfies ArgSchemas as ArgSchemas;
