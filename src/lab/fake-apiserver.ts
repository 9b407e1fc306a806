// A local stand-in for kube-apiserver, for tests and benchmarks (no API server can be
// had on this project's machines): HTTPS with its own CA (made with openssl at start,
// written into a kubeconfig), a bearer token (401 without it), and the real list and
// watch protocol for the collections it is told to serve:
// - one resourceVersion counter for everything, as etcd's revision;
// - lists in pages (`limit`, `continue`; a continue token older than the compacted
//   revision is 410 Expired, as the real server does);
// - watches as a chunked stream of JSON lines from `resourceVersion` on: the events
//   since then, then live ones; BOOKMARK when asked for (`allowWatchBookmarks`);
//   a resourceVersion older than the compacted history gets 200 + an ERROR event with a
//   410 Status (what kube-apiserver sends), or an HTTP 410 if `expiredAs` says so;
//   `timeoutSeconds` ends the stream cleanly;
// - a path nobody serves is 404 (a CRD not installed).
// Tests change objects with put()/remove(), and the history with compact(), and cut
// connections with dropWatches() (sockets destroyed mid-stream) or endWatches().

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCerts } from './certs.ts';

type Obj = Record<string, unknown>;

interface Collection {
  readonly listKind: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly objects: Map<string, Obj>;
  /** Events after the compacted revision, oldest first. */
  readonly events: { rv: number; type: string; json: string }[];
}

interface OpenWatch {
  readonly path: string;
  readonly res: ServerResponse;
  readonly bookmarks: boolean;
}

export interface RequestRecord {
  readonly path: string;
  readonly watch: boolean;
  readonly resourceVersion: string | null;
  readonly status: number;
}

export interface FakeApiServerOptions {
  readonly token?: string;
  /** 'event' (default): a too-old watch gets 200 + ERROR 410; 'status': HTTP 410. */
  readonly expiredAs?: 'event' | 'status';
}

function keyOf(o: Obj): string {
  const md = o.metadata as Obj;
  return `${typeof md.namespace === 'string' ? md.namespace : ''}/${String(md.name)}`;
}

