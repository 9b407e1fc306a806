// Command lines for the lab's programs (traffic.ts, flowlogd) from an object, so a test
// says `cli('udp', { host, port: 8080, flows: 5 })` instead of a column of strings.

export type CliOptions = Readonly<Record<string, string | number | boolean | null | undefined>>;

/**
 * `positional` (if any), then `--kebab-case-name value` for each option in order: `true`
 * is the bare flag, `false`, null and undefined are left out. A trailing `MB` stays one
 * word, as in flowlogd's own flags (`flowLogsFileMaxFileSizeMB` -> `--flow-logs-file-max-file-size-mb`).
 */
export function cli(positional: string | null, options: CliOptions = {}): string[] {
  const args = positional === null ? [] : [positional];
  for (const [name, value] of Object.entries(options)) {
    if (value === false || value === null || value === undefined) continue;
    const flag = `--${name
      .replace(/MB$/, 'Mb')
      .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
      .toLowerCase()}`;
    args.push(flag);
    if (value !== true) args.push(String(value));
  }
  return args;
}
