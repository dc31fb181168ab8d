// `npm start` without a usable Electron (this machine, CI): it says why in one line and serves browser
// mode; an HTTP GET of the printed URL answers 200; stopping the launcher stops the server.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { NOT_INSTALLED, fallbackLine } from '../../scripts/launch-plan.mjs';

const root = path.resolve(import.meta.dirname, '../..');
const URL_RE = /http:\/\/127\.0\.0\.1:(\d+)\/\?token=[A-Za-z0-9_-]+/;

function electronResolvable(): boolean {
  try {
    createRequire(path.join(root, 'package.json')).resolve('electron/package.json');
    return true;
  } catch {
    return false;
  }
}

interface Started {
  child: ChildProcessWithoutNullStreams;
  url: string;
  port: number;
  output: () => string;
}

function startLauncher(args: string[], env: Record<string, string | undefined>): Promise<Started> {
  const child = spawn(process.execPath, [path.join(root, 'scripts', 'start.mjs'), ...args], { cwd: root, env: env as NodeJS.ProcessEnv });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no URL within 90 s; output:\n${out}`));
    }, 90_000);
    const check = () => {
      const m = URL_RE.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', check);
        resolve({ child, url: m[0], port: Number(m[1]), output: () => out });
      }
    };
    child.stdout.on('data', check);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`start.mjs exited (${code ?? signal}) before printing a URL; output:\n${out}`));
    });
  });
}

function stop(child: ChildProcessWithoutNullStreams): Promise<number | string | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => {
    const hard = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code, signal) => {
      clearTimeout(hard);
      resolve(code ?? signal);
    });
    child.kill('SIGTERM');
  });
}

function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

function baseEnv(home: string): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, STRATA_HOME: home };
  delete env.STRATA_PORT;
  delete env.STRATA_RENDERER_DIR;
  delete env.STRATA_ELECTRON;
  return env;
}

test('npm start without Electron: one reason line, then a browser-mode URL that answers 200', { timeout: 150_000 }, async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-start-'));
  const env = baseEnv(home);
  let expected = fallbackLine(NOT_INSTALLED);
  if (electronResolvable()) {
    // a developer machine with Electron installed: force the fallback instead
    env.STRATA_ELECTRON = '0';
    expected = fallbackLine('STRATA_ELECTRON=0 is set');
  }
  const s = await startLauncher([], env);
  try {
    const lines = s.output().split('\n');
    const reasonAt = lines.indexOf(expected);
    assert.ok(reasonAt >= 0, `the reason line is printed; output:\n${s.output()}`);
    assert.equal(lines.filter((l) => l.startsWith('Electron is not available')).length, 1);
    assert.ok(reasonAt < lines.findIndex((l) => URL_RE.test(l)), 'reason before URL');
    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /html/);
    await res.arrayBuffer();
    assert.ok(fs.existsSync(path.join(home, 'strata.db')), 'browser mode uses STRATA_HOME');
  } finally {
    await stop(s.child);
    fs.rmSync(home, { recursive: true, force: true });
  }
  assert.equal(await portRefuses(s.port), true, 'the server stopped with the launcher');
});

test('npm run web (--web): straight to browser mode, no reason line', { timeout: 150_000 }, async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-start-web-'));
  const s = await startLauncher(['--web'], baseEnv(home));
  try {
    assert.doesNotMatch(s.output(), /Electron is not available/);
    const res = await fetch(s.url);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  } finally {
    await stop(s.child);
    fs.rmSync(home, { recursive: true, force: true });
  }
  assert.equal(await portRefuses(s.port), true);
});
