// Interface roles: which names are a pod's veth (workload) and which are the host's, by
// the same fnmatch(3) globs the addon attaches with.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_WORKLOAD_INTERFACES, InterfaceClassifier } from '../../../src/aggregate/interfaces.ts';

test('the default globs: each CNI veth prefix is a workload, bridges and uplinks are the host', () => {
  const c = new InterfaceClassifier();
  for (const name of ['cali1a2b3c4d5e6', 'veth0', 'lxc12345', 'azv99', 'gke0ab', 'eni1']) {
    assert.equal(c.role(name), 'workload', name);
  }
  // A pod's traffic crosses its bridge as well as its veth: the bridge must not be a workload.
  for (const name of ['eth0', 'cni0', 'docker0', 'lo', 'ens3', 'vxlan.calico', 'tunl0']) {
    assert.equal(c.role(name), 'host', name);
  }
  assert.deepEqual(DEFAULT_WORKLOAD_INTERFACES, ['cali*', 'veth*', 'lxc*', 'azv*', 'gke*', 'eni*']);
});

test('given globs replace the defaults: ? is one character, * any run, a plain name only itself', () => {
  const c = new InterfaceClassifier(['eth?', 'pod*x', 'br-lab']);
  assert.equal(c.role('eth0'), 'workload');
  assert.equal(c.role('eth10'), 'host');
  assert.equal(c.role('eth'), 'host');
  assert.equal(c.role('podx'), 'workload');
  assert.equal(c.role('pod-123x'), 'workload');
  assert.equal(c.role('pod-123y'), 'host');
  assert.equal(c.role('br-lab'), 'workload');
  assert.equal(c.role('br-lab0'), 'host');
  assert.equal(c.role('cali123'), 'host');
  // Asked again, the remembered role is the same.
  assert.equal(c.role('eth10'), 'host');
  assert.equal(c.role('eth0'), 'workload');
});

test('no globs: every interface is the host', () => {
  const c = new InterfaceClassifier([]);
  assert.equal(c.role('cali123'), 'host');
  assert.equal(c.role('veth0'), 'host');
});

test('past 4096 remembered names the memory is cleared, and roles stay right', () => {
  const c = new InterfaceClassifier(['w*']);
  for (let i = 0; i < 5000; i++) {
    assert.equal(c.role(`w${i}`), 'workload');
    assert.equal(c.role(`h${i}`), 'host');
  }
  assert.equal(c.role('w0'), 'workload');
  assert.equal(c.role('h0'), 'host');
});
