import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DatapathOptionError, validateDatapathOptions } from '../../../src/datapath/datapath.ts';

test('interface globs follow the one rule the settings use: names or * ? globs of at most 15 characters', () => {
  assert.deepEqual(
    validateDatapathOptions({ interfaces: ['eth0', 'cali*', 'veth?', 'a-15-char-name0'] }).interfaces,
    ['eth0', 'cali*', 'veth?', 'a-15-char-name0'],
  );
  for (const bad of ['this-name-is-too-long', 'eth 0', 'a/b', '', 'eth[0-9]']) {
    assert.throws(
      () => validateDatapathOptions({ interfaces: ['eth0', bad] }),
      (e: unknown) =>
        e instanceof DatapathOptionError &&
        e.field === 'interfaces' &&
        e.value === bad &&
        e.message ===
          `datapath option interfaces=${JSON.stringify(bad)}: must list interface names or globs (*, ?), each at most 15 characters`,
      bad,
    );
  }
});
