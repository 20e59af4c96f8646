// Wire codecs for the Check RPC: the server decodes Envoy's bytes with decode-check.ts (only what
// we read) and encodes with encode-response.ts; protobufjs' own codecs serve tests and tools.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { decodeCheckRequest } from './decode-check.js';

export const PROTO_DIR = fileURLToPath(new URL('../../protos/', import.meta.url));
export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

export type {
  WireCheckRequest,
  WireHeaderValue,
  WireHttpRequest,
  WirePeer,
} from './decode-check.js';

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
    /** The hand-written decoder of what we read (decode-check.ts), not protobufjs' whole message. */
    decodeRequest: decodeCheckRequest,
    encodeRequest: (message: object) => request.encode(message).finish(),
    encodeResponse: (message: WireCheckResponse) => response.encode(message).finish(),
    decodeResponse: (bytes: Uint8Array) => response.decode(bytes) as unknown as WireCheckResponse,
  };
}
