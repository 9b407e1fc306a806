// Worker thread: reads one metadata file and parses it to the slim form (kube.ts), so the
// daemon's event loop never waits on a parse and the raw file never enters its heap (a
// 180k-pod List took the loop for 48 s and the process to 4 GB when parsed in place).
// The worker's heap is capped by metadata-load.ts; it exits after one file.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { EMPTY_METADATA, MetadataParseError, parseClusterMetadata } from './kube.ts';
import {
  type FileSnapshot,
  METADATA_LISTS,
  PART_SIZE,
  type WorkerPart,
  type WorkerReply,
  type WorkerRequest,
} from './metadata-load.ts';

function snapshot(fd: number): FileSnapshot {
  const s = fstatSync(fd);
  return { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs };
}

function acknowledged(): Promise<void> {
  return new Promise((resolve) => parentPort?.once('message', () => resolve()));
}

async function handle(req: WorkerRequest): Promise<WorkerReply> {
  let fd: number;
  try {
    fd = openSync(req.path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { error: { name: e.name, message: e.message, code: e.code, errno: e.errno } };
  }
  try {
    // fstat on the open file before and after the read: the caller compares them to
    // tell a file still being written from a finished one.
    const before = snapshot(fd);
    const bytes = readFileSync(fd);
    const after = snapshot(fd);
    const digest = createHash('sha256').update(bytes).digest('hex');
    const file = { before, after, bytesRead: bytes.length, digest };
    if (digest === req.previousDigest) return { file, unchanged: true };
    const { metadata, warnings } = parseClusterMetadata(bytes.toString('utf8'), req.path);
    // The lists go in parts: the main thread deserialises each part in its own turn of
    // the event loop (180k pods in one message held it for ~350 ms).
    // Each part waits for the main thread's acknowledgement, which it sends from a later
    // turn: queued messages are all delivered in one turn.
    for (const key of METADATA_LISTS) {
      const list = metadata[key] ?? [];
      for (let i = 0; i < list.length; i += PART_SIZE) {
        parentPort?.postMessage({ part: key, items: list.slice(i, i + PART_SIZE) } satisfies WorkerPart);
        await acknowledged();
      }
    }
    return { file, unchanged: false, metadata: EMPTY_METADATA, warnings };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e instanceof MetadataParseError) return { error: { name: e.name, message: e.message, parse: true } };
    return { error: { name: e.name, message: e.message, code: e.code, errno: e.errno } };
  } finally {
    closeSync(fd);
  }
}

parentPort?.postMessage(await handle(workerData as WorkerRequest));
