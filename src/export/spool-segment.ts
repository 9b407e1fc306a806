// The spool's on-disk layout: segment files of framed batches.
//
// A segment is named by the sequence number of its first batch, zero-padded so names
// sort in sequence order (`00000000000000000042.seg`). It holds frames back to back:
//
//     magic u32 'FLSP' | payload length u32 | seq u64 | boot id (16 bytes, a UUID) |
//     line count u32 | level u8 | checksum kind u8 | 2 zero bytes | checksum u32 (of the
//     40 header bytes before it and the payload) | payload
//
// all big-endian. The boot id is the incarnation that numbered the batch: a replay keeps
// its message id (node, boot id, seq), and batches numbered after a restart never share
// one. The payload is the batch's JSON Lines. A frame whose magic, length, checksum kind
// or checksum is wrong ends what can be trusted in that segment: the rest of it is
// skipped and counted (a torn tail after a crash is the usual case), the other segments
// still replay.
//
// The checksum kind is 1 for CRC-32C (Castagnoli), which the addon computes with SSE 4.2
// at 5-6 GB/s, and 0 for zlib's CRC-32 (1.2-3 GB/s here): frames written before CRC-32C
// have 0 (the byte was zero), and it is written where the addon is not built. Both are
// read, so a spool survives an upgrade (a downgraded flowlogd counts kind-1 frames as
// corrupt). zlib's CRC was ~50 ms of a 100k-record Forward flush's main thread
// (BENCHMARKS.md, shipping fifth pass).

import { crc32 } from 'node:zlib';
import { loadNative } from '../datapath/native.ts';

export const FRAME_MAGIC = 0x464c5350; // 'FLSP'
export const HEADER_BYTES = 44;
/** No frame is larger: a longer length field is corruption, not a batch. */
export const MAX_PAYLOAD_BYTES = 64 << 20;
export const SEGMENT_RE = /^(\d{20})\.seg$/;

export const CHECKSUM_CRC32 = 0;
export const CHECKSUM_CRC32C = 1;
type Checksum = (data: Uint8Array, crc?: number) => number;

/** The addon's CRC-32C, or null where the addon is not built. */
const nativeCrc32c: Checksum | null = (() => {
  try {
    return loadNative().crc32c ?? null;
  } catch {
    return null;
  }
})();

/** CRC-32C by a byte table: reads CRC-32C frames where the addon is not built. */
const C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();
export function crc32cJs(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const CHECKSUMS: Record<number, Checksum> = {
  [CHECKSUM_CRC32]: crc32,
  [CHECKSUM_CRC32C]: nativeCrc32c ?? crc32cJs,
};
/** What new frames are checked with: CRC-32C by the addon, else zlib's CRC-32. */
export const defaultChecksum = nativeCrc32c !== null ? CHECKSUM_CRC32C : CHECKSUM_CRC32;

export interface SpoolFile {
  writev(buffers: Buffer[]): Promise<{ bytesWritten: number }>;
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  truncate(len: number): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

/** The filesystem calls the spool makes (node:fs/promises fits; tests inject failures). */
export interface SpoolFs {
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
  open(path: string, flags: string): Promise<SpoolFile>;
  readdir(path: string): Promise<string[]>;
  readFile(path: string): Promise<Buffer>;
  writeFile(path: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
}

export interface FrameInfo {
  readonly seq: number;
  readonly bootId: string;
  readonly count: number;
  readonly level: number;
  /** Offset of the frame's header in the segment. */
  readonly offset: number;
  /** Payload bytes. */
  readonly bytes: number;
}

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.seg`;
}

/** Header bytes for a payload; the checksum covers the header and the payload. */
export function encodeHeader(
  seq: number,
  bootId: string,
  count: number,
  level: number,
  payload: Buffer,
  checksum: number = defaultChecksum,
): Buffer {
  const sum = CHECKSUMS[checksum];
  if (sum === undefined) throw new RangeError(`spool frame: unknown checksum kind ${checksum}`);
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32BE(FRAME_MAGIC, 0);
  h.writeUInt32BE(payload.length, 4);
  h.writeBigUInt64BE(BigInt(seq), 8);
  Buffer.from(bootId.replace(/-/g, ''), 'hex').copy(h, 16, 0, 16);
  h.writeUInt32BE(count, 32);
  h.writeUInt8(level, 36);
  h.writeUInt8(checksum, 37);
  h.writeUInt32BE(sum(payload, sum(h.subarray(0, 40))), 40);
  return h;
}

/** 16 bytes as a UUID string. */
function uuid(b: Buffer): string {
  const x = b.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export interface ScanResult {
  readonly frames: (FrameInfo & { readonly payload: Buffer })[];
  /** Bytes from the first bad frame to the end (0 when the whole segment is sound). */
  readonly badBytes: number;
  /** Offset of the end of the last sound frame. */
  readonly goodEnd: number;
}

/** Reads every sound frame of a segment's bytes, stopping at the first bad one. */
export function scanSegment(buf: Buffer): ScanResult {
  const frames: (FrameInfo & { payload: Buffer })[] = [];
  let off = 0;
  while (off < buf.length) {
    const f = readFrame(buf, off);
    if (f === null) break;
    frames.push(f);
    off += HEADER_BYTES + f.bytes;
  }
  return { frames, badBytes: buf.length - off, goodEnd: off };
}

/** The frame at `off`, or null when it is incomplete or corrupt. */
export function readFrame(buf: Buffer, off: number): (FrameInfo & { payload: Buffer }) | null {
  if (buf.length - off < HEADER_BYTES) return null;
  if (buf.readUInt32BE(off) !== FRAME_MAGIC) return null;
  const bytes = buf.readUInt32BE(off + 4);
  if (bytes > MAX_PAYLOAD_BYTES || off + HEADER_BYTES + bytes > buf.length) return null;
  const payload = buf.subarray(off + HEADER_BYTES, off + HEADER_BYTES + bytes);
  const sum = CHECKSUMS[buf[off + 37]!];
  if (sum === undefined) return null;
  if (sum(payload, sum(buf.subarray(off, off + 40))) !== buf.readUInt32BE(off + 40)) return null;
  return {
    seq: Number(buf.readBigUInt64BE(off + 8)),
    bootId: uuid(buf.subarray(off + 16, off + 32)),
    count: buf.readUInt32BE(off + 32),
    level: buf.readUInt8(off + 36),
    offset: off,
    bytes,
    payload,
  };
}
