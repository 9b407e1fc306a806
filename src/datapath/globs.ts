// Interface name globs, as every caller takes them: the datapath's options, the
// settings, `flowlogd dump`. One rule, so a glob one accepts the others accept too.

/**
 * A name or a glob with `*` (any run) and `?` (one character) over the characters Linux
 * interface names use here, at most 15 of them: IFNAMSIZ (16) less the NUL.
 */
const INTERFACE_GLOB_RE = /^[A-Za-z0-9_.:@*?+-]{1,15}$/;

/** The rule in words, for error messages. */
export const INTERFACE_GLOB_RULE = 'interface names or globs (*, ?), each at most 15 characters';

export function isInterfaceGlob(glob: unknown): glob is string {
  return typeof glob === 'string' && INTERFACE_GLOB_RE.test(glob);
}
