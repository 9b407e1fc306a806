// flowlogd's shipping path in a child process, so a test can SIGKILL it: a NetworkSink
// with its spool and a NATS JetStream transport.
//   node ship-child.ts URL SPOOL_DIR LINES KILL_AFTER_ACKS
// writes LINES numbered flow log lines (none when 0), and when KILL_AFTER_ACKS > 0 kills
// itself (SIGKILL) right after that many batches are acknowledged by the server, before
// the spool can record it; otherwise it delivers everything, prints its stats as JSON
// and exits.

import { LineBatch } from '../../../src/export/batch.ts';
import { NatsTransport } from '../../../src/export/nats.ts';
import { NetworkSink } from '../../../src/export/network.ts';
import { Spool } from '../../../src/export/spool.ts';
import type { SendResult, ShipBatch, Transport } from '../../../src/export/transport.ts';

const [url, spoolDir, nLines, killAfter] = process.argv.slice(2);
const nats = new NatsTransport({ url: url!, node: 'node-a', createStream: true });
let acks = 0;
const transport: Transport = {
  async send(b: ShipBatch, deadline: number): Promise<SendResult> {
    const r = await nats.send(b, deadline);
    if (r.status === 'ok' && ++acks === Number(killAfter)) {
      // Every batch on disk first (the daemon's flush waits for that too), then the kill.
      await sink.flush();
      process.kill(process.pid, 'SIGKILL');
    }
    return r;
  },
  close: () => nats.close(),
};
const sink = new NetworkSink({
  name: 'nats',
  transport,
  // Acknowledgements are not saved before the kill: the replay must resend them.
  spool: await Spool.open({ directory: spoolDir!, stateIntervalMs: 60_000 }),
  node: 'node-a',
  maxBatchLines: 100,
  window: 1,
  retry: { minBackoffMs: 50, maxBackoffMs: 200, timeoutMs: 2000 },
});
const n = Number(nLines);
if (n > 0)
  sink.write(
    LineBatch.fromLines(
      Array.from({ length: n }, (_, i) => JSON.stringify({ n: i, end_time: 1_700_000_000 })),
    ),
  );
await sink.flush();
for (;;) {
  await sink.delivered();
  if (sink.stats().queuedLines === 0) break;
  await new Promise((r) => setTimeout(r, 50));
}
process.stdout.write(`${JSON.stringify(sink.shipStats())}\n`);
await sink.close();
