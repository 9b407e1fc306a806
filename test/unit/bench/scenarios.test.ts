// Which scenarios `flowlogd bench lab` runs: the standard four by default, the IPv6 ones
// only when named, and a clear error for a name it does not have.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pickScenarios } from '../../../src/bench/scenarios.ts';

test('the standard set by default; IPv6 scenarios when named; an unknown name is an error naming it', () => {
  assert.deepEqual(
    pickScenarios(undefined).map((s) => `${s.name}/${s.family}`),
    ['udp-saturate/4', 'tcp-rr/4', 'udp-pingpong/4', 'udp-1024/4'],
  );
  assert.deepEqual(
    pickScenarios(['tcp-rr6', 'udp-pingpong6', 'tcp-rr']).map((s) => `${s.name}/${s.family}/${s.flows}`),
    ['tcp-rr6/6/16', 'udp-pingpong6/6/64', 'tcp-rr/4/16'],
  );
  assert.throws(
    () => pickScenarios(['tcp-rr7']),
    /--scenarios: no scenario "tcp-rr7"; have .*tcp-rr6, udp-pingpong6/,
  );
});
