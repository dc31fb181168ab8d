// The window and its web hardening: webPreferences, no new windows, no navigation, no permissions, CSP.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createMainWindow, isOwnRendererUrl, windowOptions } from '../../electron/window.ts';
import { CONTENT_SECURITY_POLICY, guardWebContents, hardenSession } from '../../electron/security.ts';
import { FakeBrowserWindow, FakeSession, FakeWebContents, type FakeBrowserWindow as FBW } from './fake-electron.ts';

const root = path.resolve(import.meta.dirname, '../..');
const indexHtml = path.join(root, 'dist', 'renderer', 'index.html');
const preload = path.join(root, 'dist', 'electron', 'preload.cjs');

function makeWindow(icon?: string): FBW {
  const logs: string[] = [];
  return createMainWindow(FakeBrowserWindow, { preload, indexHtml, icon, log: (m) => logs.push(m) }) as FBW;
}

test('window: sandboxed, context-isolated, no Node, web security on', () => {
  const win = makeWindow();
  const wp = win.options.webPreferences;
  assert.equal(wp.contextIsolation, true);
  assert.equal(wp.sandbox, true);
  assert.equal(wp.nodeIntegration, false);
  assert.equal(wp.nodeIntegrationInWorker, false);
  assert.equal(wp.nodeIntegrationInSubFrames, false);
  assert.equal(wp.webSecurity, true);
  assert.equal(wp.allowRunningInsecureContent, false);
  assert.equal(wp.webviewTag, false);
  assert.equal(wp.navigateOnDragDrop, false);
  assert.equal(wp.experimentalFeatures, false);
  assert.equal(wp.preload, preload);
});

test('window: loads the bundled renderer from disk and shows itself when painted', () => {
  const win = makeWindow();
  assert.equal(win.loaded, indexHtml);
  assert.equal(win.options.show, false);
  assert.equal(win.shown, false);
  win.emit('ready-to-show');
  assert.equal(win.shown, true);
});

test('window: icon only when given', () => {
  assert.equal(windowOptions({ preload, indexHtml }).icon, undefined);
  assert.equal(windowOptions({ preload, indexHtml, icon: '/x/icon.png' }).icon, '/x/icon.png');
});

test('window.open and target=_blank are denied', () => {
  const win = makeWindow();
  const h = win.webContents.windowOpenHandler;
  assert.ok(h, 'setWindowOpenHandler was called');
  for (const url of ['https://example.com/', 'file:///etc/passwd', pathToFileURL(indexHtml).href, 'about:blank']) {
    assert.deepEqual(h({ url }), { action: 'deny' });
  }
});

test('navigation, redirects and <webview> are prevented', () => {
  const win = makeWindow();
  assert.equal(win.webContents.navigate('https://evil.example/'), true);
  assert.equal(win.webContents.navigate('file:///etc/passwd'), true);
  assert.equal(win.webContents.navigate(pathToFileURL(indexHtml).href + '?x'), true);
  assert.equal(win.webContents.navigate('https://evil.example/', 'will-frame-navigate'), true);
  assert.equal(win.webContents.navigate('https://evil.example/', 'will-redirect'), true);
  assert.equal(win.webContents.navigate('https://evil.example/', 'will-attach-webview'), true);
});

test('guardWebContents covers any webContents (used for web-contents-created)', () => {
  const wc = new FakeWebContents();
  const logs: string[] = [];
  guardWebContents(wc, (m) => logs.push(m));
  assert.deepEqual(wc.windowOpenHandler?.({ url: 'https://a.example/' }), { action: 'deny' });
  assert.equal(wc.navigate('https://a.example/'), true);
  assert.ok(logs.some((l) => l.includes('https://a.example/')));
  // guarding twice (window.ts and the app-wide web-contents-created hook) adds no second set of listeners
  guardWebContents(wc, (m) => logs.push(m));
  assert.equal(wc.count('will-navigate'), 1);
});

