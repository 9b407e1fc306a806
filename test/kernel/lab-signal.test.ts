// A lab interrupted by a signal (Ctrl-C on `flowlogd bench lab` or `demo`, a test runner
// cancelling a file) removes its netns and veths before the process exits.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/lab/lab.ts';
import { kernelSkipReason } from './helpers.ts';

const skip = kernelSkipReason();
const HOLD = fileURLToPath(new URL('./fixtures/hold-lab.ts', import.meta.url));

function present(): { netns: Set<string>; links: Set<string> } {
  const netns = new Set(
    run('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!),
  );
  const links = new Set(
    (JSON.parse(run('ip', ['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname),
  );
  return { netns, links };
}

describe('a lab stopped by a signal', { skip, timeout: 60_000 }, () => {
  for (const [signal, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    test(`${signal}: its netns and veths are removed, exit status ${status}`, async () => {
      const child = spawn(process.execPath, [HOLD], { stdio: ['ignore', 'pipe', 'inherit'] });
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const made = JSON.parse(line.toString()) as { netns: string[]; links: string[] };
      const before = present();
      assert.deepEqual(
        made.netns.filter((n) => before.netns.has(n)),
        made.netns,
      );
      assert.deepEqual(
        made.links.filter((l) => before.links.has(l)),
        made.links,
      );
      const exited = once(child, 'exit');
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      assert.equal(code, status);
      // A veth goes with its netns, but the kernel frees a deleted netns in a workqueue
      // (cleanup_net): its host-side peer can outlive the exit by a moment. Up to 5 s.
      let after = present();
      for (let i = 0; i < 100 && made.links.some((l) => after.links.has(l)); i++) {
        await new Promise((r) => setTimeout(r, 50));
        after = present();
      }
      assert.deepEqual(
        made.netns.filter((n) => after.netns.has(n)),
        [],
      );
      assert.deepEqual(
        made.links.filter((l) => after.links.has(l)),
        [],
      );
    });
  }
});
