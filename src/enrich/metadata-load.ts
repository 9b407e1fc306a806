// Loads a metadata file in a worker thread (metadata-worker.ts) with a capped heap: the
// main thread gets only the slim metadata (kube.ts's form, shared with the API source),
// and a file too large for the cap is a MetadataParseError naming the cap, not an
// out-of-memory kill of the daemon.
import { Worker } from 'node:worker_threads';
import { type ClusterMetadata, MetadataParseError } from './kube.ts';

export interface FileSnapshot {
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface FileRead {
  /** fstat of the open file before and after it was read. */
  readonly before: FileSnapshot;
  readonly after: FileSnapshot;
  readonly bytesRead: number;
  /** sha256 of the bytes read: an unchanged file is not parsed again. */
  readonly digest: string;
}

export type FileLoad =
  | { readonly file: FileRead; readonly unchanged: true }
  | {
      readonly file: FileRead;
      readonly unchanged: false;
      readonly metadata: ClusterMetadata;
      readonly warnings: readonly string[];
    };

/** @internal the worker's side of the exchange */
export interface WorkerRequest {
  readonly path: string;
  readonly previousDigest: string | null;
}
/** The lists of ClusterMetadata, sent a part at a time. */
export const METADATA_LISTS = [
  'pods',
  'services',
  'nodes',
  'namespaces',
  'networkSets',
  'policyObjects',
] as const;
/** Objects per message from the worker. */
export const PART_SIZE = 5000;
/** @internal */
export interface WorkerPart {
  readonly part: (typeof METADATA_LISTS)[number];
  readonly items: readonly unknown[];
}
/** @internal the final message; `metadata` comes in WorkerParts before it */
export type WorkerReply =
  | FileLoad
  | {
      readonly error: {
        readonly name: string;
        readonly message: string;
        readonly parse?: boolean;
        readonly code?: string | undefined;
        readonly errno?: number | undefined;
      };
    };

export interface LoadLimits {
  /**
   * Heap of the parsing worker, MB. A 180k-pod List (64 MB of YAML) peaks near 400 MB;
   * the same limit would serve a list from the API if it were parsed at once.
   */
  readonly maxHeapMb: number;
}

export const DEFAULT_LOAD_LIMITS: LoadLimits = { maxHeapMb: 1024 };

const workerUrl = new URL(
  import.meta.url.endsWith('.ts') ? './metadata-worker.ts' : './metadata-worker.js',
  import.meta.url,
);

/**
 * Reads and parses `path` off the main thread. Rejects with MetadataParseError for an
 * unreadable document or one that needs more than the heap limit, and with the file
 * system's error (code ENOENT, …) when the file cannot be read.
 */
export function loadMetadataFile(
  path: string,
  previousDigest: string | null,
  limits: LoadLimits = DEFAULT_LOAD_LIMITS,
): Promise<FileLoad> {
  return new Promise((resolve, reject) => {
    const request: WorkerRequest = { path, previousDigest };
    const worker = new Worker(workerUrl, {
      workerData: request,
      resourceLimits: { maxOldGenerationSizeMb: limits.maxHeapMb },
      stdout: false,
      stderr: false,
    });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    const lists: Record<string, unknown[]> = {};
    for (const k of METADATA_LISTS) lists[k] = [];
    worker.on('message', (msg: WorkerReply | WorkerPart) => {
      if ('part' in msg) {
        const into = lists[msg.part]!;
        for (const o of msg.items) into.push(o);
        setImmediate(() => worker.postMessage('more'));
        return;
      }
      const reply = msg;
      settle(() => {
        if (!('error' in reply)) {
          if (reply.unchanged) return resolve(reply);
          return resolve({ ...reply, metadata: lists as unknown as ClusterMetadata });
        }
        const e = reply.error;
        if (e.parse) {
          // The message already starts with the path.
          const err = new MetadataParseError(path, e.message.slice(path.length + 2));
          return reject(err);
        }
        reject(Object.assign(new Error(e.message), { name: e.name, code: e.code, errno: e.errno }));
      });
    });
    worker.once('error', (err: Error & { code?: string }) =>
      settle(() =>
        reject(
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? new MetadataParseError(
                path,
                `parsing needs more than the ${limits.maxHeapMb} MB allowed for metadata`,
                { cause: err },
              )
            : new MetadataParseError(path, `parser failed: ${err.message}`, { cause: err }),
        ),
      ),
    );
    worker.once('exit', (code) =>
      settle(() => reject(new MetadataParseError(path, `parser exited with code ${code} and no result`))),
    );
  });
}
