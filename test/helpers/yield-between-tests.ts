// Setup for every test file: a turn of the event loop before each test. Many tests are synchronous
// (spawnSync of the CLI and QEMU tools), and a file of them never lets the worker read vitest's RPC
// replies: on a loaded machine a 95 s file made a reply to onTaskUpdate wait past vitest's 60 s RPC
// timeout ("Timeout calling onTaskUpdate", an unhandled error that fails the run although every
// test passed). setImmediate runs after the poll phase, so pending replies are read first.
import { beforeEach } from 'vitest';

beforeEach(() => new Promise<void>((resolve) => setImmediate(resolve)));
