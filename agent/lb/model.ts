/**
 * The Service model every data plane (bpf, iptables, ipvs) consumes: a desired-state snapshot
 * of Services and their endpoints, with Kubernetes semantics (EndpointSlice conditions,
 * traffic policies, ClientIP affinity). Plain data; validation lives in validate.ts.
 * @module
 */

/** L4 protocol of a Service port. */
export type Protocol = "TCP" | "UDP";

/** Cluster: any ready endpoint; Local: only endpoints on this node. */
export type TrafficPolicy = "Cluster" | "Local";

/** One port of a Service. `nodePort` is set when the Service is reachable on node addresses. */
export interface ServicePort {
  /** Port name, unique within the Service ("" allowed for a single port). */
  readonly name: string;
  readonly protocol: Protocol;
  /** The frontend port on ClusterIPs, externalIPs and LoadBalancer IPs. */
  readonly port: number;
  /** Port on the backend; endpoints may override it per port name. */
  readonly targetPort: number;
  /** NodePort on the node's own addresses (30000–32767 in Kubernetes; any 1–65535 here). */
  readonly nodePort?: number;
}

/** A Service, identified by namespace/name. */
export interface Service {
  readonly namespace: string;
  readonly name: string;
  readonly clusterIPs: readonly string[];
  readonly externalIPs: readonly string[];
  readonly loadBalancerIPs: readonly string[];
  readonly ports: readonly ServicePort[];
  readonly sessionAffinity: "None" | "ClientIP";
  /** ClientIP affinity timeout in seconds (default 10800). */
  readonly affinityTimeoutSeconds: number;
  readonly externalTrafficPolicy: TrafficPolicy;
  readonly internalTrafficPolicy: TrafficPolicy;
}

/** One backend address of a Service, with EndpointSlice conditions. */
export interface Endpoint {
  readonly ip: string;
  /** Node that hosts the endpoint (for traffic policy Local and SNAT decisions). */
  readonly node: string;
  /** Port per Service port name; a missing name means the port's targetPort. */
  readonly ports?: Readonly<Record<string, number>>;
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
}

/** Endpoints of one Service, keyed by "namespace/name". */
export interface ServiceEntry {
  readonly service: Service;
  readonly endpoints: readonly Endpoint[];
}

/** The desired state a data plane converges to. */
export interface ServiceSnapshot {
  readonly services: readonly ServiceEntry[];
}

/** "namespace/name" of a Service. */
export function serviceKey(service: Pick<Service, "namespace" | "name">): string {
  return `${service.namespace}/${service.name}`;
}

/**
 * Endpoints that may take new flows, by EndpointSlice rules: the ready ones; when none is
 * ready, the serving terminating ones (kube-proxy's "terminating endpoints" fallback).
 */
export function endpointsForNewFlows(endpoints: readonly Endpoint[]): Endpoint[] {
  const ready = endpoints.filter((e) => e.ready && !e.terminating);
  if (ready.length > 0) return ready;
  return endpoints.filter((e) => e.serving && e.terminating);
}
