// The standard traffic of `flowlogd bench lab`, between two lab pods (client on CPU 0,
// server on CPU 1), made by the bench's native generator (bpf/tools/benchtool_traffic.c): a Node
// generator tops out far below what one flow of small datagrams reaches.

export interface Scenario {
  name: string;
  title: string;
  /** Distinct connections the traffic keeps alive at once. */
  flows: number;
  /** The generator's arguments after HOST PORT, given the window's seconds. */
  client: (host: string, seconds: number) => string[];
  /** 'sink' swallows UDP; 'serve' echoes UDP and answers TCP requests. */
  server: 'sink' | 'serve';
  /** The address family the traffic uses (the pods have both). */
  family: 4 | 6;
  /** Run only when named with --scenarios (not part of the standard set). */
  optional?: true;
}

export const PORTS = { sink: 5001, serve: 5002 } as const;

export const UDP_PAYLOAD = 18; // 60-byte Ethernet frames: the smallest there are

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'udp-saturate',
    title: 'one saturating small-UDP flow',
    flows: 1,
    client: (host, s) => ['blast', '-c', '0', host, String(PORTS.sink), '1', String(UDP_PAYLOAD), String(s)],
    server: 'sink',
    family: 4,
  },
  {
    name: 'tcp-rr',
    title: 'request/response TCP, a new connection per request (16 in flight)',
    flows: 16,
    client: (host, s) => ['tcprr', '-c', '0', host, String(PORTS.serve), '16', String(s)],
    server: 'serve',
    family: 4,
  },
  {
    name: 'udp-pingpong',
    title: 'ping-pong UDP over 64 flows',
    flows: 64,
    client: (host, s) => ['pingpong', '-c', '0', host, String(PORTS.serve), '64', String(s)],
    server: 'serve',
    family: 4,
  },
  {
    name: 'udp-1024',
    title: 'a 1,024-flow small-UDP blast',
    flows: 1024,
    client: (host, s) => [
      'blast',
      '-c',
      '0',
      host,
      String(PORTS.sink),
      '1024',
      String(UDP_PAYLOAD),
      String(s),
    ],
    server: 'sink',
    family: 4,
  },
  // The same request/response shapes over IPv6 (through its own per-CPU cache,
  // bpf/include/flow_cache.h): named with --scenarios, so the standard run stays as long.
  {
    name: 'tcp-rr6',
    title: 'request/response TCP over IPv6, a new connection per request (16 in flight)',
    flows: 16,
    client: (host, s) => ['tcprr', '-c', '0', host, String(PORTS.serve), '16', String(s)],
    server: 'serve',
    family: 6,
    optional: true,
  },
  {
    name: 'udp-pingpong6',
    title: 'ping-pong UDP over 64 IPv6 flows',
    flows: 64,
    client: (host, s) => ['pingpong', '-c', '0', host, String(PORTS.serve), '64', String(s)],
    server: 'serve',
    family: 6,
    optional: true,
  },
];

export function pickScenarios(names: string[] | undefined): Scenario[] {
  if (!names || names.length === 0) return SCENARIOS.filter((s) => !s.optional);
  return names.map((n) => {
    const s = SCENARIOS.find((x) => x.name === n);
    if (!s)
      throw new Error(
        `--scenarios: no scenario ${JSON.stringify(n)}; have ${SCENARIOS.map((x) => x.name).join(', ')}`,
      );
    return s;
  });
}
