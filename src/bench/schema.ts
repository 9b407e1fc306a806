// The JSON that `flowlogd bench lab --json` and `flowlogd bench live --json` print: one
// schema, checked before anything is written, so a consumer (or a later run compared by
// script) can rely on every field. Bump `version` when a field changes meaning.
import { z } from 'zod';

const num = z.number().finite();
const nullableNum = num.nullable();

export const machineSchema = z.object({
  hostname: z.string(),
  kernel: z.string(),
  cpu: z.string(),
  cpus: z.number().int().positive(),
  memoryBytes: num,
  node: z.string(),
});

export const runSampleSchema = z.object({
  round: z.number().int().nonnegative(),
  variant: z.string(),
  pps: num.nonnegative(),
  packets: num.nonnegative(),
  seconds: num.positive(),
  nsPerRun: nullableNum,
  nsPerRunByHook: z.record(z.string(), num),
  collectorCpuSeconds: nullableNum,
  collectorRssBytes: nullableNum,
  cacheHitRate: nullableNum,
  /** flowlogd's kernel counters over the run (cacheHits, cacheEvictions, ctLookups, ...). */
  kernelCounters: z.record(z.string(), num).optional(),
  generator: z.object({ sent: num, received: num, errors: num }),
});

export const variantSummarySchema = z.object({
  variant: z.string(),
  runs: z.number().int().nonnegative(),
  medianPps: nullableNum,
  ratioToNone: nullableNum,
  ratioToEmpty: nullableNum,
  medianNsPerRun: nullableNum,
  nsAboveEmpty: nullableNum,
  cpuSecondsPerMillionPackets: nullableNum,
  collectorCpuShare: nullableNum,
  medianRssMiB: nullableNum,
  medianCacheHitRate: nullableNum,
});

export const scenarioResultSchema = z.object({
  name: z.string(),
  title: z.string(),
  flows: z.number().int().positive(),
  samples: z.array(runSampleSchema),
  summary: z.array(variantSummarySchema),
});

export const labResultSchema = z.object({
  kind: z.literal('flowlogd-bench-lab'),
  version: z.literal(1),
  command: z.string(),
  startedAt: z.string(),
  seconds: num.positive(),
  rounds: z.number().int().positive(),
  variants: z.array(z.string()),
  machine: machineSchema,
  /** Kernel BPF run-time stats were on for the whole run (their clock reads are in every figure). */
  bpfStats: z.literal(true),
  scenarios: z.array(scenarioResultSchema),
});

export const liveProgramSchema = z.object({
  id: z.number().int(),
  name: z.string(),
  hook: z.string(),
  runs: num.nonnegative(),
  runTimeNs: num.nonnegative(),
  nsPerRun: nullableNum,
  packetsPerSecond: num.nonnegative(),
  coreShare: num.nonnegative(),
  owners: z.array(z.number().int()),
});

export const liveResultSchema = z.object({
  kind: z.literal('flowlogd-bench-live'),
  version: z.literal(1),
  startedAt: z.string(),
  seconds: num.positive(),
  machine: machineSchema,
  programs: z.array(liveProgramSchema),
  total: z.object({
    runs: num.nonnegative(),
    nsPerRun: nullableNum,
    packetsPerSecond: num.nonnegative(),
    coreShare: num.nonnegative(),
  }),
  daemons: z.array(
    z.object({
      pid: z.number().int(),
      cpuSeconds: num,
      coreShare: num,
      rssBytes: num,
      rssAnonBytes: num,
      rssFileBytes: num,
    }),
  ),
});

export type LabResult = z.infer<typeof labResultSchema>;
export type ScenarioResult = z.infer<typeof scenarioResultSchema>;
export type LiveResult = z.infer<typeof liveResultSchema>;
export type Machine = z.infer<typeof machineSchema>;
