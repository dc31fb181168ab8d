// better-sqlite3 inside Electron. The better_sqlite3.node in node_modules is built for Node's ABI and
// cannot load in Electron's. `npm start` (scripts/start.mjs) builds a copy for the installed Electron
// into node_modules/.cache/strata/ and names it in STRATA_SQLITE_BINDING; a packaged app has its copy
// rebuilt by electron-builder and needs no variable.
import path from 'node:path';

export const BINDING_ENV = 'STRATA_SQLITE_BINDING';

export interface BindingFacts {
  env: Record<string, string | undefined>;
  exists: (file: string) => boolean;
}

/** The nativeBinding to hand to the core, or undefined for better-sqlite3's own. Throws when the variable names a missing file. */
export function resolveNativeBinding(facts: BindingFacts): string | undefined {
  const v = facts.env[BINDING_ENV];
  if (v === undefined || v === '') return undefined;
  if (!path.isAbsolute(v)) throw new Error(`${BINDING_ENV} must be an absolute path to better_sqlite3.node, got '${v}'`);
  if (!facts.exists(v)) throw new Error(`${BINDING_ENV} names ${v}, which does not exist; run \`npm start\` to build it again`);
  return v;
}

/** One paragraph for a failed start, with the fix when the cause is the usual ABI mismatch. */
export function explainStartupError(message: string, facts: { bindingFromEnv: boolean; isPackaged: boolean }): string {
  const abi = /NODE_MODULE_VERSION|was compiled against a different Node\.js version|invalid ELF header|not a valid Win32 application|slice is not valid mach-o/i.test(message);
  if (abi && !facts.isPackaged && !facts.bindingFromEnv) {
    return `${message}\n\nThe better-sqlite3 in node_modules is built for Node, not Electron. Start the app with \`npm start\`: it builds a copy for Electron and passes it in ${BINDING_ENV}.`;
  }
  if (abi) return `${message}\n\nThe better-sqlite3 binary does not match this Electron. Delete node_modules/.cache/strata and run \`npm start\` again.`;
  return message;
}
