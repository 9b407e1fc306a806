// One interval's lines to a sink, the way the daemon writes them (and the aggregate bench
// measures them): encoded into batches, each written before the next is built.

import { inBatches, type LineBatchBuilder } from './batch.ts';
import type { Sink } from './sink.ts';

/** Resolves true when `p` settles within `ms`, false otherwise (it keeps running). */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Hands `lines` to `sink` in the builder's batches (1 MiB in the daemon), waiting up to
 * `timeoutMs` for each to be written: a whole interval at kind 0 (100k lines, ~90 MB) is
 * larger than a sink's bounded queue, which would drop the oldest lines of a single big
 * write, and lines held as strings until then would outlive the young generation. A
 * stalled sink (a blocked stdout pipe, a hung NFS write) stalls neither the flush nor the
 * other sinks: after the first timeout the rest goes to its bounded queue, which drops
 * and counts. Returns the lines handed over and whether the sink stalled.
 */
export async function writeInBatches(
  lines: Iterable<string>,
  builder: LineBatchBuilder,
  sink: Sink,
  timeoutMs: number,
): Promise<{ lines: number; stalled: boolean }> {
  let n = 0;
  let stalled = false;
  for (const batch of inBatches(lines, builder)) {
    sink.write(batch);
    n += batch.count;
    if (stalled) continue;
    stalled = !(await within(sink.flush(), timeoutMs));
    // Written everywhere and held nowhere (a failing sink keeps its queue): reuse the buffer.
    if (!stalled && sink.idle()) builder.recycle(batch);
  }
  return { lines: n, stalled };
}
