import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalIp, cidrContains, parseCidr, parseIp, privacyOf } from '../../../src/enrich/ip.ts';

test('pvt/pub per SPEC §2, including CGNAT, ULA and link-local', () => {
  const cases: [string, 'pvt' | 'pub'][] = [
    ['10.0.0.1', 'pvt'],
    ['10.255.255.255', 'pvt'],
    ['172.16.0.1', 'pvt'],
    ['172.31.255.255', 'pvt'],
    ['172.32.0.1', 'pub'],
    ['172.15.255.255', 'pub'],
    ['192.168.0.14', 'pvt'],
    ['192.169.0.1', 'pub'],
    ['100.64.0.1', 'pvt'],
    ['100.127.255.255', 'pvt'],
    ['100.128.0.0', 'pub'],
    ['100.63.255.255', 'pub'],
    ['169.254.1.1', 'pvt'],
    ['198.17.8.43', 'pub'],
    ['8.8.8.8', 'pub'],
    ['fc00::1', 'pvt'],
    ['fd12:3456::1', 'pvt'],
    ['fe80::1', 'pvt'],
    ['febf::1', 'pvt'],
    ['fec0::1', 'pub'],
    ['2001:db8::1', 'pub'],
    ['2606:4700::1111', 'pub'],
    ['::ffff:10.1.2.3', 'pvt'],
    ['::ffff:8.8.8.8', 'pub'],
  ];
  for (const [ip, want] of cases) assert.equal(privacyOf(ip), want, ip);
});

test('canonical IPv6 text (RFC 5952) and invalid addresses', () => {
  assert.equal(canonicalIp('FD00:0:0:0:0:0:0:1'), 'fd00::1');
  assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  assert.equal(canonicalIp('0:0:0:0:0:0:0:0'), '::');
  assert.equal(canonicalIp('::ffff:1.2.3.4'), '::ffff:102:304');
  assert.equal(canonicalIp('10.0.0.1'), '10.0.0.1');
  for (const bad of ['10.0.0.256', '10.0.0', '1::2::3', 'fd00::g', '01.2.3.4', '', 'x']) {
    assert.equal(parseIp(bad), null, bad);
  }
});

test('CIDR containment', () => {
  const c = parseCidr('10.1.0.0/16')!;
  assert.equal(cidrContains(c, parseIp('10.1.255.1')!), true);
  assert.equal(cidrContains(c, parseIp('10.2.0.1')!), false);
  assert.equal(cidrContains(parseCidr('fd00::/8')!, parseIp('fd12::1')!), true);
  assert.equal(cidrContains(parseCidr('fd00::/8')!, parseIp('10.0.0.1')!), false);
  assert.equal(parseCidr('10.0.0.0/33'), null);
});
