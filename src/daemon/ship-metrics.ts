// Metrics of the network sinks, per sink (label `sink`): queued, in flight, acknowledged,
// retried, duplicates, spool bytes, dropped by reason, last success time; and the
// dynamic aggregation level in force. Read from the sinks at each scrape.

import type { NetworkSink } from '../export/network.ts';
import { Gauge, type Registry } from './prom.ts';

export function registerShipMetrics(r: Registry, sinks: readonly NetworkSink[], level: () => number): void {
  new Gauge({
    name: 'flowlogd_ship',
    help: 'Network sink counters by sink: queued/in-flight/acknowledged lines and batches, retries, duplicates (replays the remote already had), spool bytes and segments',
    labelNames: ['sink', 'counter'],
    registers: [r],
    collect() {
      for (const s of sinks) {
        const st = s.shipStats();
        const values: Record<string, number> = {
          queuedLines: st.spool.backlogLines,
          queuedBatches: st.queuedBatches,
          inFlightLines: st.inFlightLines,
          inFlightBatches: st.inFlightBatches,
          acknowledgedLines: st.ackedLines,
          acknowledgedBatches: st.ackedBatches,
          retries: st.retries,
          duplicates: st.duplicates,
          spoolBytes: st.spool.diskBytes,
          spoolSegments: st.spool.segments,
          spoolCorruptSegments: st.spool.corruptSegments,
          nextSeq: st.spool.nextSeq,
        };
        for (const [counter, v] of Object.entries(values)) this.set({ sink: s.name, counter }, v);
      }
    },
  });
  new Gauge({
    name: 'flowlogd_ship_dropped_lines',
    help: "Lines a network sink dropped, by reason ('spool full', 'memory full', 'corrupt', 'fatal' (refused by the remote), 'rejected' (OTLP partial success), a disk error code)",
    labelNames: ['sink', 'reason'],
    registers: [r],
    collect() {
      for (const s of sinks)
        for (const [reason, n] of Object.entries(s.shipStats().dropped))
          this.set({ sink: s.name, reason }, n);
    },
  });
  new Gauge({
    name: 'flowlogd_ship_last_success_timestamp_seconds',
    help: 'When the remote last acknowledged a batch (Unix seconds; 0 = not yet)',
    labelNames: ['sink'],
    registers: [r],
    collect() {
      for (const s of sinks) this.set({ sink: s.name }, s.shipStats().lastSuccessMs / 1000);
    },
  });
  new Gauge({
    name: 'flowlogd_aggregation_level',
    help: 'Dynamic aggregation: levels the kinds are raised above the configured ones (0 = as configured)',
    registers: [r],
    collect() {
      this.set(level());
    },
  });
}
