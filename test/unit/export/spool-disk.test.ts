// The spool on a real full disk: a 64 KiB tmpfs this test mounts and unmounts itself.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LineBatch } from '../../../src/export/batch.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import { ok, retryable, type SendResult, type Transport } from '../../../src/export/transport.ts';

const root = process.getuid?.() === 0;

/** Up (acknowledges) or down (refuses) as the test says. */
class Switch implements Transport {
  up = false;
  async send(): Promise<SendResult> {
    return this.up ? ok : retryable('ECONNREFUSED');
  }
  async close(): Promise<void> {}
}

test('ENOSPC on a real full tmpfs: counted, nothing blocks, batches ship from memory; drops only under that code', {
  skip: root ? false : 'mounting a tmpfs needs root',
}, async () => {
  const mnt = mkdtempSync(join(tmpdir(), 'flowlogd-fulldisk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'flowlogd-spool-test', mnt]);
  try {
    const t = new Switch();
    const sink = new NetworkSink({
      name: 'full',
      transport: t,
      spool: await Spool.open({ directory: mnt, segmentBytes: 16 << 10, maxMemoryBytes: 48 << 10 }),
      node: 'n',
      maxBatchLines: 10,
      retry: { minBackoffMs: 5, maxBackoffMs: 10, timeoutMs: 1000 },
    });
    const line = JSON.stringify({ pad: 'x'.repeat(990) }); // 1000 bytes with the newline
    // 160 lines = 160 KB into 64 KiB of disk, the remote down.
    for (let i = 0; i < 16; i++) {
      sink.write(LineBatch.fromLines(Array(10).fill(line)));
      await sink.flush();
    }
    const st = sink.shipStats();
    assert.ok((st.spool.errors.ENOSPC ?? 0) > 0, 'ENOSPC counted');
    const lost = st.dropped.ENOSPC ?? 0;
    const full = st.dropped['spool full'] ?? 0;
    assert.ok(lost > 0, 'batches neither on disk nor in memory were dropped under ENOSPC');
    // Every line is accounted for: backlog + dropped.
    assert.equal(st.spool.backlogLines + lost + full, 160);
    // The remote comes back: the backlog ships, from disk and from memory.
    t.up = true;
    const backlog = st.spool.backlogLines;
    for (let i = 0; i < 500 && sink.stats().queuedLines > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(sink.shipStats().ackedLines, backlog);
    // Room again: new batches are spooled on disk.
    const before = sink.shipStats().spool.errors.ENOSPC;
    sink.write(LineBatch.fromLines(Array(10).fill(line)));
    await sink.flush();
    assert.equal(sink.shipStats().spool.errors.ENOSPC, before);
    await sink.close();
  } finally {
    spawnSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});
