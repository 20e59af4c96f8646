// Contract: our protos/ must be a wire-compatible subset of Envoy's official protos (and of the
// official grpc.health.v1), and messages must survive official <-> ours encode/decode unchanged.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { loadOfficialHealthRoot, loadOfficialRoot, loadOurRoot } from './official-protos.js';

type Definition = protobuf.Type | protobuf.Enum | protobuf.Service;

const bare = (fullName: string): string => fullName.replace(/^\./, '');

function inPackages(fullName: string, packages: readonly string[]): boolean {
  const name = bare(fullName);
  return packages.some((p) => name === p || name.startsWith(`${p}.`));
}

/** Every message, enum and service below `ns` (nested types included), recursively. */
function collectDefinitions(ns: protobuf.NamespaceBase): Definition[] {
  const found: Definition[] = [];
  for (const child of ns.nestedArray) {
    if (
      child instanceof protobuf.Type ||
      child instanceof protobuf.Enum ||
      child instanceof protobuf.Service
    ) {
      found.push(child);
    }
    if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) {
      found.push(...collectDefinitions(child));
    }
  }
  return found;
}

/** How the field is labelled on the wire: presence and cardinality both matter for compatibility. */
function fieldLabel(field: protobuf.FieldBase): string {
  if (field.map) return 'map';
  if (field.repeated) return 'repeated';
  if (field.options?.proto3_optional === true) return 'optional';
  return field.toJSON().rule === 'required' ? 'required' : 'singular';
}

/** Resolved full name for message/enum types, the scalar name otherwise. */
function fieldType(field: protobuf.FieldBase): string {
  return field.resolvedType ? bare(field.resolvedType.fullName) : field.type;
}

function mapKey(field: protobuf.FieldBase): string {
  return field instanceof protobuf.MapField ? field.keyType : '-';
}

function oneofName(field: protobuf.FieldBase): string {
  return field.partOf?.name ?? '-';
}

const FIELD_ASPECTS: ReadonlyArray<[string, (f: protobuf.FieldBase) => string | number]> = [
  ['number', (f) => f.id],
  ['type', fieldType],
  ['label', fieldLabel],
  ['map key', mapKey],
  ['oneof', oneofName],
];

function compareField(where: string, ours: protobuf.FieldBase, official: protobuf.FieldBase): string[] {
  const errors: string[] = [];
  for (const [aspect, read] of FIELD_ASPECTS) {
    const [mine, theirs] = [read(ours), read(official)];
    if (mine !== theirs) errors.push(`${where}: ${aspect} ours=${mine} official=${theirs}`);
  }
  return errors;
}

function compareType(ours: protobuf.Type, official: protobuf.Type): string[] {
  return ours.fieldsArray.flatMap((field) => {
    const where = `${bare(ours.fullName)}.${field.name}`;
    const match = official.fields[field.name];
    return match ? compareField(where, field, match) : [`${where}: field missing in official message`];
  });
}

function compareEnum(ours: protobuf.Enum, official: protobuf.Enum): string[] {
  return Object.entries(ours.values).flatMap(([name, number]) => {
    const theirs = official.values[name];
    const where = `${bare(ours.fullName)}.${name}`;
    if (theirs === undefined) return [`${where}: enum value missing in official enum`];
    return theirs === number ? [] : [`${where}: enum number ours=${number} official=${theirs}`];
  });
}

function methodSignature(method: protobuf.Method): string {
  const stream = (flag: boolean | undefined): string => (flag ? 'stream ' : '');
  const request = method.resolvedRequestType ? bare(method.resolvedRequestType.fullName) : method.requestType;
  const response = method.resolvedResponseType
    ? bare(method.resolvedResponseType.fullName)
    : method.responseType;
  return `(${stream(method.requestStream)}${request}) returns (${stream(method.responseStream)}${response})`;
}

function compareService(ours: protobuf.Service, official: protobuf.Service): string[] {
  return ours.methodsArray.flatMap((method) => {
    const where = `${bare(ours.fullName)}.${method.name}`;
    const match = official.methods[method.name];
    if (!match) return [`${where}: rpc missing in official service`];
    const [mine, theirs] = [methodSignature(method), methodSignature(match)];
    return mine === theirs ? [] : [`${where}: signature ours=${mine} official=${theirs}`];
  });
}

