// The Calico-format flow log record (SPEC §1); lines.ts writes it as JSON Lines.

export type Action = 'allow' | 'deny';
export type Reporter = 'src' | 'dst';
export type AggregationKind = 0 | 1 | 2 | 3;

export interface LabelsField {
  readonly labels: readonly string[];
}

export interface PoliciesField {
  readonly all_policies: readonly string[];
  readonly enforced_policies: readonly string[];
  readonly pending_policies: readonly string[];
}

/** Emitted when policies are switched on but no policy data exists yet (no hits known). */
export const NO_POLICY_HITS: PoliciesField = Object.freeze({
  all_policies: Object.freeze([]) as readonly string[],
  enforced_policies: Object.freeze([]) as readonly string[],
  pending_policies: Object.freeze([]) as readonly string[],
});

export interface FlowLogRecord {
  start_time: number;
  end_time: number;
  source_ip: string | null;
  source_name: string;
  source_name_aggr: string;
  source_namespace: string;
  source_port: number | null;
  source_type: string;
  source_labels: LabelsField | null;
  dest_ip: string | null;
  dest_name: string;
  dest_name_aggr: string;
  dest_namespace: string;
  dest_port: number | null;
  dest_type: string;
  dest_labels: LabelsField | null;
  dest_service_namespace: string;
  dest_service_name: string;
  dest_service_port: string;
  dest_service_port_num: number | null;
  proto: string;
  action: Action;
  reporter: Reporter;
  /** Deny records only: the kernel's drop reason (enum skb_drop_reason name), e.g. NETFILTER_DROP. */
  drop_reason?: string;
  policies: PoliciesField | null;
  bytes_in: number;
  bytes_out: number;
  packets_in: number;
  packets_out: number;
  num_flows: number;
  num_flows_started: number;
  num_flows_completed: number;
  http_requests_allowed_in: number;
  http_requests_denied_in: number;
  original_source_ips: string[] | null;
  num_original_source_ips: number;
  host: string;
  '@timestamp': number;
}

export function protoName(proto: number): string {
  switch (proto) {
    case 6:
      return 'tcp';
    case 17:
      return 'udp';
    case 1:
      return 'icmp';
    case 58:
      return 'icmp6';
    case 132:
      return 'sctp';
    default:
      return String(proto);
  }
}
