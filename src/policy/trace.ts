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

export class TraceInterner {
  readonly #byKey = new Map<string, Trace>();
  #next = 1;

  /** The one Trace for these lists. */
  intern(
    all: readonly string[],
    enforced: readonly string[],
    pending: readonly string[],
    verdict: Trace['verdict'],
  ): Trace {
    const key = `${all.join('\n')}\t${enforced.join('\n')}\t${pending.join('\n')}`;
    let t = this.#byKey.get(key);
    if (t === undefined) {
      if (this.#byKey.size >= MAX_TRACES) this.#byKey.clear();
      t = Object.freeze({
        id: this.#next++,
        all_policies: Object.freeze([...all]),
        enforced_policies: Object.freeze([...enforced]),
        pending_policies: Object.freeze([...pending]),
        verdict,
        json: JSON.stringify({ all_policies: all, enforced_policies: enforced, pending_policies: pending }),
      });
      this.#byKey.set(key, t);
    }
    return t;
  }

  fromHits(all: readonly Hit[], enforced: readonly Hit[], pending: readonly Hit[]): Trace {
    return this.intern(formatHits(all), formatHits(enforced), formatHits(pending), verdictOf(enforced));
  }

  get size(): number {
    return this.#byKey.size;
  }
}

/** The trace of a flow no policy can apply to (its local side is not a pod): three empty lists. */
export const EMPTY_TRACE: Trace = Object.freeze({
  id: 0,
  all_policies: Object.freeze([]) as readonly string[],
  enforced_policies: Object.freeze([]) as readonly string[],
  pending_policies: Object.freeze([]) as readonly string[],
  verdict: null,
  json: '{"all_policies":[],"enforced_policies":[],"pending_policies":[]}',
});