test('session: every permission request and check is denied', () => {
  const s = new FakeSession();
  hardenSession(s);
  for (const p of ['media', 'geolocation', 'notifications', 'clipboard-read', 'clipboard-sanitized-write', 'openExternal', 'fileSystem']) {
    assert.equal(s.request(p), false, p);
    assert.equal(s.permissionCheck?.({}, p, 'file://'), false, p);
  }
});

test('session: the CSP header is set on responses, replacing any other CSP', () => {
  const s = new FakeSession();
  hardenSession(s);
  const r = s.respond(pathToFileURL(indexHtml).href, { 'content-security-policy': ["default-src *"], 'X-Other': ['1'] });
  assert.deepEqual(r.responseHeaders?.['Content-Security-Policy'], [CONTENT_SECURITY_POLICY]);
  assert.equal(r.responseHeaders?.['content-security-policy'], undefined);
  assert.deepEqual(r.responseHeaders?.['X-Other'], ['1']);
  assert.notEqual(r.cancel, true);
  // a response without headers gets one too
  assert.deepEqual(s.respond('https://x.example/').responseHeaders, { 'Content-Security-Policy': [CONTENT_SECURITY_POLICY] });
});

test('CSP: the brief policy, exactly', () => {
  assert.equal(
    CONTENT_SECURITY_POLICY,
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  );
});

function parseCsp(p: string): Map<string, Set<string>> {
  return new Map(
    p
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...src]) => [name.toLowerCase(), new Set(src)]),
  );
}

test("CSP: the header is never looser than the renderer page's own <meta> policy", () => {
  const candidates = [path.join(root, 'dist', 'renderer', 'index.html'), path.join(root, 'renderer', 'index.html')].filter((f) => fs.existsSync(f));
  assert.ok(candidates.length > 0, 'no renderer index.html');
  for (const file of candidates) {
    const html = fs.readFileSync(file, 'utf8');
    const m = /<meta\s+http-equiv=(["'])Content-Security-Policy\1\s+content=(["'])(.*?)\2/i.exec(html);
    assert.ok(m, `${file} has a CSP meta tag`);
    const meta = parseCsp(m[3]);
    const header = parseCsp(CONTENT_SECURITY_POLICY);
    for (const [name, sources] of meta) {
      const h = header.get(name);
      assert.ok(h, `${name} is in the header too`);
      for (const s of h) assert.ok(sources.has(s), `${name}: header allows ${s}, which ${path.relative(root, file)} does not`);
    }
    // and the built page has no inline script the policy would block
    assert.doesNotMatch(html.replace(/<script[^>]*\ssrc=[^>]*>\s*<\/script>/gi, ''), /<script/i, `${file}: inline <script>`);
  }
});

test('isOwnRendererUrl: only our index.html over file://', () => {
  const own = pathToFileURL(indexHtml).href;
  assert.equal(isOwnRendererUrl(own, indexHtml), true);
  assert.equal(isOwnRendererUrl(own + '#/images', indexHtml), true);
  assert.equal(isOwnRendererUrl(own + '?a=1', indexHtml), true);
  assert.equal(isOwnRendererUrl(pathToFileURL(path.join(root, 'dist', 'renderer', 'other.html')).href, indexHtml), false);
  assert.equal(isOwnRendererUrl('file:///tmp/index.html', indexHtml), false);
  assert.equal(isOwnRendererUrl(own.replace('file://', 'file://evil.example'), indexHtml), false);
  assert.equal(isOwnRendererUrl('https://example.com' + new URL(own).pathname, indexHtml), false);
  assert.equal(isOwnRendererUrl('http://127.0.0.1:8080/', indexHtml), false);
  assert.equal(isOwnRendererUrl('about:blank', indexHtml), false);
  assert.equal(isOwnRendererUrl('', indexHtml), false);
  assert.equal(isOwnRendererUrl('not a url', indexHtml), false);
});
