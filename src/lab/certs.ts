// Test certificates made with openssl in a directory of the caller's: a CA and a server
// certificate it signed for 127.0.0.1 and localhost (EC P-256: fast to make).

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCerts {
  /** The CA certificate (PEM) a client trusts. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Makes `<name>-ca.crt`, `<name>.crt` and `<name>.key` in `dir`. */
export function makeCerts(dir: string, name = 'server', days = 2): TestCerts {
  const ssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const [ca, caKey, key, csr, cert] = ['-ca.crt', '-ca.key', '.key', '.csr', '.crt'].map(
    (s) => `${name}${s}`,
  );
  ssl([
    'req',
    '-x509',
    ...ec,
    '-keyout',
    caKey!,
    '-out',
    ca!,
    '-days',
    String(days),
    '-subj',
    `/CN=${name}-ca`,
  ]);
  ssl(['req', ...ec, '-keyout', key!, '-out', csr!, '-subj', '/CN=localhost']);
  writeFileSync(join(dir, `${name}-san.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl([
    ...['x509', '-req', '-in', csr!, '-CA', ca!, '-CAkey', caKey!, '-CAcreateserial'],
    ...['-out', cert!, '-days', String(days), '-extfile', `${name}-san.ext`],
  ]);
  return { ca: join(dir, ca!), cert: join(dir, cert!), key: join(dir, key!) };
}
