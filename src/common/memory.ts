// Giving memory back after a flush (the daemon after each one; the aggregate bench too).
// The native half (malloc_trim, in the addon) is passed in, so src/common imports nothing
// from the layers above it.

/**
 * A memory-reducing full GC, when Node runs with --expose-gc (bin/flowlogd gives it),
 * then malloc's free pages back to the kernel. V8 keeps the pages a flush's garbage freed
 * pooled until its memory reducer runs, which waits for the heap to look idle for ~8 s: a
 * daemon draining updates every second never does, and at 100k connections (kind 0) held
 * ~70 MB more resident memory for it (BENCHMARKS.md, daemon). The collection frees the
 * flush's native buffers too, whose pages glibc would keep. The price: one main-thread
 * pause per flush interval, 80-170 ms at 100k connections (the addon's ring and the
 * kernel go on counting meanwhile). A plain major GC does not give the pages back
 * (measured: 240 MB against 185 MB).
 */
export async function returnFreedMemory(
  releaseNativeFreeMemory: () => unknown,
  execution: 'async' | 'sync' = 'async',
): Promise<void> {
  const gc = (globalThis as { gc?: (o: object) => Promise<void> | undefined }).gc;
  if (gc === undefined) return;
  await gc({ type: 'major', execution, flavor: 'last-resort' });
  releaseNativeFreeMemory();
}
