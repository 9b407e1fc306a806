// Kubernetes metav1.LabelSelector (matchLabels + matchExpressions In/NotIn/Exists/
// DoesNotExist) compiled into the same Matcher shape as Calico selectors. An empty
// selector ({}) matches everything; the caller decides what an absent one means (in a
// NetworkPolicy peer, absent and empty differ).

import { type Labels, MATCH_ALL, type Matcher } from './selector.ts';
import { isObj, PolicyError } from './values.ts';

export function compileLabelSelector(v: unknown, where: string): Matcher {
  if (v === null || v === undefined) return MATCH_ALL;
  if (!isObj(v)) throw new PolicyError(`${where}: must be a label selector object, got ${JSON.stringify(v)}`);
  const tests: Matcher[] = [];
  if (v.matchLabels !== undefined && v.matchLabels !== null) {
    if (!isObj(v.matchLabels))
      throw new PolicyError(`${where}.matchLabels: must be a map, got ${JSON.stringify(v.matchLabels)}`);
    for (const [k, val] of Object.entries(v.matchLabels)) {
      if (typeof val !== 'string')
        throw new PolicyError(`${where}.matchLabels.${k}: must be a string, got ${JSON.stringify(val)}`);
      tests.push((l: Labels) => l[k] === val);
    }
  }
  if (v.matchExpressions !== undefined && v.matchExpressions !== null) {
    if (!Array.isArray(v.matchExpressions))
      throw new PolicyError(
        `${where}.matchExpressions: must be a list, got ${JSON.stringify(v.matchExpressions)}`,
      );
    v.matchExpressions.forEach((e: unknown, i: number) => {
      const w = `${where}.matchExpressions[${i}]`;
      if (!isObj(e) || typeof e.key !== 'string' || e.key === '')
        throw new PolicyError(`${w}: needs a key, got ${JSON.stringify(e)}`);
      const key = e.key;
      const values = e.values ?? [];
      if (!Array.isArray(values) || values.some((x) => typeof x !== 'string'))
        throw new PolicyError(`${w}.values: must be a list of strings, got ${JSON.stringify(e.values)}`);
      const set = new Set(values as string[]);
      switch (e.operator) {
        case 'In':
          if (set.size === 0) throw new PolicyError(`${w}: operator In needs values`);
          tests.push((l) => {
            const x = l[key];
            return x !== undefined && set.has(x);
          });
          return;
        case 'NotIn':
          if (set.size === 0) throw new PolicyError(`${w}: operator NotIn needs values`);
          tests.push((l) => {
            const x = l[key];
            return x === undefined || !set.has(x);
          });
          return;
        case 'Exists':
          tests.push((l) => l[key] !== undefined);
          return;
        case 'DoesNotExist':
          tests.push((l) => l[key] === undefined);
          return;
        default:
          throw new PolicyError(
            `${w}.operator: must be In, NotIn, Exists or DoesNotExist, got ${JSON.stringify(e.operator)}`,
          );
      }
    });
  }
  if (tests.length === 0) return MATCH_ALL;
  if (tests.length === 1) return tests[0]!;
  return (l) => {
    for (const t of tests) if (!t(l)) return false;
    return true;
  };
}
