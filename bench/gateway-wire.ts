// What bench/gateway and its server processes (bench/gateway-servers.ts) agree on: the upstream's
// name and path, and the IPC messages. Kept apart so that the load generator's process does not
// load the gateway, the database and the authorization server it never runs.

export const UPSTREAM_HOST = 'upstream.test';
export const UPSTREAM_PATH = '/small';
export const UPSTREAM_BODY_BYTES = 64;
/** Distinct tokens for the one-entry-cache listener, sent round-robin so consecutive requests differ. */
export const UNCACHED_TOKENS = 8;

export type Role = 'upstream' | 'upstream-tls' | 'bare' | 'reins';

/** What a reins server hands the TLS part of the benchmark (bench/gateway-tls.ts). */
export interface ReinsTls {
  /** A token whose grant is the whole HTTPS origin: its CONNECT gets a plain tunnel. */
  readonly wholeToken: string;
  /** A token granting one method and path on that origin: its CONNECT gets an inspected tunnel. */
  readonly scopedToken: string;
  /** The interception CA (`reins ca export`), which clients of inspected tunnels must trust. */
  readonly interceptionCaPem: string;
}

export type ServeMessage =
  | {
      readonly kind: 'ready';
      readonly url: string;
      readonly uncachedUrl?: string;
      readonly unauditedUrl?: string;
      readonly tokens?: string[];
      /**
       * The CA of the certificates this server presents for UPSTREAM_HOST: upstream-tls its own,
       * bare the ones it makes inside the tunnels it inspects.
       */
      readonly caPem?: string;
      /** reins, when given the HTTPS upstream. */
      readonly tls?: ReinsTls;
    }
  | { readonly kind: 'stats'; readonly stats: ReinsStats }
  | { readonly kind: 'error'; readonly error: string };

export interface ReinsStats {
  readonly cached: { readonly hits: number; readonly misses: number };
  readonly uncached: { readonly hits: number; readonly misses: number };
  /** Rows in audit_events once the writer's queue is empty. */
  readonly auditRows: number;
  /** INSERT statements the audit writer sent so far. */
  readonly auditStatements: number;
  /** Reads of the published key set (the gateway's token keys) from the database so far. */
  readonly keyReads: number;
}
