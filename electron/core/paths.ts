// Where Strata keeps its data: $STRATA_HOME, else the XDG data dir. (The Electron app passes its
// userData folder instead.)
import os from 'node:os';
import path from 'node:path';

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STRATA_HOME) return path.resolve(env.STRATA_HOME);
  const xdg = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(os.homedir(), '.local', 'share');
  return path.join(xdg, 'strata');
}
