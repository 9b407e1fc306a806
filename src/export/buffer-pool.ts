// Batch-sized buffers used again instead of allocated per batch. A 100k-record flush is
// ~100 batches of 1 MiB, each copied into the spool and, for Forward, transcoded into
// another megabyte of msgpack: allocated afresh, those megabytes are external memory to
// V8, whose growth sets off mark-compact collections (a fifth of the shipping CPU in the
// profile, BENCHMARKS.md, shipping) and page faults on every new mapping. A pool keeps
// a few freed ones (`keep`, so an idle daemon does not hold more than that) and hands
// them out again.

export class BufferPool {
  readonly size: number;
  readonly #keep: number;
  readonly #free: Buffer[] = [];

  /** Buffers of `size` bytes; at most `keep` free ones held. */
  constructor(size: number, keep: number) {
    this.size = size;
    this.#keep = keep;
  }

  /** A buffer of at least `n` bytes (exactly the pool's size when n fits, else its own allocation). */
  take(n = this.size): Buffer {
    if (n > this.size) return Buffer.allocUnsafe(n);
    // allocUnsafeSlow: its own ArrayBuffer, never a slice of Node's shared pool, so release() knows it.
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Gives back a buffer from take() (or a view of one): it must not be used after this. */
  release(b: Buffer): void {
    if (b.byteOffset !== 0 || b.buffer.byteLength !== this.size || this.#free.length >= this.#keep) return;
    this.#free.push(b.length === this.size ? b : Buffer.from(b.buffer, 0, this.size));
  }

  get free(): number {
    return this.#free.length;
  }
}
