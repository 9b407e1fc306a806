// The sinks a daemon writes to, opened from the settings: flows.log, stdout and the
// network sinks; and the dynamic aggregation settings that watch their backlog. Apart
// from daemon.ts so the start's wiring and the flush loop stay one job each.
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { makeDirectory } from '../common/make-directory.ts';
import { FileSink } from '../export/file.ts';
import type { Sink } from '../export/sink.ts';
import { StreamSink } from '../export/stdout.ts';
import type { Config } from './config.ts';
import { shippingOptions } from './ship-config.ts';

/** flows.log (created now) and stdout, as the config says. */
export async function openSinks(c: Config, log: Logger): Promise<Sink[]> {
  const sinks: Sink[] = [];
  const sinkLog = log.child({ component: 'sink' });
  if (c.flowLogsFileEnabled) {
    // flows.log exists from the start, so log shippers can tail it. A directory that
    // cannot be made or written now (ENOENT under /proc, ENOTDIR, EROFS, EACCES) is a
    // setting that cannot work: the start fails, naming it and the errno, instead of
    // running on writing nothing. A disk that fails later is retried (the sink's
    // healthy gauge and error counts say so).
    try {
      await makeDirectory(c.flowLogsFileDirectory);
      await appendFile(join(c.flowLogsFileDirectory, 'flows.log'), '');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw Object.assign(
        new Error(
          `FlowLogsFileDirectory ${c.flowLogsFileDirectory}: cannot create flows.log (${e.code ?? 'error'}): ${e.message}`,
          { cause: err },
        ),
        { code: e.code, errno: e.errno },
      );
    }
    sinks.push(
      new FileSink({
        directory: c.flowLogsFileDirectory,
        maxFileBytes: c.flowLogsFileMaxFileSizeMB * 1024 * 1024,
        maxFiles: c.flowLogsFileMaxFiles,
        logger: sinkLog,
      }),
    );
  }
  if (c.stdout) sinks.push(new StreamSink({ stream: process.stdout }));
  // Fluent Forward, NATS, OTLP as configured: each replays its spool from the start.
  // Their clients (msgpackr, NATS, OpenTelemetry's protobuf) are imported only when one
  // is configured: a daemon that writes flows.log alone never carries them.
  const ship = shippingOptions(c);
  if (ship.forward.address !== null || ship.nats.url !== null || ship.otlp.endpoint !== null) {
    const { openShippingSinks } = await import('../export/shipping.ts');
    sinks.push(...(await openShippingSinks(ship, sinkLog)));
  }
  return sinks;
}

/** FlowLogsDynamicAggregationEnabled's settings (DynamicAggregation), at start and on reload. */
export function dynamicSettings(c: Config) {
  return {
    thresholdBytes: c.flowLogsAggregationThresholdBytes,
    kindForAllowed: c.flowLogsFileAggregationKindForAllowed,
    kindForDenied: c.flowLogsFileAggregationKindForDenied,
  };
}
