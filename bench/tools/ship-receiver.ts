// A remote for the ship bench, in its own process so the bench's CPU figures are
// flowlogd's alone: `forward` acknowledges PackedForward chunks (counting, not decoding,
// the entries), `otlp` answers every POST 200 with an empty ExportLogsServiceResponse.
// Prints its port, then runs until killed.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ForwardReceiver } from '../../src/lab/forward-receiver.ts';

const kind = process.argv[2];
if (kind === 'forward') {
  const rx = new ForwardReceiver({ keepEvents: false });
  process.stdout.write(`${await rx.listen()}\n`);
} else if (kind === 'otlp') {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
} else {
  throw new Error(`ship-receiver: forward or otlp, not ${kind}`);
}
