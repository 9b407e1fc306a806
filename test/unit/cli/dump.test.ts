import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DumpTable } from '../../../src/cli/dump.ts';
import { InitiatorHow, TcpFlag } from '../../../src/datapath/types.ts';
import { T0, upd } from '../aggregate/helpers.ts';

const { FIN, SYN, RST, PSH, ACK } = TcpFlag;
const key = 'k1';
const client = { srcIp: '10.0.0.1', srcPort: 40000, dstIp: '10.0.0.2', dstPort: 80 };
const server = { srcIp: '10.0.0.2', srcPort: 80, dstIp: '10.0.0.1', dstPort: 40000 };

test('dump sums a connection in one orientation, and turns it round for a surer initiator', () => {
  const t = new DumpTable();
  const at = (ms: number) => ({ firstSeenMs: T0 + ms, lastSeenMs: T0 + ms + 500 });
  const guess = InitiatorHow.portGuess;
  t.add(upd({ key, ...client, initiatorHow: guess, ...at(1000), origPackets: 2, origBytes: 200 }));
  t.add({ ...upd({ key, ...client, initiatorHow: guess, ...at(1000) }), replyPackets: 1, replyBytes: 60 });
  t.add({
    ...upd({ key, ...client, initiatorHow: guess, ...at(1000) }),
    origTcpFlags: ACK,
    replyTcpFlags: ACK | PSH,
  });
  // The same connection as the other side saw it, no surer: added the row's way round.
  t.add(
    upd({
      key,
      ...server,
      initiatorHow: guess,
      ...at(2000),
      origPackets: 3,
      origBytes: 300,
      replyPackets: 4,
      replyBytes: 400,
      origTcpFlags: FIN,
      replyTcpFlags: RST,
    }),
  );
  assert.deepEqual(
    t
      .lines()
      .map((l) => [l.src_ip, l.src_port, l.orig_packets, l.orig_bytes, l.reply_packets, l.reply_bytes]),
    [['10.0.0.1', 40000, 6, 600, 4, 360]],
  );
  assert.deepEqual(t.lines()[0]!.tcp_flags, { orig: ['RST', 'ACK'], reply: ['FIN', 'PSH', 'ACK'] });
  // A SYN from the server's side: it opened the connection, so the row turns round.
  t.add(
    upd({
      key,
      ...server,
      initiatorHow: InitiatorHow.syn,
      ...at(500),
      origPackets: 1,
      origBytes: 50,
      origTcpFlags: SYN,
    }),
  );
  const [l] = t.lines();
  assert.deepEqual(
    [
      l!.src_ip,
      l!.src_port,
      l!.dst_ip,
      l!.dst_port,
      l!.orig_packets,
      l!.orig_bytes,
      l!.reply_packets,
      l!.reply_bytes,
    ],
    ['10.0.0.2', 80, '10.0.0.1', 40000, 5, 410, 6, 600],
  );
  assert.deepEqual(l!.tcp_flags, { orig: ['FIN', 'SYN', 'PSH', 'ACK'], reply: ['RST', 'ACK'] });
  assert.deepEqual(
    [l!.first_seen, l!.last_seen],
    [new Date(T0 + 500).toISOString(), new Date(T0 + 2500).toISOString()],
  );
});
