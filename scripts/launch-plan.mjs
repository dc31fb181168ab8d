// Decides how `npm start` runs Strata: the desktop app (Electron) when it can, browser mode otherwise,
// with one plain reason. Pure functions of facts gathered by scripts/start.mjs, so they are unit-tested.

/** The main process prints this line on stdout once its window is ready (see electron/app.ts). */
export const READY_MARKER = 'strata:window-ready';

/** An Electron that exits with an error before its window is ready, within this time, means "not usable here". */
export const STARTUP_WINDOW_MS = 15_000;

export const NOT_INSTALLED = 'the electron package is not installed: its binary could not be downloaded';

/** True when a GUI can be shown: on Linux (and the BSDs) that needs an X11 or Wayland display. */
export function hasDisplay(env, platform) {
  if (platform === 'darwin' || platform === 'win32') return true;
  return Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
}

/**
 * @param {object} f
 * @param {boolean} f.webFlag          --web was given
 * @param {boolean} [f.electronDisabled] STRATA_ELECTRON=0
 * @param {boolean} f.electronInstalled node_modules/electron exists
 * @param {string|null} f.electronPath  what require('electron') returned (the binary path), null if it threw
 * @param {string} [f.electronError]   why require('electron') threw
 * @param {boolean} f.binaryExists
 * @param {boolean} f.display
 * @param {string} f.platform
 * @returns {{ mode: 'electron' | 'web', reason: string | null }}
 */
export function planLaunch(f) {
  if (f.webFlag) return { mode: 'web', reason: null };
  if (f.electronDisabled) return { mode: 'web', reason: 'STRATA_ELECTRON=0 is set' };
  if (!f.electronInstalled) return { mode: 'web', reason: NOT_INSTALLED };
  if (!f.electronPath) {
    const why = f.electronError ? `: ${firstLine(f.electronError)}` : '';
    return { mode: 'web', reason: `the electron package is installed but its binary is missing${why}` };
  }
  if (!f.binaryExists) return { mode: 'web', reason: `the Electron binary ${f.electronPath} does not exist` };
  if (!f.display) return { mode: 'web', reason: 'there is no display: neither DISPLAY nor WAYLAND_DISPLAY is set' };
  return { mode: 'electron', reason: null };
}

/** The one line printed before browser mode starts in place of the desktop app. */
export function fallbackLine(reason) {
  return `Electron is not available (${reason}); starting browser mode instead.`;
}

function firstLine(s) {
  return String(s).split('\n').map((l) => l.trim()).find(Boolean) ?? '';
}

/** The most telling line of an Electron that died at start (shared-library errors, sandbox refusals, ...). */
export function lastErrorLine(stderr) {
  const lines = String(stderr ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const telling = lines.filter((l) => /error|cannot|can't|unable|not supported|failed|missing|denied/i.test(l));
  const pick = telling.length ? telling[telling.length - 1] : lines[lines.length - 1];
  if (!pick) return '';
  return pick.length > 300 ? `${pick.slice(0, 297)}...` : pick;
}

/**
 * How an Electron process that ended before its window was ready is judged: a clean exit (code 0,
 * e.g. it handed over to an instance already running) is not a failure; anything else is, with its reason.
 * @returns {string|null} the reason, or null when it is not a failure
 */
export function earlyExitReason(code, signal, stderr) {
  if (code === 0 && !signal) return null;
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  const line = lastErrorLine(stderr);
  return `Electron ${how} at start${line ? `: ${line}` : ''}`;
}
