/**
 * The same string, flat. Template literals give V8 rope (cons) strings, a tree of nodes
 * several times the size of the text, kept as long as the string is; trim() flattens.
 * For strings that are kept (map keys, cached JSON) and cannot begin or end with
 * whitespace.
 */
export function flat(s: string): string {
  return s.trim();
}
