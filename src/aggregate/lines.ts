// The one serializer of a flow log record: a flush's records as JSON lines, each one
// template over the JSON fragments its interned record key carries (keys.ts), built as
// it is taken. What JSON.stringify of the record object would give, byte for byte, with
// no record object in between.

import { flat } from '../common/flat.ts';
import type { Labels } from '../enrich/kube.ts';
import type { Group, Side } from './keys.ts';
import { NO_POLICY_HITS } from './record.ts';

const NO_HITS_JSON = JSON.stringify(NO_POLICY_HITS);

// A record's counters during a flush, in the flush's sums at Group.at * SUMS + one of
// these (as Group fields they would be boxed doubles, allocated for every record key).
export const BYTES_IN = 0;
export const BYTES_OUT = 1;
export const PACKETS_IN = 2;
export const PACKETS_OUT = 3;
export const NUM_FLOWS = 4;
export const STARTED = 5;
export const COMPLETED = 6;
export const SUMS = 7;

/** One closed interval's records: their keys in order and their counters (SUMS each). */
export interface FlushRecords {
  readonly groups: readonly Group[];
  readonly sums: Float64Array;
  readonly startS: number;
  readonly endS: number;
}

/** What the lines say besides the records: the settings of the flush that closed them. */
export interface LineSettings {
  readonly nodeName: string;
  readonly includeLabels: boolean;
  readonly includePolicies: boolean;
}

const q = JSON.stringify;
const EMPTY_LABELS: Labels = Object.freeze({});

/** Writes one aggregator's records as lines; keeps the JSON of the label sets it wrote. */
export class LineWriter {
  /** A label set's `{"labels":[…]}` (sorted `key=value`), by the set (label sets are shared objects). */
  readonly #labelsJson = new WeakMap<Labels, string>();

  /**
   * The lines of `r`, each built as it is taken. `current()` says the records are still
   * the latest flush's: the next flush reuses their keys' labels, so a line taken after
   * it throws.
   */
  *lines(r: FlushRecords, o: LineSettings, current: () => boolean): Generator<string, void, undefined> {
    const { groups, sums } = r;
    const head = flat(`{"start_time":${r.startS},"end_time":${r.endS},`);
    const policies = o.includePolicies;
    const tail = flat(
      ',"http_requests_allowed_in":0,"http_requests_denied_in":0,"original_source_ips":null,' +
        `"num_original_source_ips":0,"host":${q(o.nodeName)},"@timestamp":${r.endS * 1000}}`,
    );
    const labels = o.includeLabels;
    for (let i = 0; i < groups.length; i++) {
      if (!current()) throw new Error('flushLineIterator: lines taken after the next flush');
      const g = groups[i]!;
      const n = i * SUMS;
      yield `${head}${sideJson(g.src)}${g.srcPort}${g.src.text.post}${labels ? this.#labels(g.srcLabels) : 'null'},` +
        `${sideJson(g.dst)}${g.dstPort}${g.dst.text.post}${labels ? this.#labels(g.dstLabels) : 'null'},` +
        `${g.svc.json},${g.par.json},"policies":${policies ? (g.pol?.json ?? NO_HITS_JSON) : 'null'},` +
        `"bytes_in":${sums[n + BYTES_IN]},"bytes_out":${sums[n + BYTES_OUT]},` +
        `"packets_in":${sums[n + PACKETS_IN]},"packets_out":${sums[n + PACKETS_OUT]},` +
        `"num_flows":${sums[n + NUM_FLOWS]},"num_flows_started":${sums[n + STARTED]},` +
        `"num_flows_completed":${sums[n + COMPLETED]}${tail}`;
    }
  }

  #labels(l: Labels | null): string {
    const key = l ?? EMPTY_LABELS;
    let j = this.#labelsJson.get(key);
    if (j === undefined) {
      const list = Object.keys(key)
        .sort()
        .map((k) => `${k}=${key[k]}`);
      j = q({ labels: list });
      this.#labelsJson.set(key, j);
    }
    return j;
  }
}

/** A side's JSON up to its port value. */
function sideJson(x: Side): string {
  const t = x.text;
  return x.ip === null ? `${t.ipField}null${t.rest}` : `${t.ipField}"${x.ip}"${t.rest}`;
}
