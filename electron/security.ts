// Web-side hardening shared by every webContents of the app: a strict Content-Security-Policy on
// responses, no permissions, no new windows, no navigation away from the bundled renderer, no
// <webview>. The renderer's own <meta http-equiv="Content-Security-Policy"> carries the same policy;
// the header is the second line of defence for anything the session serves.
import type { ElectronEvent, HeadersReceivedDetails, HeadersReceivedResponse, SessionLike, WebContentsLike } from './electron-api.ts';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

type Log = (message: string) => void;

/** onHeadersReceived listener: drops any CSP the response carried and sets ours. */
export function withCsp(details: HeadersReceivedDetails, callback: (response: HeadersReceivedResponse) => void): void {
  const headers: Record<string, string[] | string> = {};
  for (const [name, value] of Object.entries(details.responseHeaders ?? {})) {
    if (name.toLowerCase() === 'content-security-policy') continue;
    headers[name] = value;
  }
  headers['Content-Security-Policy'] = [CONTENT_SECURITY_POLICY];
  callback({ responseHeaders: headers });
}

/** CSP header on every response, and every permission request (camera, notifications, clipboard, ...) denied. */
export function hardenSession(session: SessionLike, log: Log = () => {}): void {
  session.webRequest.onHeadersReceived(withCsp);
  session.setPermissionRequestHandler((_wc, permission, callback) => {
    log(`denied a permission request: ${permission}`);
    callback(false);
  });
  session.setPermissionCheckHandler(() => false);
}

/**
 * No window.open / target=_blank windows, no navigation of any kind, of the page or of any frame in
 * it (the renderer is a single page without frames; in-page hash changes raise no will-navigate),
 * no <webview>. Applied to every webContents
 * the app creates (app 'web-contents-created'), the main window's included.
 */
const guarded = new WeakSet<WebContentsLike>();

export function guardWebContents(contents: WebContentsLike, log: Log = () => {}): void {
  if (guarded.has(contents)) return;
  guarded.add(contents);
  contents.setWindowOpenHandler(({ url }) => {
    log(`denied a new window for ${url}`);
    return { action: 'deny' };
  });
  const refuse = (what: string) => (event: ElectronEvent & { url?: string }, url?: string) => {
    event.preventDefault();
    log(`prevented ${what} to ${event.url ?? url ?? '(unknown)'}`);
  };
  contents.on('will-navigate', refuse('navigation'));
  contents.on('will-frame-navigate', refuse('a frame navigation'));
  contents.on('will-redirect', refuse('a redirect'));
  contents.on('will-attach-webview', refuse('attaching a <webview>'));
}
