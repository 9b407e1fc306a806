// A connection's policy trace as Calico writes it: three lists of
// `<index>|<tier>|<name>|<action>|<rule index>`. Traces are interned: equal traces are
// one frozen object with a small id (the aggregator keys records by it) and its JSON
// written once, so a record line costs one string concatenation for its policies.

import type { Hit, HitAction } from './evaluate.ts';

export interface Trace {
  /** Small integer, equal for equal traces (within one interner). */
  readonly id: number;
  readonly all_policies: readonly string[];
  readonly enforced_policies: readonly string[];
  readonly pending_policies: readonly string[];
  /** The enforced verdict: the last enforced hit's action, null when no policy applies (no trace). */
  readonly verdict: 'allow' | 'deny' | null;
  /**
   * The enforced verdict is an Allow rule's with an HTTP match: true to L3/L4 (the
   * connection passes the kernel on that rule), the per-request HTTP part not evaluated.
   */
  readonly httpUnchecked: boolean;
  /** `{"all_policies":[…],"enforced_policies":[…],"pending_policies":[…]}` */
  readonly json: string;
}

export function formatHits(hits: readonly Hit[]): string[] {
  return hits.map((h, i) => `${i}|${h.tier}|${h.name}|${h.action}|${h.rule}`);
}

function verdictOf(hits: readonly Hit[]): 'allow' | 'deny' | null {
  const last: HitAction | undefined = hits[hits.length - 1]?.action;
  return last === 'allow' || last === 'deny' ? last : null;
}

/** Distinct traces kept; past it the table restarts (ids keep growing, so none is reused). */
const MAX_TRACES = 100_000;

const ACTION_CODE: Readonly<Record<HitAction, number>> = { allow: 0, deny: 1, pass: 2 };
/** Separates the three lists in a trie path. */
const LIST_END = -1;
/** Stands for "pending and all are the enforced list". Profile codes count down from -2, so far off. */
const SAME_LISTS = Number.MIN_SAFE_INTEGER;

interface TrieNode {
  next: Map<number, TrieNode> | null;
  trace: Trace | null;
}

export class TraceInterner {
  // A trie over small integers (one per hit, one per list end): finding the trace of
  // three hit lists costs a few integer-keyed lookups and no string building.
  #root: TrieNode = { next: null, trace: null };
  #count = 0;
  #next = 1;
  readonly #profileCodes = new Map<string, number>();

  #code(h: Hit): number {
    if (h.seq > 0) return (h.seq * 65536 + (h.rule + 2)) * 4 + ACTION_CODE[h.action];
    let c = this.#profileCodes.get(h.name);
    if (c === undefined) {
      c = -2 - this.#profileCodes.size;
      this.#profileCodes.set(h.name, c);
    }
    return c;
  }

  #walk(node: TrieNode, code: number): TrieNode {
    if (node.next === null) node.next = new Map();
    let n = node.next.get(code);
    if (n === undefined) {
      n = { next: null, trace: null };
      node.next.set(code, n);
    }
    return n;
  }

  fromHits(all: readonly Hit[], enforced: readonly Hit[], pending: readonly Hit[]): Trace {
    if (this.#count >= MAX_TRACES) {
      this.#root = { next: null, trace: null };
      this.#count = 0;
    }
    let n = this.#root;
    for (const h of enforced) n = this.#walk(n, this.#code(h));
    n = this.#walk(n, LIST_END);
    // Without staged policies the three lists are one array: one walk says so.
    if (pending === enforced && all === enforced) n = this.#walk(n, SAME_LISTS);
    else {
      for (const h of pending) n = this.#walk(n, this.#code(h));
      n = this.#walk(n, LIST_END);
      for (const h of all) n = this.#walk(n, this.#code(h));
      n = this.#walk(n, LIST_END);
    }
    if (n.trace === null) {
      const a = formatHits(all);
      const e = formatHits(enforced);
      const p = formatHits(pending);
      n.trace = Object.freeze({
        id: this.#next++,
        all_policies: Object.freeze(a),
        enforced_policies: Object.freeze(e),
        pending_policies: Object.freeze(p),
        verdict: verdictOf(enforced),
        httpUnchecked: enforced[enforced.length - 1]?.http === true,
        json: JSON.stringify({ all_policies: a, enforced_policies: e, pending_policies: p }),
      });
      this.#count++;
    }
    return n.trace;
  }

  get size(): number {
    return this.#count;
  }
}

/** The trace of a flow no policy can apply to (its local side is not a pod): three empty lists. */
export const EMPTY_TRACE: Trace = Object.freeze({
  id: 0,
  all_policies: Object.freeze([]) as readonly string[],
  enforced_policies: Object.freeze([]) as readonly string[],
  pending_policies: Object.freeze([]) as readonly string[],
  verdict: null,
  httpUnchecked: false,
  json: '{"all_policies":[],"enforced_policies":[],"pending_policies":[]}',
});
