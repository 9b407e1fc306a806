// What the shipping tests share: the settings with every remote off (a test turns on the
// ones it needs), waiting for a condition, and the check that a refused sink keeps
// retrying under a reason naming the setting, losing nothing.

import assert from 'node:assert/strict';
import { LineBatch } from '../../../src/export/batch.ts';
import type { NetworkSink } from '../../../src/export/network.ts';
import type { ShippingOptions } from '../../../src/export/shipping.ts';

const batch = { records: 100, bytes: 1 << 20, timeoutMs: 2000 };

export function shippingOptions(dir: string, over: Partial<ShippingOptions> = {}): ShippingOptions {
  return {
    node: 'node-a',
    spoolDirectory: dir,
    spoolMaxBytes: 1 << 20,
    spoolFsyncIntervalMs: 1000,
    forward: {
      ...{ address: null, tag: 'flows', tls: false, tlsCa: null, sharedKey: null },
      ...{ username: null, password: null, compress: false, batch },
    },
    nats: {
      ...{ url: null, subject: null, stream: 'FLOWLOGS', createStream: false },
      ...{ user: null, password: null, token: null, tlsCa: null, batch },
    },
    otlp: { endpoint: null, headers: null, tlsCa: null, batch },
    ...over,
  };
}

export async function until(cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `n` lines {n, end_time}. */
export function numbered(n: number): LineBatch {
  return LineBatch.fromLines(
    Array.from({ length: n }, (_, i) => JSON.stringify({ n: i, end_time: 1_700_000_000 })),
  );
}

/** A sink the remote refuses: it retries under `reason`, keeps every line queued, drops none. */
export async function refused(s: NetworkSink, reason: RegExp): Promise<void> {
  s.write(numbered(10));
  await until(() => s.shipStats().retries >= 2);
  const errors = Object.keys(s.stats().errors);
  assert.ok(
    errors.some((e) => reason.test(e)),
    `errors ${JSON.stringify(errors)} do not match ${reason}`,
  );
  assert.equal(s.stats().queuedLines, 10);
  assert.equal(s.stats().droppedLines, 0);
  assert.equal(s.shipStats().ackedLines, 0);
}
