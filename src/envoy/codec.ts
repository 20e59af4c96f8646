// Wire codecs for the Check RPC, straight on protobufjs: the server decodes Envoy's bytes into
// message objects and encodes our plain response objects, with no intermediate conversions.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export const PROTO_DIR = fileURLToPath(new URL('../../protos/', import.meta.url));
export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

/** The decoded shapes we read (keepCase names). Absent messages decode as null, strings as ''. */
export interface WireHeaderValue {
  readonly key: string;
  readonly value: string;
  readonly raw_value: Uint8Array;
}
export interface WireHttpRequest {
  readonly id: string;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly header_map: { readonly headers: readonly WireHeaderValue[] } | null;
  readonly path: string;
  readonly host: string;
  readonly scheme: string;
  readonly protocol: string;
  readonly body: string;
  readonly raw_body: Uint8Array;
}
export interface WirePeer {
  readonly address: {
    readonly socket_address: { readonly address: string; readonly port_value: number } | null;
  } | null;
  readonly principal: string;
  readonly certificate: string;
}
export interface WireCheckRequest {
  readonly attributes: {
    readonly source: WirePeer | null;
    readonly request: { readonly http: WireHttpRequest | null } | null;
    readonly context_extensions: Readonly<Record<string, string>>;
    readonly tls_session: { readonly sni: string } | null;
  } | null;
}

/** Plain objects we encode (protobufjs reads fields by their proto names; Struct values are camelCase). */
export interface WireHeaderOption {
  header: { key: string; value: string };
  append: { value: boolean };
}
export interface WireStructValue {
  stringValue: string;
}
export interface WireCheckResponse {
  status: { code: number; message?: string };
  ok_response?: {
    headers: WireHeaderOption[];
    headers_to_remove: string[];
    response_headers_to_add: WireHeaderOption[];
    query_parameters_to_remove: string[];
  };
  denied_response?: { status: { code: number }; headers: WireHeaderOption[]; body: string };
  dynamic_metadata: { fields: Record<string, WireStructValue> };
}

let root: protobuf.Root | undefined;

export function protoRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => PROTO_DIR + target;
    r.loadSync(['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'], {
      keepCase: true,
    });
    r.resolveAll();
    root = r;
  }
  return root;
}

export function checkCodec() {
  const r = protoRoot();
  const request = r.lookupType('envoy.service.auth.v3.CheckRequest');
  const response = r.lookupType('envoy.service.auth.v3.CheckResponse');
  return {
    decodeRequest: (bytes: Uint8Array) => request.decode(bytes) as unknown as WireCheckRequest,
    encodeRequest: (message: object) => request.encode(message).finish(),
    encodeResponse: (message: WireCheckResponse) => response.encode(message).finish(),
    decodeResponse: (bytes: Uint8Array) => response.decode(bytes) as unknown as WireCheckResponse,
  };
}
