// Splits a YAML metadata file into pieces small enough to parse one at a time, so a
// 50 MB List never exists as one parsed tree (js-yaml's event stream for 180k pods is
// ~1.3 GB): each top-level document, and inside a document the entries of its top-level
// `items:` sequence (or of the document itself when it is a sequence), in runs of about
// CHUNK_BYTES. The split only looks at line starts and indentation, which is all a block
// sequence's entries are made of; anything it cannot vouch for (directives, an entry
// that refers to an anchor elsewhere) is found by parsing the pieces, and the caller then
// parses that document whole.

import { loadAll, YAMLException } from 'js-yaml';

/** Text of the item runs handed to the YAML parser at once. */
export const CHUNK_BYTES = 256 * 1024;

export interface YamlDocument {
  /** The document's text (for parsing it whole). */
  readonly text: string;
  /** Line number (0-based) of its first line in the file, for error messages. */
  readonly firstLine: number;
  /**
   * When its top-level items can be split out: where they are (`items` under the
   * document's `items:` key, `root` the document itself), the document without them (its
   * `items:` key left with no value), and the item runs, each a YAML block sequence.
   */
  readonly split: {
    readonly at: 'items' | 'root';
    readonly head: string;
    readonly runs: () => Generator<string>;
  } | null;
}

const DOC_MARKER = /^(?:---|\.\.\.)(?:[ \t\r]|$)/;
const ITEMS_KEY = /^items:[ \t]*(?:#.*)?\r?$/;

/** Lines as [start, end) offsets, without the newline. */
function* lines(text: string, from: number, to: number): Generator<[number, number]> {
  let s = from;
  while (s < to) {
    let e = text.indexOf('\n', s);
    if (e < 0 || e > to) e = to;
    yield [s, e];
    s = e + 1;
  }
}

function indentOf(text: string, s: number, e: number): number {
  let i = s;
  while (i < e && text.charCodeAt(i) === 32) i++;
  return i - s;
}

/** Blank or comment-only: belongs to whatever surrounds it. */
function isFiller(text: string, s: number, e: number): boolean {
  let i = s;
  while (i < e && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9 || text.charCodeAt(i) === 13)) i++;
  return i >= e || text.charCodeAt(i) === 35; /* # */
}

/** A sequence entry at exactly `indent`: `- …` or a lone `-`. */
function isEntry(text: string, s: number, e: number, indent: number): boolean {
  if (indentOf(text, s, e) !== indent || text.charCodeAt(s + indent) !== 45 /* - */) return false;
  const next = s + indent + 1;
  const c = text.charCodeAt(next);
  return next >= e || c === 32 || c === 9 || c === 13;
}

/** The top-level documents of a YAML stream. */
export function* yamlDocuments(text: string): Generator<YamlDocument> {
  // Directives (%YAML, %TAG) change how what follows is read: no splitting at all.
  if (/^%/m.test(text)) {
    yield { text, firstLine: 0, split: null };
    return;
  }
  let docStart = 0;
  let docLine = 0;
  let line = 0;
  for (const [s, e] of lines(text, 0, text.length)) {
    if (DOC_MARKER.test(text.slice(s, Math.min(e, s + 4)))) {
      if (s > docStart) yield document(text, docStart, s, docLine);
      // A marker line with content after it (`--- !tag`, `--- - a`) starts the document.
      const rest = text.slice(s + 3, e).trim();
      docStart = rest === '' || rest.startsWith('#') ? e + 1 : s;
      docLine = rest === '' || rest.startsWith('#') ? line + 1 : line;
    }
    line++;
  }
  if (docStart < text.length) yield document(text, docStart, text.length, docLine);
}

