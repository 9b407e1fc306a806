// Traffic generator run inside lab "pods" (ip netns exec ... node traffic.ts MODE ...).
// Prints one JSON line describing what it did, so tests know every 5-tuple and byte.
//
//   serve  --port P [--hold]                TCP + UDP server on [::]:P
//   tcp    --host H[,H...] --port P --conns N --send B --recv B [--parallel K] [--hold]
//   udp    --host H[,H...] --port P --flows N --datagrams D --size S
//   spray  --host H --flows N --every S   one 8-byte datagram on each of N UDP 5-tuples
//          (16 source sockets × destination ports from --port), again every S seconds,
//          until stdin closes or a line arrives: N connections kept active (benchmarks);
//          its line comes once the kernel has taken the whole first round
// (one JSON line per host)
//
// TCP protocol: the client sends an 8-byte header (u32 bytes it will send, u32 bytes it
// wants back) and its payload; the server answers with the bytes asked for and closes.
// serve --hold: keep every TCP reply until a line arrives on stdin, so the server sends
// the first packet a late-started flowlogd sees (connections that predate flowlogd).
// tcp --hold: open every connection, send half, print {"ready":...}, wait for a line on
// stdin, then finish.
import dgram from 'node:dgram';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string' },
    port: { type: 'string' },
    conns: { type: 'string', default: '1' },
    flows: { type: 'string', default: '1' },
    send: { type: 'string', default: '0' },
    recv: { type: 'string', default: '0' },
    parallel: { type: 'string', default: '16' },
    datagrams: { type: 'string', default: '1' },
    size: { type: 'string', default: '100' },
    every: { type: 'string', default: '4' },
    hold: { type: 'boolean', default: false },
  },
});
const mode = positionals[0];
const port = Number(values.port);

function serve(): void {
  const held: (() => void)[] | null = values.hold ? [] : null;
  if (held) {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', () => {
      for (const release of held.splice(0)) release();
    });
  }
  const tcp = net.createServer((sock) => {
    let pending: Buffer | null = Buffer.alloc(0);
    let want = 0;
    let reply = 0;
    let got = 0;
    sock.on('data', (chunk) => {
      if (pending) {
        pending = Buffer.concat([pending, chunk]);
        if (pending.length < 8) return;
        want = pending.readUInt32BE(0);
        reply = pending.readUInt32BE(4);
        got = pending.length - 8;
        pending = null;
      } else {
        got += chunk.length;
      }
      if (got < want) return;
      const answer = () => sock.end(Buffer.alloc(reply, 0x5a));
      if (held) held.push(answer);
      else answer();
    });
    sock.on('error', () => {});
  });
  tcp.listen(port, '::');
  const udp = dgram.createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', (msg, rinfo) => udp.send(msg, rinfo.port, rinfo.address));
  udp.bind(port, '::');
  tcp.on('listening', () => process.stdout.write(`${JSON.stringify({ listening: port })}\n`));
}

// Every connection of one run gets its own source port. The server closes first, so the
// client's kernel may hand a just-closed connection's port to the next one; conntrack
// then replaces the closed entry and the ground truth would hold one of two identical
// connections that flowlogd counted under one tuple (a flake seen as doubled counts).
let nextPort = 20_000 + Math.floor(Math.random() * 30_000);

function tcpConn(host: string, send: number, recv: number, hold: Promise<void> | null) {
  return new Promise<{ sport: number; sent: number; received: number }>((resolve, reject) => {
    const sock = net.connect({ host, port, localPort: nextPort++ });
    let received = 0;
    let sport = 0;
    sock.on('connect', async () => {
      sport = sock.localPort ?? 0;
      const header = Buffer.alloc(8);
      header.writeUInt32BE(send, 0);
      header.writeUInt32BE(recv, 4);
      const body = Buffer.alloc(send, 0xa5);
      if (hold) {
        const half = Math.floor(send / 2);
        sock.write(Buffer.concat([header, body.subarray(0, half)]));
        await hold;
        sock.write(body.subarray(half));
      } else {
        sock.write(Buffer.concat([header, body]));
      }
    });
    sock.on('data', (c) => {
      received += c.length;
    });
    sock.on('end', () => sock.end());
    let retried = false;
    sock.on('close', () => {
      if (!retried) resolve({ sport, sent: send, received });
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // A port another client process in the same pod holds: take the next one.
      if (e.code === 'EADDRINUSE' && sport === 0) {
        retried = true;
        tcpConn(host, send, recv, hold).then(resolve, reject);
      } else reject(e);
    });
  });
}

