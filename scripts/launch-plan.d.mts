export declare const READY_MARKER: string;
export declare const STARTUP_WINDOW_MS: number;
export declare const NOT_INSTALLED: string;
export interface LaunchFacts {
  webFlag: boolean;
  electronDisabled?: boolean;
  electronInstalled: boolean;
  electronPath: string | null;
  electronError?: string;
  binaryExists: boolean;
  display: boolean;
  platform: string;
}
export interface LaunchPlan {
  mode: 'electron' | 'web';
  reason: string | null;
}
export declare function hasDisplay(env: Record<string, string | undefined>, platform: string): boolean;
export declare function planLaunch(facts: LaunchFacts): LaunchPlan;
export declare function fallbackLine(reason: string): string;
export declare function lastErrorLine(stderr: string | null | undefined): string;
export declare function earlyExitReason(code: number | null, signal: string | null, stderr: string): string | null;