function document(text: string, from: number, to: number, firstLine: number): YamlDocument {
  const whole = text.slice(from, to);
  let keyLine = -1; // start of the `items:` line
  let region = -1; // start of the first entry
  let indent = -1;
  let at: 'items' | 'root' = 'items';
  for (const [s, e] of lines(text, from, to)) {
    if (isFiller(text, s, e)) continue;
    if (region < 0 && keyLine < 0) {
      if (s === from && isEntry(text, s, e, 0)) {
        // The document is itself a sequence.
        at = 'root';
        region = s;
        indent = 0;
        break;
      }
      if (ITEMS_KEY.test(text.slice(s, e))) keyLine = s;
      continue;
    }
    // The first content line after `items:` must be an entry.
    indent = indentOf(text, s, e);
    if (!isEntry(text, s, e, indent)) return { text: whole, firstLine, split: null };
    region = s;
    break;
  }
  if (region < 0) return { text: whole, firstLine, split: null };
  // The items run until the first content line that is neither an entry at `indent` nor
  // deeper than it.
  let end = to;
  for (const [s, e] of lines(text, region, to)) {
    if (isFiller(text, s, e)) continue;
    const ind = indentOf(text, s, e);
    if (ind > indent || isEntry(text, s, e, indent)) continue;
    end = s;
    break;
  }
  if (at === 'root' && end < to) return { text: whole, firstLine, split: null };
  const head = text.slice(from, region) + text.slice(end, to);
  const runs = function* (): Generator<string> {
    let runStart = region;
    for (const [s, e] of lines(text, region, end)) {
      if (s - runStart >= CHUNK_BYTES && isEntry(text, s, e, indent)) {
        yield text.slice(runStart, s);
        runStart = s;
      }
    }
    if (runStart < end) yield text.slice(runStart, end);
  };
  return { text: whole, firstLine, split: { at, head, runs } };
}

/** Yielded by yamlValues at each document's start. */
export const DOC_START: unique symbol = Symbol('document start');
/**
 * Yielded by yamlValues when what the current document gave so far must be dropped: the
 * same document follows again, parsed whole (its pieces did not stand alone).
 */
export const DOC_REDO: unique symbol = Symbol('document again');

/** Thrown for unreadable YAML; the caller names the file. */
export class YamlError extends Error {}

/** Kubernetes output has no aliases; a few are allowed for hand-written files. */
const LOAD_OPTIONS = { maxAliases: 100, maxDepth: 64 } as const;

function loadWhole(doc: YamlDocument): unknown[] {
  try {
    return loadAll(doc.text, LOAD_OPTIONS);
  } catch (err) {
    if (!(err instanceof YAMLException)) throw err;
    const m = err.mark;
    const where = m ? ` (line ${m.line + 1 + doc.firstLine}, column ${m.column + 1})` : '';
    throw new YamlError(`${err.reason}${where}`, { cause: err });
  }
}

/**
 * The top-level values of a YAML stream in order; a List document gives its head (the
 * List without items) and then each item, parsed a run of CHUNK_BYTES at a time.
 */
export function* yamlValues(text: string): Generator<unknown> {
  for (const doc of yamlDocuments(text)) {
    yield DOC_START;
    const split = doc.split;
    if (split !== null) {
      let ok = true;
      try {
        const head = loadAll(split.head, LOAD_OPTIONS);
        const h = head.length === 1 ? head[0] : head.length === 0 ? null : undefined;
        if (split.at === 'items') {
          // Only a List's items stand alone: a Pod with an `items` field is one object.
          const o = h as Record<string, unknown> | null | undefined;
          const kind = o?.kind;
          ok =
            typeof o === 'object' &&
            o !== null &&
            !Array.isArray(o) &&
            o.items === null &&
            (kind === undefined || (typeof kind === 'string' && kind.endsWith('List')));
        } else ok = h === null;
        if (ok) {
          for (const run of split.runs()) {
            const v = loadAll(run, LOAD_OPTIONS);
            if (v.length !== 1 || !Array.isArray(v[0])) throw new YamlError('not a sequence');
            yield* v[0];
          }
        }
      } catch {
        ok = false;
      }
      if (ok) continue;
      yield DOC_REDO;
    }
    yield* loadWhole(doc);
  }
}