async function tcpClient(): Promise<void> {
  for (const host of values.host!.split(',')) await tcpClientTo(host);
}

async function tcpClientTo(host: string): Promise<void> {
  const conns = Number(values.conns);
  const parallel = Number(values.parallel);
  let release: () => void = () => {};
  const hold = values.hold ? new Promise<void>((r) => (release = r)) : null;
  const results: { sport: number; sent: number; received: number }[] = [];
  if (hold) {
    const all = Array.from({ length: conns }, () =>
      tcpConn(host, Number(values.send), Number(values.recv), hold),
    );
    // Wait until every connection has written its first half.
    await new Promise((r) => setTimeout(r, 300));
    process.stdout.write(`${JSON.stringify({ ready: conns })}\n`);
    const rl = createInterface({ input: process.stdin });
    await new Promise<void>((r) => rl.once('line', () => r()));
    rl.close();
    release();
    results.push(...(await Promise.all(all)));
  } else {
    for (let i = 0; i < conns; i += parallel) {
      const batch = Array.from({ length: Math.min(parallel, conns - i) }, () =>
        tcpConn(host, Number(values.send), Number(values.recv), null),
      );
      results.push(...(await Promise.all(batch)));
    }
  }
  process.stdout.write(`${JSON.stringify({ tcp: results })}\n`);
}

async function udpClient(): Promise<void> {
  for (const host of values.host!.split(',')) await udpClientTo(host);
}

async function udpClientTo(host: string): Promise<void> {
  const flows = Number(values.flows);
  const datagrams = Number(values.datagrams);
  const size = Number(values.size);
  const results: { sport: number; sent: number; received: number }[] = [];
  for (let f = 0; f < flows; f++) {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    await new Promise<void>((r) => sock.bind(0, () => r()));
    let received = 0;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 3000);
      sock.on('message', () => {
        received++;
        if (received === datagrams) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    for (let d = 0; d < datagrams; d++) sock.send(Buffer.alloc(size, 0x11), port, host);
    await done;
    results.push({ sport: sock.address().port, sent: datagrams, received });
    sock.close();
  }
  process.stdout.write(`${JSON.stringify({ udp: results })}\n`);
}

async function spray(): Promise<void> {
  const host = values.host!;
  const flows = Number(values.flows);
  const every = Number(values.every) * 1000;
  const SOCKETS = 16;
  const perSocket = Math.ceil(flows / SOCKETS);
  const socks: dgram.Socket[] = [];
  for (let i = 0; i < SOCKETS; i++) {
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', sendBufferSize: 4 << 20 });
    await new Promise<void>((r) => sock.bind(0, () => r()));
    socks.push(sock);
  }
  const payload = Buffer.alloc(8, 0x5a);
  let stop = false;
  const rl = createInterface({ input: process.stdin });
  rl.once('line', () => {
    stop = true;
  });
  rl.once('close', () => {
    stop = true;
  });
  let rounds = 0;
  while (!stop) {
    const t = Date.now();
    let sent = 0;
    // The first round is announced once the kernel has taken every datagram of it (each
    // send's callback ran), so a test can stop the spray then instead of sleeping on it.
    let pending = 0;
    let handedOver: () => void = () => {};
    const allHandedOver = new Promise<void>((r) => (handedOver = r));
    const done = () => {
      if (--pending === 0) handedOver();
    };
    for (let j = 0; j < perSocket && sent < flows; j++)
      for (let i = 0; i < SOCKETS && sent < flows; i++, sent++) {
        // Paced a little: the socket's send queue holds the rest.
        if (sent % 4096 === 0) await new Promise((r) => setImmediate(r));
        if (rounds === 0) pending++;
        socks[i]!.send(payload, port + j, host, rounds === 0 ? done : undefined);
      }
    rounds++;
    if (rounds === 1) {
      if (pending > 0) await allHandedOver;
      process.stdout.write(`${JSON.stringify({ spraying: flows, ms: Date.now() - t })}\n`);
    }
    await new Promise((r) => setTimeout(r, Math.max(0, every - (Date.now() - t))));
  }
  rl.close();
  for (const s of socks) s.close();
}

if (mode === 'serve') serve();
else if (mode === 'spray') await spray();
else if (mode === 'tcp') await tcpClient();
else if (mode === 'udp') await udpClient();
else {
  process.stderr.write(`traffic: unknown mode ${JSON.stringify(mode)}\n`);
  process.exit(2);
}
