// Flow log lines as the sinks take them: encoded once into one buffer per batch, with
// each line's end offset. A flush at kind 0 is 100k lines of ~1 KB; held as strings until
// written they would outlive the young generation and be copied into the old one (most
// of a first flush's time was that garbage collection). Encoded as they are built, each
// line's string dies young, and a sink writes contiguous lines as one slice of the batch,
// without joining or copying them again.

/** Complete lines, each ending in '\n', in `buf`; line i ends at `ends[i]` (exclusive). */
export class LineBatch {
  readonly buf: Buffer;
  readonly ends: Uint32Array;
  readonly count: number;

  constructor(buf: Buffer, ends: Uint32Array, count: number) {
    this.buf = buf;
    this.ends = ends;
    this.count = count;
  }

  static fromLines(lines: readonly string[]): LineBatch {
    const b = new LineBatchBuilder(Number.POSITIVE_INFINITY, lines.length);
    for (const l of lines) b.add(l);
    return b.finish();
  }

  get bytes(): number {
    return this.count === 0 ? 0 : this.ends[this.count - 1]!;
  }

  start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  /** Bytes of line i, newline included. */
  size(i: number): number {
    return this.ends[i]! - this.start(i);
  }

  /** Line i without its newline (tests, debugging). */
  line(i: number): string {
    return this.buf.toString('utf8', this.start(i), this.ends[i]! - 1);
  }

  lines(): string[] {
    return Array.from({ length: this.count }, (_, i) => this.line(i));
  }
}

/**
 * The lines and bytes of the daemon's line batches (daemon.ts), and the network sinks'
 * default batch size in records: a line batch then goes out as one network batch when
 * its bytes fit the sink's. With a smaller record bound (it was 1,000) a MiB of ~1 KB
 * lines was cut into a full batch and a tail of a few lines, twice the messages, acks and
 * spool frames per flush (BENCHMARKS.md, shipping, sixth pass). 8,192 is also the record
 * bound of OpenTelemetry's batch processor.
 */
export const LINE_BATCH_BYTES = 1 << 20;
export const LINE_BATCH_LINES = 8192;

/**
 * Encodes lines into batches of at most `maxBytes` (a line longer than that alone) and
 * `maxLines`. A line that would cross maxBytes is carried into the next batch: a batch
 * that overshot by one line was cut by a network sink of the same byte bound into the
 * batch and a one-line tail.
 */
export class LineBatchBuilder {
  readonly #maxBytes: number;
  readonly #maxLines: number;
  #buf: Buffer;
  /** A taken-over buffer given back by recycle(), for the next full batch. */
  #spare: Buffer | null = null;
  #ends: Uint32Array;
  #used = 0;
  #count = 0;
  /** Lines from this index on crossed maxBytes: they start the next batch (-1: none). */
  #carry = -1;

  constructor(maxBytes = LINE_BATCH_BYTES, maxLines = LINE_BATCH_LINES) {
    this.#maxBytes = maxBytes;
    this.#maxLines = Math.max(1, maxLines);
    this.#buf = Buffer.allocUnsafe(this.#capacity());
    this.#ends = new Uint32Array(Math.min(this.#maxLines, 1024));
  }

  get count(): number {
    return this.#count;
  }

  /** True once another line may not fit: finish() the batch and start another. */
  get full(): boolean {
    return (
      this.#carry >= 0 || this.#count >= this.#maxLines || (this.#count > 0 && this.#used >= this.#maxBytes)
    );
  }

  /** Appends `line` and its newline. A line never straddles two batches. */
  add(line: string): void {
    // UTF-16 code units encode to at most 3 bytes each in UTF-8.
    const worst = line.length * 3 + 1;
    if (this.#used + worst > this.#buf.length) this.#grow(this.#used + worst);
    this.#used += this.#buf.write(line, this.#used, 'utf8');
    this.#buf[this.#used++] = 0x0a;
    if (this.#count === this.#ends.length) {
      const bigger = new Uint32Array(this.#ends.length * 2);
      bigger.set(this.#ends);
      this.#ends = bigger;
    }
    this.#ends[this.#count++] = this.#used;
    if (this.#carry < 0 && this.#count > 1 && this.#used > this.#maxBytes) this.#carry = this.#count - 1;
  }

  #grow(need: number): void {
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.#buf.copy(bigger, 0, 0, this.#used);
    this.#buf = bigger;
  }

  /**
   * The lines so far as a batch; the builder starts empty again. A batch that fills at
   * least 3/4 of the working buffer takes the buffer itself (no copy: measured 7-9% off a
   * 100k-line flush) and the builder allocates a new one; a smaller batch gets a copy of
   * exactly its size, so a queue of small batches never holds a megabyte each (full ones
   * hold at most a third more than their lines).
   */
  finish(): LineBatch {
    const count = this.#carry < 0 ? this.#count : this.#carry;
    const used = count === 0 ? 0 : this.#ends[count - 1]!;
    const old = this.#buf;
    let buf: Buffer;
    if (used >= old.length * 0.75) {
      buf = old.subarray(0, used);
      this.#buf = this.#spare ?? Buffer.allocUnsafe(this.#capacity());
      this.#spare = null;
    } else {
      buf = Buffer.allocUnsafe(used);
      old.copy(buf, 0, 0, used);
    }
    const batch = new LineBatch(buf, this.#ends.slice(0, count), count);
    // The carried lines (a line or so) move to the front of the working buffer.
    const carried = this.#count - count;
    this.#carry = -1;
    if (carried > 0) {
      if (this.#buf === old) old.copyWithin(0, used, this.#used);
      else {
        if (this.#used - used > this.#buf.length) this.#buf = Buffer.allocUnsafe(this.#used - used);
        old.copy(this.#buf, 0, used, this.#used);
      }
      for (let i = 0; i < carried; i++) {
        this.#ends[i] = this.#ends[count + i]! - used;
        // Lines added past full() without a finish() may cross maxBytes again.
        if (this.#carry < 0 && i > 0 && this.#ends[i]! > this.#maxBytes) this.#carry = i;
      }
    }
    this.#used -= used;
    this.#count = carried;
    return batch;
  }

  /**
   * Gives back the buffer of a batch that no sink holds any more (written, nothing queued
   * or in flight: Sink.idle()), so the next full batch reuses it. A 100k-line flush is
   * ~90 batches of 1 MiB: allocated afresh each, glibc keeps the freed megabytes in its
   * heap (its mmap threshold rises past 1 MiB after the first free), ~24 MB of resident
   * memory the daemon never uses again (BENCHMARKS.md, daemon). The batch must not be
   * used after this.
   */
  recycle(batch: LineBatch): void {
    const b = batch.buf;
    if (this.#spare === null && b.byteOffset === 0 && b.buffer.byteLength === this.#capacity())
      this.#spare = Buffer.from(b.buffer, 0, b.buffer.byteLength);
  }

  /** maxBytes and room for the line that crosses it (a longer one grows the buffer). */
  #capacity(): number {
    return Number.isFinite(this.#maxBytes) ? this.#maxBytes + (64 << 10) : 64 << 10;
  }
}

/** `lines` as batches from `builder`: each yielded as it fills, the rest at the end. */
export function* inBatches(lines: Iterable<string>, builder: LineBatchBuilder): Generator<LineBatch> {
  for (const line of lines) {
    builder.add(line);
    if (builder.full) yield builder.finish();
  }
  if (builder.count > 0) yield builder.finish();
}