function kindOf(def: Definition): string {
  if (def instanceof protobuf.Type) return 'message';
  return def instanceof protobuf.Enum ? 'enum' : 'service';
}

function compareDefinition(ours: Definition, official: protobuf.ReflectionObject | null): string[] {
  const name = bare(ours.fullName);
  if (official === null) return [`${name}: ${kindOf(ours)} missing in official protos`];
  if (ours instanceof protobuf.Type && official instanceof protobuf.Type) return compareType(ours, official);
  if (ours instanceof protobuf.Enum && official instanceof protobuf.Enum) return compareEnum(ours, official);
  if (ours instanceof protobuf.Service && official instanceof protobuf.Service) {
    return compareService(ours, official);
  }
  return [`${name}: is a ${kindOf(ours)} in ours but not in official protos`];
}

/** All incompatibilities of `ours` (restricted to `packages`) against `official`, as readable lines. */
function compareRoots(ours: protobuf.Root, official: protobuf.Root, packages: readonly string[]): string[] {
  return collectDefinitions(ours)
    .filter((def) => inPackages(def.fullName, packages))
    .flatMap((def) => compareDefinition(def, official.lookup(def.fullName)));
}

function definitionCount(root: protobuf.Root, packages: readonly string[]): number {
  return collectDefinitions(root).filter((def) => inPackages(def.fullName, packages)).length;
}

/** An in-memory Root from .proto sources (one package per source, like separate files). */
function parseRoot(...sources: string[]): protobuf.Root {
  const root = new protobuf.Root();
  for (const source of sources) protobuf.parse(source, root, { keepCase: true });
  root.resolveAll();
  return root;
}

