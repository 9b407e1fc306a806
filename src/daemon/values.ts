// One raw setting value to its type: a string from the command line or the environment,
// or any YAML value from the file. The table of settings (config.ts) says which type and
// bounds each setting has; the problem texts here are the "what is allowed" of its errors.

import { INTERFACE_GLOB_RULE, isInterfaceGlob } from '../datapath/globs.ts';
import { parseDuration } from './duration.ts';
import { checkShipValue } from './ship-config.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type SourceName =
  | 'default'
  | 'file'
  | 'environment'
  | 'command line'
  /** `FelixConfiguration default`, `FelixConfiguration node.<name>` (from the API). */
  | `FelixConfiguration ${string}`;

/** Longest accepted duration unless a setting says otherwise (timers take up to 24.8 days). */
const DAY_MS = 86_400_000;

export type ValueType =
  | 'duration'
  | 'bool'
  | 'kind'
  | 'posint'
  | 'string'
  | 'path'
  | 'globs'
  | 'logLevel'
  | 'hostport'
  | 'natsUrl'
  | 'httpUrl';

/** How a setting's values are read and bounded. */
export interface ValueRule {
  readonly type: ValueType;
  /** Minimum for durations (ms) and integers. */
  readonly min?: number;
  /** Maximum for durations (ms) and integers. */
  readonly max?: number;
  /** A duration of exactly 0 is also allowed (it switches the feature off). */
  readonly zeroOff?: boolean;
}

/** A YAML number or a string of digits as a number; NaN for anything else. */
function wholeNumber(text: unknown): number {
  if (typeof text === 'number') return text;
  return typeof text === 'string' && /^\d+$/.test(text) ? Number(text) : Number.NaN;
}

/**
 * Converts one raw value to the setting's type. `raw` is a string from the command line
 * or environment, or any YAML value from the file. Returns the value or a problem text.
 */
export function convert(
  def: ValueRule,
  raw: unknown,
  source: SourceName,
): { ok: true; value: unknown } | { ok: false; why: string } {
  const text = typeof raw === 'string' ? raw.trim() : raw;
  switch (def.type) {
    case 'duration': {
      let ms: number | null = null;
      if (typeof text === 'string') {
        ms = source === 'environment' && /^\d+$/.test(text) ? Number(text) * 1000 : parseDuration(text);
      }
      const plain = source === 'environment' ? ' or a whole number of seconds' : '';
      if (ms === null) return { ok: false, why: `must be a duration such as 15s, 5m or 1h30m${plain}` };
      if (ms === 0 && def.zeroOff) return { ok: true, value: 0 };
      const max = def.max ?? DAY_MS;
      if (ms < (def.min ?? 0) || ms > max) {
        const off = def.zeroOff ? ' (or 0 for off)' : '';
        return { ok: false, why: `must be from ${(def.min ?? 0) / 1000}s to ${max / 1000}s${off}` };
      }
      return { ok: true, value: ms };
    }
    case 'bool': {
      if (typeof text === 'boolean') return { ok: true, value: text };
      if (typeof text === 'string' && /^(true|false)$/i.test(text))
        return { ok: true, value: text.toLowerCase() === 'true' };
      return { ok: false, why: 'must be true or false' };
    }
    case 'kind': {
      const n = wholeNumber(text);
      if (Number.isInteger(n) && n >= 0 && n <= 3) return { ok: true, value: n };
      return { ok: false, why: 'must be an integer 0–3' };
    }
    case 'posint': {
      const n = wholeNumber(text);
      if (Number.isSafeInteger(n) && n >= (def.min ?? 0) && n <= (def.max ?? Number.MAX_SAFE_INTEGER)) {
        return { ok: true, value: n };
      }
      return {
        ok: false,
        why:
          def.max === undefined
            ? `must be an integer ≥ ${def.min ?? 0}`
            : `must be an integer from ${def.min ?? 0} to ${def.max}`,
      };
    }
    case 'string':
    case 'path': {
      if (typeof text !== 'string' || text === '') return { ok: false, why: 'must be a non-empty string' };
      return { ok: true, value: text };
    }
    case 'hostport':
    case 'natsUrl':
    case 'httpUrl': {
      const why = typeof text === 'string' ? checkShipValue(def.type, text) : 'must be a string';
      return why === null ? { ok: true, value: text } : { ok: false, why };
    }
    case 'globs': {
      const list = Array.isArray(text) ? text : typeof text === 'string' ? text.split(',') : null;
      const globs = list?.map((g) => (typeof g === 'string' ? g.trim() : '')).filter((g) => g !== '');
      if (!globs || globs.length === 0 || !globs.every(isInterfaceGlob)) {
        return { ok: false, why: `must be a comma-separated list of ${INTERFACE_GLOB_RULE}` };
      }
      return { ok: true, value: Object.freeze(globs) };
    }
    case 'logLevel': {
      if (typeof text === 'string' && (LOG_LEVELS as readonly string[]).includes(text.toLowerCase())) {
        return { ok: true, value: text.toLowerCase() };
      }
      return { ok: false, why: `must be one of ${LOG_LEVELS.join(', ')}` };
    }
  }
}
