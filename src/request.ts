// The internal, immutable view of one request to authorize. Built once at the edge
// (src/envoy/normalize.ts) from Envoy's CheckRequest; nothing past the edge sees wire types.

export interface Peer {
  /** IP address (v4 or v6) or '' when Envoy sent none (e.g. a unix socket). */
  readonly address: string;
  readonly port: number;
  /** First URI SAN (SPIFFE id), else DNS SAN, else subject — as Envoy computes it. */
  readonly principal: string;
  /**
   * Client certificate as PEM, URL-decoded on first read (most routes never need it, and decoding
   * costs more than the rest of the peer), or '' when none was forwarded or it is not URL-encoded.
   */
  readonly certificatePem: string;
}

export interface Request {
  /** `x-request-id` as Envoy forwards it; '' when absent. Not Envoy's `http.id` (a stream number). */
  readonly requestId: string;
  readonly method: string;
  /** Path without the query string, as Envoy sent it (not percent-decoded). */
  readonly path: string;
  /** Parsed query; a repeated key keeps every value in order. */
  readonly query: ReadonlyMap<string, readonly string[]>;
  /**
   * Decoded names of query parameters whose raw name was percent-encoded (or had a `+`): Envoy's
   * query_parameters_to_remove matches raw names, so these cannot be removed by their decoded name.
   */
  readonly encodedQueryNames?: ReadonlySet<string>;
  /** `:authority` without any port. */
  readonly host: string;
  readonly scheme: string;
  /** Lower-case names; Envoy joins repeated headers with ','. Includes pseudo-headers. */
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
  /** True when Envoy sent only part of the body (partial-body header, or content-length > bytes). */
  readonly bodyTruncated: boolean;
  readonly source: Peer;
  readonly sni: string;
  readonly contextExtensions: ReadonlyMap<string, string>;
  readonly protocol: string;
}
