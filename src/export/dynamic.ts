// Dynamic aggregation (Calico Enterprise's FlowLogsDynamicAggregationEnabled,
// FlowLogsAggregationThresholdBytes, FlowLogsPositionFilePath) from flowlogd's own
// evidence of a backlog: the unacknowledged bytes of its slowest network sink's spool
// and, for a shipper tailing flows.log, how far Fluentd's position file is behind the
// file. Each whole multiple of the threshold raises the aggregation kinds one level
// (up to kind 3); as the backlog drains they fall back to the configured kinds. The
// level in force (0 = as configured) is stamped on every shipped batch, exported as a
// metric and logged when it changes, so fewer records are never read as less traffic.

import { readFileSync, statSync } from 'node:fs';

export type Kind = 0 | 1 | 2 | 3;

/** Bytes of `logFile` the tailer has not read, from Fluentd's in_tail position file; null when unknown. */
export function positionFileBacklog(posFile: string, logFile: string): number | null {
  let text: string;
  let size: number;
  let inode: number;
  try {
    text = readFileSync(posFile, 'utf8');
    const st = statSync(logFile);
    size = st.size;
    inode = st.ino;
  } catch {
    return null;
  }
  // One line per tailed file: path, read offset and inode, both as 16 hex digits.
  for (const line of text.split('\n')) {
    const [path, pos, ino] = line.split('\t');
    if (path !== logFile || pos === undefined || ino === undefined) continue;
    const offset = Number.parseInt(pos, 16);
    // Another inode: the file rotated and the tailer has not opened the new one yet.
    if (Number.parseInt(ino, 16) !== inode) return size;
    // 0xffffffffffffffff marks a file the tailer stopped following.
    if (!Number.isFinite(offset) || pos.toLowerCase() === 'ffffffffffffffff') return null;
    return Math.max(0, size - offset);
  }
  return null;
}

export interface DynamicOptions {
  readonly thresholdBytes: number;
  readonly kindForAllowed: Kind;
  readonly kindForDenied: Kind;
}

export interface LevelChange {
  readonly level: number;
  readonly previous: number;
  readonly backlogBytes: number;
  readonly kindForAllowed: Kind;
  readonly kindForDenied: Kind;
}

export class DynamicAggregation {
  #o: DynamicOptions;
  #level = 0;
  #backlog = 0;

  constructor(o: DynamicOptions) {
    this.#o = o;
  }

  /** New configured kinds or threshold (SIGHUP); the level is recomputed at the next update. */
  reconfigure(o: DynamicOptions): void {
    this.#o = o;
  }

  get level(): number {
    return this.#level;
  }

  get backlogBytes(): number {
    return this.#backlog;
  }

  /** The kinds for a level: each configured kind raised by it, capped at 3. */
  kinds(level = this.#level): { kindForAllowed: Kind; kindForDenied: Kind } {
    return {
      kindForAllowed: Math.min(3, this.#o.kindForAllowed + level) as Kind,
      kindForDenied: Math.min(3, this.#o.kindForDenied + level) as Kind,
    };
  }

  /**
   * The backlog now (the largest of the given ones; null = unknown, ignored): returns the
   * change when the level moves, null when it stays. Level = whole threshold multiples, at
   * most the levels left before both kinds reach 3.
   */
  update(backlogs: readonly (number | null)[]): LevelChange | null {
    const known = backlogs.filter((b): b is number => b !== null);
    this.#backlog = known.length === 0 ? 0 : Math.max(...known);
    const room = 3 - Math.min(this.#o.kindForAllowed, this.#o.kindForDenied);
    const level = Math.min(room, Math.floor(this.#backlog / Math.max(1, this.#o.thresholdBytes)));
    if (level === this.#level) return null;
    const previous = this.#level;
    this.#level = level;
    return { level, previous, backlogBytes: this.#backlog, ...this.kinds(level) };
  }
}
