// Sandboxed preload (bundled to dist/electron/preload.cjs). A sandboxed preload can require only
// 'electron' (and a few polyfills), so nothing else is loaded here at run time: preload-api.ts and
// the contract's channel/event lists are inlined by the bundler.
import type { ElectronPreload } from './electron-api.ts';
import { createStrataBridge } from './preload-api.ts';

const { contextBridge, ipcRenderer, webUtils } = require('electron') as ElectronPreload;

contextBridge.exposeInMainWorld('strata', createStrataBridge(ipcRenderer, webUtils));
