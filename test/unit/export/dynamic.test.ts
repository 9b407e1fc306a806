import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { DynamicAggregation, positionFileBacklog } from '../../../src/export/dynamic.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import { ok, type SendResult, type ShipBatch, type Transport } from '../../../src/export/transport.ts';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'flowlogd-dyn-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const hex = (n: number) => n.toString(16).padStart(16, '0');

test("Fluentd's position file: bytes of flows.log not yet read; rotation; unknown", () => {
  const log = join(dir, 'flows.log');
  const pos = join(dir, 'flows.log.pos');
  writeFileSync(log, 'x'.repeat(10_000));
  const ino = statSync(log).ino;
  writeFileSync(pos, `/other\t${hex(5)}\t${hex(1)}\n${log}\t${hex(2500)}\t${hex(ino)}\n`);
  assert.equal(positionFileBacklog(pos, log), 7500);
  // The tailer still follows the rotated file: the whole new file is unread.
  writeFileSync(pos, `${log}\t${hex(9000)}\t${hex(ino + 1)}\n`);
  assert.equal(positionFileBacklog(pos, log), 10_000);
  writeFileSync(pos, `${log}\tffffffffffffffff\t${hex(ino)}\n`);
  assert.equal(positionFileBacklog(pos, log), null);
  assert.equal(positionFileBacklog(join(dir, 'missing.pos'), log), null);
});

test('each threshold multiple raises the kinds one level, capped at 3; they fall as the backlog drains', () => {
  const d = new DynamicAggregation({ thresholdBytes: 1000, kindForAllowed: 1, kindForDenied: 0 });
  assert.equal(d.update([999, null]), null);
  assert.deepEqual(d.update([1000, 10]), {
    level: 1,
    previous: 0,
    backlogBytes: 1000,
    kindForAllowed: 2,
    kindForDenied: 1,
  });
  assert.equal(d.update([1500]), null);
  assert.deepEqual(d.update([2999, 5]), {
    level: 2,
    previous: 1,
    backlogBytes: 2999,
    kindForAllowed: 3,
    kindForDenied: 2,
  });
  // Denied can still rise one more; allowed stays at 3.
  assert.equal(d.update([50_000])?.level, 3);
  assert.deepEqual(d.kinds(), { kindForAllowed: 3, kindForDenied: 3 });
  assert.equal(d.update([60_000]), null);
  assert.deepEqual(d.update([0, null]), {
    level: 0,
    previous: 3,
    backlogBytes: 0,
    kindForAllowed: 1,
    kindForDenied: 0,
  });
});

/** A transport that holds every send until released. */
class Throttled implements Transport {
  #held: (() => void)[] = [];
  #open = false;
  readonly levels: number[] = [];
  async send(b: ShipBatch): Promise<SendResult> {
    if (!this.#open) await new Promise<void>((res) => this.#held.push(res));
    this.levels.push(b.level);
    return ok;
  }
  release(): void {
    this.#open = true;
    for (const r of this.#held.splice(0)) r();
  }
  async close(): Promise<void> {}
}

test('a sink throttled on purpose raises the kind; released, it falls', async () => {
  const t = new Throttled();
  const sink = new NetworkSink({
    name: 'slow',
    transport: t,
    spool: await Spool.open({ directory: dir }),
    node: 'n',
    maxBatchLines: 10,
  });
  const d = new DynamicAggregation({ thresholdBytes: 4000, kindForAllowed: 2, kindForDenied: 1 });
  const line = JSON.stringify({ pad: 'x'.repeat(90) }); // 100 bytes with the newline
  const levels: number[] = [];
  // Flushes of 20 lines (2000 bytes) each while nothing is acknowledged: the backlog grows.
  for (let flush = 0; flush < 4; flush++) {
    sink.write(LineBatch.fromLines(Array(20).fill(line)));
    await sink.flush();
    const c = d.update([sink.shipStats().spool.backlogBytes]);
    if (c) sink.level = c.level;
    levels.push(d.level);
  }
  // 2000, 4000, 6000, 8000 bytes: one level per 4000; allowed stops at 3, denied goes on.
  assert.deepEqual(levels, [0, 1, 1, 2]);
  assert.deepEqual(d.kinds(), { kindForAllowed: 3, kindForDenied: 3 });
  t.release();
  await sink.delivered();
  // Each batch carries the level in force when it was spooled.
  assert.deepEqual(t.levels, [0, 0, 0, 0, 1, 1, 1, 1]);
  assert.deepEqual(d.update([sink.shipStats().spool.backlogBytes]), {
    level: 0,
    previous: 2,
    backlogBytes: 0,
    kindForAllowed: 2,
    kindForDenied: 1,
  });
  await sink.close();
});