describe('our protos match the official definitions', () => {
  it('every envoy.* and google.rpc message/enum/service matches Envoy data-plane-api', () => {
    const packages = ['envoy', 'google.rpc'];
    const ours = loadOurRoot();
    // Guard against a vacuous pass (e.g. the walk finding nothing).
    assert.ok(definitionCount(ours, packages) >= 20, 'expected to compare at least 20 definitions');
    const errors = compareRoots(ours, loadOfficialRoot(), packages);
    assert.deepEqual(errors, [], `protos/ differs from the official protos:\n${errors.join('\n')}`);
  });

  it('grpc.health.v1 matches the health.proto shipped by grpc-health-check', () => {
    const packages = ['grpc.health.v1'];
    const ours = loadOurRoot();
    assert.ok(definitionCount(ours, packages) >= 4);
    const errors = compareRoots(ours, loadOfficialHealthRoot(), packages);
    assert.deepEqual(errors, [], `protos/grpc differs from grpc-health-check:\n${errors.join('\n')}`);
  });

  it('the checker reports every kind of mismatch (negative test)', () => {
    const broken = parseRoot(`
      syntax = "proto3";
      package envoy.service.auth.v3;
      message AttributeContext {
        message TLSSession { string sni = 2; }
        TLSSession tls_session = 12;
      }
      message CheckRequest { AttributeContext attributes = 7; }
      message DeniedHttpResponse { repeated string status = 1; int32 body = 3; string bogus = 9; }
      message CheckResponse { oneof verdict { DeniedHttpResponse denied_response = 2; } }
      message NotInEnvoy { string x = 1; }
      enum HttpStatus { Forbidden = 403; }
    `);
    assert.deepEqual(compareRoots(broken, loadOfficialRoot(), ['envoy']), [
      'envoy.service.auth.v3.AttributeContext.TLSSession.sni: number ours=2 official=1',
      'envoy.service.auth.v3.CheckRequest.attributes: number ours=7 official=1',
      'envoy.service.auth.v3.DeniedHttpResponse.status: type ours=string official=envoy.type.v3.HttpStatus',
      'envoy.service.auth.v3.DeniedHttpResponse.status: label ours=repeated official=singular',
      'envoy.service.auth.v3.DeniedHttpResponse.body: type ours=int32 official=string',
      'envoy.service.auth.v3.DeniedHttpResponse.bogus: field missing in official message',
      'envoy.service.auth.v3.CheckResponse.denied_response: oneof ours=verdict official=http_response',
      'envoy.service.auth.v3.NotInEnvoy: message missing in official protos',
      'envoy.service.auth.v3.HttpStatus: enum missing in official protos',
    ]);
  });

  it('the checker reports map key, enum number and service mismatches (negative test)', () => {
    const broken = parseRoot(
      `syntax = "proto3";
      package envoy.service.auth.v3;
      message AttributeContext { map<int32, string> context_extensions = 10; }
      message CheckRequest {}
      message CheckResponse {}
      service Authorization {
        rpc Check(CheckRequest) returns (stream CheckResponse);
        rpc Nope(CheckRequest) returns (CheckResponse);
      }`,
      `syntax = "proto3";
      package envoy.config.core.v3;
      message HeaderValueOption {
        enum HeaderAppendAction { ADD_IF_ABSENT = 2; REPLACE = 9; }
        oneof x { bool keep_empty_value = 4; }
      }`,
    );
    const errors = compareRoots(broken, loadOfficialRoot(), ['envoy']);
    assert.deepEqual(errors, [
      'envoy.service.auth.v3.AttributeContext.context_extensions: map key ours=int32 official=string',
      'envoy.service.auth.v3.Authorization.Check: signature ours=(envoy.service.auth.v3.CheckRequest) returns ' +
        '(stream envoy.service.auth.v3.CheckResponse) official=(envoy.service.auth.v3.CheckRequest) returns ' +
        '(envoy.service.auth.v3.CheckResponse)',
      'envoy.service.auth.v3.Authorization.Nope: rpc missing in official service',
      'envoy.config.core.v3.HeaderValueOption.keep_empty_value: oneof ours=x official=-',
      'envoy.config.core.v3.HeaderValueOption.HeaderAppendAction.ADD_IF_ABSENT: enum number ours=2 official=1',
      'envoy.config.core.v3.HeaderValueOption.HeaderAppendAction.REPLACE: enum value missing in official enum',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips. Samples are written in the normalised toObject() shape (int64 as string, bytes as
// Buffer, defaults omitted) so one literal serves as input and as the expected output, and a key
// that fromObject() silently drops (a typo) shows up as a difference.

type Plain = Record<string, unknown>;

const VIEW: protobuf.IConversionOptions = { longs: String, bytes: Buffer, defaults: false };

function view(type: protobuf.Type, message: protobuf.Message): Plain {
  return type.toObject(message, VIEW);
}

/** Encode `sample` with `writer`, decode it with `reader`; returns the decoded message. */
function transfer(writer: protobuf.Type, reader: protobuf.Type, sample: Plain): protobuf.Message {
  const built = writer.fromObject(sample);
  assert.deepEqual(view(writer, built), sample, `${writer.name} sample has keys the type does not know`);
  return reader.decode(writer.encode(built).finish());
}

// Envoy's form of source.certificate: the client leaf certificate as URL-encoded PEM.
const CLIENT_CERT_URLENCODED =
  '-----BEGIN%20CERTIFICATE-----%0AMIIBszCCAVmgAwIBAgIUY3VzdG9tZXItYWNtZS1wYXJ0bmVyMAoGCCqGSM49BAMC%0A' +
  'MBYxFDASBgNVBAMMC3BhcnRuZXItY2EwHhcNMjYwMTAxMDAwMDAwWhcNMjcwMTAx%0A-----END%20CERTIFICATE-----%0A';

const GET_ORDER: Plain = {
  attributes: {
    source: {
      address: { socket_address: { address: '203.0.113.7', port_value: 53012 } },
      principal: 'spiffe://partners.example.com/acme',
      certificate: CLIENT_CERT_URLENCODED,
    },
    destination: {
      address: { socket_address: { address: '10.0.0.5', port_value: 8443 } },
      principal: 'api.example.com',
    },
    request: {
      time: { seconds: '1767225600', nanos: 123000000 },
      http: {
        id: '14532980211487419397', // Envoy's stream id, not x-request-id
        method: 'GET',
        headers: {
          ':authority': 'api.example.com',
          ':path': '/v1/orders/42?expand=items',
          ':method': 'GET',
          ':scheme': 'https',
          'x-request-id': '6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c',
          'x-forwarded-proto': 'https',
          accept: 'application/json, text/plain',
          'x-forwarded-client-cert': 'Hash=6b2f;Subject="CN=acme";URI=spiffe://partners.example.com/acme',
        },
        path: '/v1/orders/42?expand=items',
        host: 'api.example.com',
        scheme: 'https',
        size: '9007199254740993', // above 2^53: the int64 must survive as a string, not a JS number
        protocol: 'HTTP/2',
      },
    },
    context_extensions: { route: 'orders' },
    tls_session: { sni: 'api.example.com' },
  },
};

// {"note":"caf<C3 28 FF>"}: an invalid UTF-8 sequence that `body` (string) would mangle.
const RAW_BODY = Buffer.concat([
  Buffer.from('{"note":"caf'),
  Buffer.from([0xc3, 0x28, 0xff]),
  Buffer.from('"}'),
]);

const POST_DOCUMENT: Plain = {
  attributes: {
    source: {
      address: { socket_address: { address: '198.51.100.23', port_value: 40100 } },
      principal: 'spiffe://partners.example.com/globex',
      certificate: CLIENT_CERT_URLENCODED,
    },
    destination: { address: { socket_address: { address: '10.0.0.5', port_value: 8443 } } },
    request: {
      time: { seconds: '1767225601', nanos: 5000 },
      http: {
        id: '77',
        method: 'POST',
        // encode_raw_headers: true => header_map with raw bytes; duplicates stay separate entries.
        header_map: {
          headers: [
            { key: ':authority', raw_value: Buffer.from('api.example.com') },
            { key: ':path', raw_value: Buffer.from('/v1/documents') },
            { key: ':method', raw_value: Buffer.from('POST') },
            { key: ':scheme', raw_value: Buffer.from('https') },
            { key: 'content-type', raw_value: Buffer.from('application/json') },
            { key: 'x-partner-tag', raw_value: Buffer.from([0x74, 0xfe, 0x67]) },
            { key: 'x-trace', raw_value: Buffer.from('a') },
            { key: 'x-trace', raw_value: Buffer.from('b') },
            { key: 'x-envoy-auth-partial-body', raw_value: Buffer.from('false') },
          ],
        },
        path: '/v1/documents',
        host: 'api.example.com',
        scheme: 'https',
        size: String(RAW_BODY.length),
        protocol: 'HTTP/1.1',
        raw_body: RAW_BODY,
      },
    },
    context_extensions: { route: 'documents' },
    metadata_context: {
      filter_metadata: { 'envoy.filters.http.jwt_authn': { fields: { sub: { stringValue: 'globex' } } } },
    },
    tls_session: { sni: 'api.example.com' },
  },
};

const DELETE_FROM_IPV6: Plain = {
  attributes: {
    source: {
      address: { socket_address: { address: '2001:db8:85a3::8a2e:370:7334', port_value: 61000 } },
      principal: 'partner-initech.example.com',
    },
    destination: {
      address: { socket_address: { address: '::ffff:10.0.0.5', port_value: 8443, ipv4_compat: true } },
    },
    request: {
      time: { seconds: '1767225602' },
      http: {
        id: '78',
        method: 'DELETE',
        headers: {
          ':authority': 'api.example.com:8443',
          ':path': '/v1/orders/42',
          ':method': 'DELETE',
          ':scheme': 'https',
          'x-request-id': '0b7e6a52-1c1d-4c55-8e0f-3a1c2b3d4e5f',
        },
        path: '/v1/orders/42',
        host: 'api.example.com:8443',
        scheme: 'https',
        protocol: 'HTTP/2',
      },
    },
    context_extensions: { route: 'orders' },
  },
};

describe('CheckRequest: encoded by the official protos, decoded by ours', () => {
  const OfficialRequest = loadOfficialRoot().lookupType('envoy.service.auth.v3.CheckRequest');
  const OurRequest = loadOurRoot().lookupType('envoy.service.auth.v3.CheckRequest');

  for (const [name, sample] of Object.entries({ GET_ORDER, POST_DOCUMENT, DELETE_FROM_IPV6 })) {
    it(`${name} keeps every field`, () => {
      const decoded = transfer(OfficialRequest, OurRequest, sample);
      assert.deepEqual(view(OurRequest, decoded), sample);
    });
  }

  it('raw_body keeps invalid UTF-8 byte for byte', () => {
    const decoded = view(OurRequest, transfer(OfficialRequest, OurRequest, POST_DOCUMENT));
    const http = (decoded.attributes as { request: { http: { raw_body: unknown; size: unknown } } }).request
      .http;
    assert.ok(Buffer.isBuffer(http.raw_body));
    assert.ok(RAW_BODY.equals(http.raw_body));
    assert.equal(http.size, String(RAW_BODY.length));
  });

  it('the address oneof reports socket_address for IPv6 peers', () => {
    const decoded = OurRequest.toObject(transfer(OfficialRequest, OurRequest, DELETE_FROM_IPV6), {
      oneofs: true,
    });
    const source = (decoded.attributes as { source: { address: Plain } }).source;
    assert.equal(source.address.address, 'socket_address');
  });
});

// protobufjs writes fields that were set explicitly even when they hold the proto3 default, so
// append {value:false} goes on the wire as BoolValue{1: false} and status.code 0 as {1: 0}: both
// decode as present, and the decoded views equal the samples exactly.
const ALLOW: Plain = {
  status: { code: 0 },
  ok_response: {
    headers: [
      { header: { key: 'x-partner-id', value: 'acme' }, append: { value: false } }, // append false = overwrite
      { header: { key: 'x-partner-tier', value: 'gold' }, append: { value: false } },
    ],
    headers_to_remove: ['authorization', 'x-api-key'],
    response_headers_to_add: [
      {
        header: { key: 'x-ratelimit-remaining', value: '41' },
        append_action: 2 /* OVERWRITE_IF_EXISTS_OR_ADD */,
      },
    ],
  },
  dynamic_metadata: {
    fields: { partner_id: { stringValue: 'acme' }, policy: { stringValue: 'orders-read' } },
  },
};

const PROBLEM = JSON.stringify({
  type: 'https://errors.example.com/forbidden',
  title: 'Forbidden',
  status: 403,
  detail: 'partner globex may not POST /v1/documents',
});

const DENY: Plain = {
  status: { code: 7, message: 'partner globex may not POST /v1/documents' }, // PERMISSION_DENIED
  denied_response: {
    status: { code: 403 }, // envoy.type.v3.StatusCode.Forbidden, as its number
    headers: [
      { header: { key: 'content-type', value: 'application/problem+json' }, append: { value: false } },
      { header: { key: 'cache-control', value: 'no-store' }, append: { value: false } },
    ],
    body: PROBLEM,
  },
};

interface DecodedOption {
  append: { value: boolean } | null;
}

describe('CheckResponse: encoded by our protos, decoded by the official ones', () => {
  const OfficialResponse = loadOfficialRoot().lookupType('envoy.service.auth.v3.CheckResponse');
  const OurResponse = loadOurRoot().lookupType('envoy.service.auth.v3.CheckResponse');

  it('allow: every field survives', () => {
    const decoded = transfer(OurResponse, OfficialResponse, ALLOW);
    assert.deepEqual(view(OfficialResponse, decoded), ALLOW);
  });

  it('allow: http_response is ok_response, status is OK, append is a present wrapper with value false', () => {
    const decoded = transfer(OurResponse, OfficialResponse, ALLOW);
    const full = OfficialResponse.toObject(decoded, { defaults: true, oneofs: true });
    assert.equal(full.http_response, 'ok_response');
    assert.equal(full.status.code, 0);
    for (const option of full.ok_response.headers as DecodedOption[]) {
      assert.deepEqual(option.append, { value: false }, 'append must be present (not null) and false');
    }
  });

  it('allow: a header option without append decodes with append absent (null), unlike {value:false}', () => {
    const sample = { ok_response: { headers: [{ header: { key: 'x-a', value: '1' } }] } };
    const decoded = transfer(OurResponse, OfficialResponse, sample);
    const full = OfficialResponse.toObject(decoded, { defaults: true });
    assert.equal((full.ok_response.headers as DecodedOption[])[0]?.append, null);
  });

  it('deny: status 7, HTTP 403, problem+json body and headers survive', () => {
    const decoded = transfer(OurResponse, OfficialResponse, DENY);
    assert.deepEqual(view(OfficialResponse, decoded), DENY);
    const named = OfficialResponse.toObject(decoded, { oneofs: true, enums: String });
    assert.equal(named.http_response, 'denied_response');
    assert.equal(named.status.code, 7);
    assert.equal(named.denied_response.status.code, 'Forbidden');
    assert.deepEqual(JSON.parse(named.denied_response.body), JSON.parse(PROBLEM));
  });
});
