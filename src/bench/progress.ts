// The live progress line on stderr: rewritten in place on a terminal, one line per step
// otherwise (a log or `kubectl exec` without -t keeps every step).
export class Progress {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  readonly #t0 = Date.now();
  readonly #expectedSeconds: number;
  #last = '';

  constructor(expectedSeconds: number, out: NodeJS.WriteStream = process.stderr) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#expectedSeconds = expectedSeconds;
  }

  elapsedSeconds(): number {
    return (Date.now() - this.#t0) / 1000;
  }

  /** Shows `what` with the elapsed and expected time. */
  update(what: string): void {
    const line = `bench: ${what} — ${fmtDuration(this.elapsedSeconds())} of ~${fmtDuration(this.#expectedSeconds)}`;
    if (this.#tty) this.#out.write(`\r\x1b[K${line}`);
    else if (what !== this.#last) this.#out.write(`${line}\n`);
    this.#last = what;
  }

  done(): void {
    if (this.#tty) this.#out.write('\r\x1b[K');
  }
}

export function fmtDuration(s: number): string {
  const m = Math.floor(s / 60);
  const sec = Math.round(s - m * 60);
  return m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
