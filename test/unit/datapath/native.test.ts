// The binding's contract with src/datapath: every option comes from TypeScript (the
// addon has no defaults), a missing or mistyped one is a TypeError naming it, and
// interface globs match by the addon's one matcher (fnmatch).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateDatapathOptions } from '../../../src/datapath/datapath.ts';
import { loadNative, type NativeOptions } from '../../../src/datapath/native.ts';

const native = loadNative();
const noEvents = () => {};

test('every option validateDatapathOptions fills in is one the binding requires', () => {
  const full = validateDatapathOptions({ interfaces: ['flowlogd-none'] });
  const fields = Object.keys(full) as (keyof NativeOptions)[];
  assert.deepEqual(fields.sort(), [
    'attachMode',
    'conntrackEvents',
    'conntrackNetns',
    'conntrackRcvbufBytes',
    'conntrackResyncMs',
    'drainIntervalMs',
    'dropTracing',
    'interfaces',
    'journalDirectory',
    'journalLastGeneration',
    'journalMaxBytes',
    'maxDropFlows',
    'maxFlows',
    'pinDirectory',
    'ringRecords',
    'useConntrack',
  ]);
  for (const field of fields) {
    const without: Partial<NativeOptions> = { ...full };
    delete without[field];
    assert.throws(
      () => new native.Datapath(without as NativeOptions, noEvents),
      (e: Error) =>
        e instanceof TypeError &&
        e.message.startsWith(`Datapath option ${field} must be `) &&
        e.message.endsWith('(missing)'),
      field,
    );
  }
});

test('a mistyped option is a TypeError naming the field and the value', () => {
  const full = validateDatapathOptions({ interfaces: ['flowlogd-none'] });
  const cases: [Partial<Record<keyof NativeOptions, unknown>>, string][] = [
    [{ ringRecords: -1 }, 'Datapath option ringRecords must be an integer from 0 to 4294967295 (got -1)'],
    [{ maxFlows: 1.5 }, 'Datapath option maxFlows must be an integer from 0 to 4294967295 (got 1.5)'],
    [{ useConntrack: 'yes' }, 'Datapath option useConntrack must be true or false (got "yes")'],
    [{ attachMode: 'xdp' }, `Datapath option attachMode must be 'auto', 'tcx' or 'clsact' (got "xdp")`],
    [{ interfaces: ['eth0', 3] }, 'Datapath option interfaces must be an array of strings (got an array)'],
    [
      { journalMaxBytes: -1 },
      'Datapath option journalMaxBytes must be an integer from 0 (no bound) to 2^53 - 1 (got -1)',
    ],
  ];
  for (const [change, message] of cases) {
    assert.throws(() => new native.Datapath({ ...full, ...change } as NativeOptions, noEvents), {
      name: 'TypeError',
      message,
    });
  }
});

test('matchInterface: fnmatch(3) globs, anchored, any of them', () => {
  const m = native.matchInterface;
  assert.equal(m(['cali*'], 'cali1234abcd'), true);
  assert.equal(m(['cali*'], 'xcali1'), false);
  assert.equal(m(['eth?'], 'eth0'), true);
  assert.equal(m(['eth?'], 'eth10'), false);
  assert.equal(m(['veth*', 'eth0'], 'eth0'), true);
  assert.equal(m(['veth*', 'eth0'], 'eth1'), false);
  assert.equal(m(['eth[01]'], 'eth1'), true);
  assert.equal(m(['eth[01]'], 'eth2'), false);
  assert.equal(m(['a.b'], 'aXb'), false, 'a dot is a dot');
  assert.equal(m([], 'eth0'), false);
  assert.throws(() => m('eth0' as unknown as string[], 'eth0'), {
    name: 'TypeError',
    message: 'matchInterface: globs must be an array of strings',
  });
});