function status(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

export class FakeApiServer {
  readonly token: string;
  expiredAs: 'event' | 'status';
  readonly #dir: string;
  readonly #server: Server;
  readonly #collections = new Map<string, Collection>();
  readonly #watches = new Set<OpenWatch>();
  readonly #sockets = new Set<Socket>();
  /** While true every request gets 503 (an API server restarting). */
  unavailable = false;
  #rv = 1000;
  #compactedRv = 0;
  /** Every request, in order (tests assert resumes vs relists with it). */
  readonly requests: RequestRecord[] = [];
  url = '';
  kubeconfigPath = '';
  caPath = '';

  private constructor(opts: FakeApiServerOptions) {
    this.token = opts.token ?? 'fake-token-0123456789';
    this.expiredAs = opts.expiredAs ?? 'event';
    this.#dir = mkdtempSync(join(tmpdir(), 'flowlogd-fakeapi-'));
    const d = this.#dir;
    const certs = makeCerts(d);
    this.caPath = certs.ca;
    this.#server = createServer(
      { key: readFileSync(certs.key), cert: readFileSync(certs.cert) },
      (req, res) => this.#handle(req, res),
    );
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(opts);
    await new Promise<void>((resolve) => s.#server.listen(0, '127.0.0.1', resolve));
    const port = (s.#server.address() as AddressInfo).port;
    s.url = `https://127.0.0.1:${port}`;
    s.kubeconfigPath = join(s.#dir, 'kubeconfig');
    writeFileSync(s.kubeconfigPath, s.kubeconfig());
    return s;
  }

  /** A kubeconfig for this server: its CA, the token. */
  kubeconfig(token = this.token): string {
    const ca = readFileSync(this.caPath).toString('base64');
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: fake\n  cluster:\n    server: ${this.url}\n    certificate-authority-data: ${ca}`,
      'users:',
      `- name: flowlogd\n  user:\n    token: ${token}`,
      'contexts:',
      '- name: fake\n  context:\n    cluster: fake\n    user: flowlogd',
      'current-context: fake',
      '',
    ].join('\n');
  }

  /** Starts serving a collection, e.g. ('/api/v1/pods', 'v1', 'Pod'). */
  serve(path: string, apiVersion: string, kind: string): void {
    if (this.#collections.has(path)) return;
    this.#collections.set(path, {
      listKind: `${kind}List`,
      apiVersion,
      kind,
      objects: new Map(),
      events: [],
    });
  }

  /** Stops serving a collection (a CRD deleted): its watches end, requests get 404. */
  unserve(path: string): void {
    this.#collections.delete(path);
    for (const w of this.#watches) if (w.path === path) w.res.end();
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  #collection(path: string): Collection {
    const c = this.#collections.get(path);
    if (c === undefined) throw new Error(`fake API server: ${path} is not served`);
    return c;
  }

  /** Creates or replaces an object (ADDED or MODIFIED). Returns its new resourceVersion. */
  put(path: string, obj: Obj): number {
    const c = this.#collection(path);
    const rv = ++this.#rv;
    const md = { ...(obj.metadata as Obj), resourceVersion: String(rv) };
    const stored: Obj = { apiVersion: c.apiVersion, kind: c.kind, ...obj, metadata: md };
    const key = keyOf(stored);
    const type = c.objects.has(key) ? 'MODIFIED' : 'ADDED';
    c.objects.set(key, stored);
    this.#emit(path, c, rv, type, stored);
    return rv;
  }

  /** Deletes an object (DELETED); false if it did not exist. */
  remove(path: string, namespace: string | null, name: string): boolean {
    const c = this.#collection(path);
    const key = `${namespace ?? ''}/${name}`;
    const old = c.objects.get(key);
    if (old === undefined) return false;
    c.objects.delete(key);
    const rv = ++this.#rv;
    this.#emit(path, c, rv, 'DELETED', {
      ...old,
      metadata: { ...(old.metadata as Obj), resourceVersion: String(rv) },
    });
    return true;
  }

  objects(path: string): Obj[] {
    return [...this.#collection(path).objects.values()];
  }

  /** Forgets the event history (etcd compaction): older resourceVersions are now 410. */
  compact(): void {
    this.#compactedRv = this.#rv;
    for (const c of this.#collections.values()) c.events.length = 0;
  }

  /** Sends a BOOKMARK at the current resourceVersion on every watch that asked for them. */
  bookmark(): number {
    let n = 0;
    for (const w of this.#watches) {
      if (!w.bookmarks || w.res.writableEnded) continue;
      const c = this.#collections.get(w.path);
      if (c === undefined) continue;
      const obj = { kind: c.kind, apiVersion: c.apiVersion, metadata: { resourceVersion: String(this.#rv) } };
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object: obj })}\n`);
      n++;
    }
    return n;
  }

  /** Sends an ERROR 410 event on every open watch and ends them (the history was compacted under them). */
  expireWatches(): void {
    this.compact();
    for (const w of this.#watches) {
      w.res.end(
        `${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', 'too old resource version') })}\n`,
      );
    }
  }

  /** Destroys the sockets of every open watch mid-stream (a dropped connection). */
  dropWatches(): number {
    const n = this.#watches.size;
    for (const w of this.#watches) w.res.socket?.destroy();
    this.#watches.clear();
    return n;
  }

  /** Ends every open watch cleanly (what the server does at timeoutSeconds). */
  endWatches(): void {
    for (const w of this.#watches) w.res.end();
  }

  /** Open watches on one collection. */
  openWatchesOn(path: string): number {
    let n = 0;
    for (const w of this.#watches) if (w.path === path && !w.res.writableEnded) n++;
    return n;
  }

  get openWatches(): number {
    return this.#watches.size;
  }

  #emit(path: string, c: Collection, rv: number, type: string, obj: Obj): void {
    const json = `${JSON.stringify({ type, object: obj })}\n`;
    c.events.push({ rv, type, json });
    for (const w of this.#watches) if (w.path === path && !w.res.writableEnded) w.res.write(json);
  }

  #record(req: IncomingMessage, url: URL, code: number): void {
    this.requests.push({
      path: url.pathname,
      watch: url.searchParams.get('watch') === 'true',
      resourceVersion: url.searchParams.get('resourceVersion'),
      status: code,
    });
    void req;
  }

  #fail(req: IncomingMessage, res: ServerResponse, url: URL, s: Obj): void {
    this.#record(req, url, s.code as number);
    res.writeHead(s.code as number, { 'content-type': 'application/json' }).end(JSON.stringify(s));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake');
    if (this.unavailable) {
      this.#fail(req, res, url, status(503, 'ServiceUnavailable', 'apiserver is shutting down'));
      return;
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      this.#fail(req, res, url, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    const c = this.#collections.get(url.pathname);
    if (req.method !== 'GET' || c === undefined) {
      this.#fail(req, res, url, status(404, 'NotFound', 'the server could not find the requested resource'));
      return;
    }
    if (url.searchParams.get('watch') === 'true') this.#watch(req, res, url, c);
    else this.#list(req, res, url, c);
  }

  #list(req: IncomingMessage, res: ServerResponse, url: URL, c: Collection): void {
    const limit = Number(url.searchParams.get('limit') ?? '0');
    let offset = 0;
    let rv = this.#rv;
    const token = url.searchParams.get('continue');
    if (token) {
      const t = JSON.parse(Buffer.from(token, 'base64url').toString()) as { rv: number; offset: number };
      if (t.rv < this.#compactedRv) {
        this.#fail(req, res, url, status(410, 'Expired', 'The provided continue parameter is too old'));
        return;
      }
      offset = t.offset;
      rv = t.rv;
    }
    const keys = [...c.objects.keys()].sort();
    const end = limit > 0 ? Math.min(keys.length, offset + limit) : keys.length;
    const md: Obj = { resourceVersion: String(rv) };
    if (end < keys.length)
      md.continue = Buffer.from(JSON.stringify({ rv, offset: end })).toString('base64url');
    this.#record(req, url, 200);
    res.writeHead(200, { 'content-type': 'application/json' });
    // Written item by item: a 50,000-object list is never one string here either.
    res.write(
      `{"kind":"${c.listKind}","apiVersion":"${c.apiVersion}","metadata":${JSON.stringify(md)},"items":[`,
    );
    for (let i = offset; i < end; i++) {
      res.write((i > offset ? ',' : '') + JSON.stringify(c.objects.get(keys[i]!)));
    }
    res.end(']}');
  }

  #watch(req: IncomingMessage, res: ServerResponse, url: URL, c: Collection): void {
    const rvText = url.searchParams.get('resourceVersion');
    const from = rvText === null || rvText === '' || rvText === '0' ? this.#rv : Number(rvText);
    const expired = from < this.#compactedRv;
    if (expired && this.expiredAs === 'status') {
      this.#fail(
        req,
        res,
        url,
        status(410, 'Expired', `too old resource version: ${from} (${this.#compactedRv})`),
      );
      return;
    }
    this.#record(req, url, 200);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    if (expired) {
      const s = status(410, 'Expired', `too old resource version: ${from} (${this.#compactedRv})`);
      res.end(`${JSON.stringify({ type: 'ERROR', object: s })}\n`);
      return;
    }
    for (const e of c.events) if (e.rv > from) res.write(e.json);
    const w: OpenWatch = {
      path: url.pathname,
      res,
      bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true',
    };
    this.#watches.add(w);
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000).unref() : null;
    res.on('close', () => {
      this.#watches.delete(w);
      if (timer !== null) clearTimeout(timer);
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
