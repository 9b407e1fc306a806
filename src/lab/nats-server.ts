// A real nats-server (Debian's package) for tests and benchmarks: JetStream on, its store in a
// temporary directory, on a free loopback port; stop() and start() again on the same
// port and store to test an outage.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';

export const haveNatsServer = spawnSync('nats-server', ['--version']).status === 0;
export const natsSkip = haveNatsServer ? false : 'nats-server not installed (scripts/setup.sh installs it)';

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}

/** How clients must connect: TLS (the server's certificate and key files), a user, or a token. */
export interface NatsServerOptions {
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
  readonly user?: { readonly name: string; readonly password: string };
  readonly token?: string;
}

export class NatsServer {
  readonly storeDir: string;
  readonly options: NatsServerOptions;
  port = 0;
  #proc: ChildProcess | null = null;

  constructor(storeDir: string, options: NatsServerOptions = {}) {
    this.storeDir = storeDir;
    this.options = options;
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  /** The connection options a client of this server needs (messages() uses them). */
  clientOptions(): Partial<NodeConnectionOptions> {
    const o = this.options;
    return {
      ...(o.tls ? { tls: { caFile: o.tls.ca } } : {}),
      ...(o.user ? { user: o.user.name, pass: o.user.password } : {}),
      ...(o.token ? { token: o.token } : {}),
    };
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const p = spawn(
      'nats-server',
      [
        ...['-js', '-sd', this.storeDir, '-p', String(this.port), '-a', '127.0.0.1'],
        ...(this.options.tls
          ? ['--tls', '--tlscert', this.options.tls.cert, '--tlskey', this.options.tls.key]
          : []),
        ...(this.options.user
          ? ['--user', this.options.user.name, '--pass', this.options.user.password]
          : []),
        ...(this.options.token ? ['--auth', this.options.token] : []),
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    this.#proc = p;
    let log = '';
    p.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
    });
    const end = Date.now() + 10_000;
    while (!/Server is ready/.test(log)) {
      if (p.exitCode !== null || Date.now() > end) throw new Error(`nats-server did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGKILL: no clean shutdown, as a crashed or OOM-killed server. */
  async kill(): Promise<void> {
    const p = this.#proc;
    this.#proc = null;
    if (p === null || p.exitCode !== null) return;
    const exited = new Promise((res) => p.once('exit', res));
    p.kill('SIGKILL');
    await exited;
  }

  /** Every message of `stream`, oldest first: its headers and payload lines. */
  async messages(stream: string): Promise<{ headers: Record<string, string>; lines: string[] }[]> {
    const nc = await connect({ servers: this.url, ...this.clientOptions() });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(stream);
      const out: { headers: Record<string, string>; lines: string[] }[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        if (m === null) continue;
        const headers: Record<string, string> = {};
        for (const k of m.header?.keys() ?? []) headers[k] = m.header.get(k);
        out.push({ headers, lines: Buffer.from(m.data).toString().split('\n').slice(0, -1) });
      }
      return out;
    } finally {
      await nc.close();
    }
  }
}
