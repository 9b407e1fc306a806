// /livez and /readyz, the Kubernetes convention, on the metrics port.
//
// Live: the event loop answers (it is serving this request, and while the datapath
// drains, a timer that should fire every second has fired recently: a loop blocked for
// long is not live even if it catches up to answer one probe), and the addon's drain
// thread completes drain cycles (the last one is recent) or sleeps because there is
// nothing to drain. A failed liveness probe restarts the pod: only a daemon that is stuck
// fails it, never one that is merely not ready yet. An idle daemon runs neither: the
// heartbeat stops once no drain cycle came for two beats and starts again with the next
// cycle (nothing else runs on an idle loop that could block it).
// Ready: attached to at least one interface, and every informer (metadata, and
// FelixConfiguration) has synced once; until then flow logs would name nobody.

import type { IncomingMessage, ServerResponse } from 'node:http';

export interface HealthCheck {
  readonly name: string;
  /** null when fine, else why not. */
  readonly check: () => string | null;
}

export interface HealthOptions {
  /** The drain thread is dead when no cycle completed for this long; default 30 s. */
  readonly maxCycleAgeMs?: number;
  /** The event loop is stuck when its 1 s heartbeat is this late; default 10 s. */
  readonly maxLoopLagMs?: number;
  readonly now?: () => number;
}

export class Health {
  readonly #now: () => number;
  readonly #maxCycleAgeMs: number;
  readonly #maxLoopLagMs: number;
  readonly #ready: HealthCheck[] = [];
  #lastCycleMs: number;
  #lastBeatMs: number;
  #maxLagMs = 0;
  #timer: NodeJS.Timeout | null = null;
  #started = false;
  /** The drain thread sleeps (no cycles by design); default: it never does. */
  #drainAsleep: () => boolean = () => false;

  constructor(opts: HealthOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#maxCycleAgeMs = opts.maxCycleAgeMs ?? 30_000;
    this.#maxLoopLagMs = opts.maxLoopLagMs ?? 10_000;
    this.#lastCycleMs = this.#now();
    this.#lastBeatMs = this.#now();
  }

  /** Starts the event loop heartbeat (it runs while drain cycles come). */
  start(): void {
    this.#started = true;
    this.#beat();
  }

  #beat(): void {
    if (this.#timer !== null) return;
    this.#lastBeatMs = this.#now();
    this.#timer = setInterval(() => {
      const now = this.#now();
      this.#maxLagMs = Math.max(this.#maxLagMs, now - this.#lastBeatMs - 1000);
      this.#lastBeatMs = now;
      if (now - this.#lastCycleMs > 2000) this.#pause(); // the datapath went quiet
    }, 1000);
    this.#timer.unref();
  }

  #pause(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  stop(): void {
    this.#started = false;
    this.#pause();
  }

  /** A drain cycle completed (the datapath's 'cycle' event). */
  cycle(): void {
    this.#lastCycleMs = this.#now();
    if (this.#started) this.#beat();
  }

  /** How to tell that the drain thread sleeps for want of traffic (no cycles, not stuck). */
  drainMaySleep(asleep: () => boolean): void {
    this.#drainAsleep = asleep;
  }

  /** The heartbeat runs (tests). */
  get beating(): boolean {
    return this.#timer !== null;
  }

  /** Adds a readiness condition. */
  readyWhen(name: string, check: () => string | null): void {
    this.#ready.push({ name, check });
  }

  live(): string[] {
    const now = this.#now();
    const problems: string[] = [];
    const cycleAge = now - this.#lastCycleMs;
    if (cycleAge > this.#maxCycleAgeMs && !this.#drainAsleep())
      problems.push(`no drain cycle for ${Math.round(cycleAge / 1000)} s`);
    const lag = Math.max(this.#maxLagMs, now - this.#lastBeatMs - 1000);
    if (this.#timer !== null && lag > this.#maxLoopLagMs) {
      problems.push(`event loop blocked for ${Math.round(lag / 1000)} s`);
    }
    this.#maxLagMs = 0; // a lag is reported once: the loop is live again when it answers twice
    return problems;
  }

  ready(): string[] {
    const problems: string[] = [];
    for (const r of this.#ready) {
      const why = r.check();
      if (why !== null) problems.push(`${r.name}: ${why}`);
    }
    return problems;
  }

  /** Answers /livez and /readyz (`?verbose` lists the checks); false for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://x');
    const problems =
      url.pathname === '/livez' ? this.live() : url.pathname === '/readyz' ? this.ready() : null;
    if (problems === null) return false;
    const ok = problems.length === 0;
    const body = ok ? 'ok\n' : `${problems.map((p) => `[-] ${p}`).join('\n')}\nfailed\n`;
    res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
    return true;
  }
}
