export declare const BINDING_ENV: string;
export declare const ELECTRON_HEADERS_URL: string;
export interface RunResult {
  ok: boolean;
  output: string;
}
export type Runner = (file: string, args: string[], opts: { cwd?: string; env?: Record<string, string>; timeout?: number }) => Promise<RunResult>;
export interface BuildStep {
  label: 'prebuild-install' | 'node-gyp';
  file: string;
  args: string[];
}
export declare function buildEnv(env: Record<string, string | undefined>): Record<string, string>;
export declare function sqliteVersion(root: string): string;
export declare function cachedBindingPath(o: { root: string; sqlite: string; electronVersion: string; platform: string; arch: string }): string;
export declare function findNodeGyp(o: { root: string; execPath?: string; env?: Record<string, string | undefined>; exists?: (p: string) => boolean }): string | null;
export declare function findPrebuildInstall(o: { root: string }): string | null;
export declare function buildSteps(o: {
  electronVersion: string;
  platform: string;
  arch: string;
  execPath: string;
  prebuildInstall: string | null;
  nodeGyp: string | null;
}): BuildStep[];
export declare function runFile(file: string, args: string[], opts: object): Promise<RunResult>;
export declare function ensureElectronSqlite(o: {
  root: string;
  electronVersion: string;
  electronPath?: string;
  platform?: string;
  arch?: string;
  execPath?: string;
  run?: Runner;
  log?: (line: string) => void;
  env?: Record<string, string | undefined>;
  tmpDir?: string;
  prebuildInstall?: string | null;
  nodeGyp?: string | null;
}): Promise<{ path: string; built: boolean }>;
