// Which machine a bench ran on, for the JSON and the summary's first line.
import { cpus, hostname, release, totalmem } from 'node:os';
import type { Machine } from './schema.ts';

export function machine(): Machine {
  const list = cpus();
  return {
    hostname: hostname(),
    kernel: release(),
    cpu: list[0]?.model.trim() ?? 'unknown',
    cpus: Math.max(1, list.length),
    memoryBytes: totalmem(),
    node: process.version,
  };
}
