// The spool's on-disk layout: segment files of framed batches.
//
// A segment is named by the sequence number of its first batch, zero-padded so names
// sort in sequence order (`00000000000000000042.seg`). It holds frames back to back:
//
//     magic u32 'FLSP' | payload length u32 | seq u64 | boot id (16 bytes, a UUID) |
//     line count u32 | level u8 | 3 zero bytes | crc32 u32 (of the 40 header bytes before
//     it and the payload) | payload
//
// all big-endian. The boot id is the incarnation that numbered the batch: a replay keeps
// its message id (node, boot id, seq), and batches numbered after a restart never share one. The payload is the batch's JSON Lines. A frame whose magic, length or
// CRC is wrong ends what can be trusted in that segment: the rest of it is skipped and
// counted (a torn tail after a crash is the usual case), the other segments still replay.

import { crc32 } from 'node:zlib';

export const FRAME_MAGIC = 0x464c5350; // 'FLSP'
export const HEADER_BYTES = 44;
/** No frame is larger: a longer length field is corruption, not a batch. */
export const MAX_PAYLOAD_BYTES = 64 << 20;
export const SEGMENT_RE = /^(\d{20})\.seg$/;

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

/** Header bytes for a payload; the CRC covers the header and the payload. */
export function encodeHeader(
  seq: number,
  bootId: string,
  count: number,
  level: number,
  payload: Buffer,
): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32BE(FRAME_MAGIC, 0);
  h.writeUInt32BE(payload.length, 4);
  h.writeBigUInt64BE(BigInt(seq), 8);
  Buffer.from(bootId.replace(/-/g, ''), 'hex').copy(h, 16, 0, 16);
  h.writeUInt32BE(count, 32);
  h.writeUInt8(level, 36);
  h.writeUInt32BE(crc32(payload, crc32(h.subarray(0, 40))), 40);
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
  const crc = crc32(payload, crc32(buf.subarray(off, off + 40)));
  if (crc !== buf.readUInt32BE(off + 40)) return null;
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
