/// <reference types="vite/client" />
import type { StrataApi } from '../../electron/core/contract';

declare global {
  interface Window {
    /** Exposed by the Electron preload through contextBridge; absent in browser mode. */
    strata?: StrataApi & {
      /** File.path is gone under contextIsolation; the preload maps a dropped File to its path. */
      pathForFile?(file: File): string;
    };
  }
}

export {};
