// Contract: envoy/envoy.yaml is valid against Envoy's official v3 protos and wires portcullis in
// the way the service expects; the validator itself catches each class of mistake.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { validateAgainstProto } from './envoy-yaml.js';
import { loadOfficialRoot, PROJECT_ROOT } from './official-protos.js';

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const EXT_AUTHZ = 'envoy.filters.http.ext_authz';
const HCM_PATH = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';

type Plain = Record<string, unknown>;

function loadEnvoyYaml(): Plain {
  const parsed: unknown = parse(readFileSync(join(PROJECT_ROOT, 'envoy', 'envoy.yaml'), 'utf8'));
  assert.ok(
    typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed),
    'envoy.yaml is a mapping',
  );
  return parsed as Plain;
}

/** Steps of a validator-style path: a.b[0].c["key.with.dots"]. */
function steps(path: string): string[] {
  return [...path.matchAll(/\["([^"]*)"\]|\[(\d+)\]|([^.[\]]+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

/** Walks `value` along `path`; fails the test if any step is missing. */
function at(value: unknown, path: string): unknown {
  return steps(path).reduce<unknown>((current, step) => {
    assert.ok(typeof current === 'object' && current !== null, `${path}: no object at "${step}"`);
    const next = (current as Record<string, unknown>)[step];
    assert.notEqual(next, undefined, `${path}: "${step}" is missing`);
    return next;
  }, value);
}

function list(value: unknown, path: string): Plain[] {
  const found = at(value, path);
  assert.ok(Array.isArray(found), `${path} is a list`);
  return found as Plain[];
}

function byName(items: Plain[], name: string): Plain {
  const item = items.find((candidate) => candidate.name === name);
  assert.ok(item, `no entry named ${name}`);
  return item;
}

function validate(config: unknown): string[] {
  return validateAgainstProto(loadOfficialRoot(), BOOTSTRAP, config);
}

describe('envoy/envoy.yaml against the official protos', () => {
  it('validates against envoy.config.bootstrap.v3.Bootstrap with zero errors', () => {
    const errors = validate(loadEnvoyYaml());
    assert.deepEqual(errors, [], errors.join('\n'));
  });

  it('uses no deprecated fields or enum values', () => {
    const errors = validateAgainstProto(loadOfficialRoot(), BOOTSTRAP, loadEnvoyYaml(), '', {
      rejectDeprecated: true,
    });
    assert.deepEqual(errors, [], errors.join('\n'));
  });
});

describe('envoy/envoy.yaml wires portcullis correctly', () => {
  const config = loadEnvoyYaml();
  const listener = at(config, 'static_resources.listeners[0]');
  const hcm = at(config, HCM_PATH);
  const filters = list(hcm, 'http_filters');
  const extAuthz = at(byName(filters, EXT_AUTHZ), 'typed_config');
  const clusters = list(config, 'static_resources.clusters');

  it('runs ext_authz before the router, and the router last', () => {
    const names = filters.map((filter) => filter.name);
    assert.ok(names.indexOf(EXT_AUTHZ) >= 0);
    assert.ok(names.indexOf(EXT_AUTHZ) < names.indexOf('envoy.filters.http.router'));
    assert.equal(names.at(-1), 'envoy.filters.http.router');
  });

  it('configures the ext_authz filter for portcullis (gRPC, fail closed, raw body, peer identity)', () => {
    assert.equal(
      at(extAuthz, '@type'),
      'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
    );
    assert.equal(at(extAuthz, 'grpc_service.envoy_grpc.cluster_name'), 'portcullis');
    assert.equal(at(extAuthz, 'grpc_service.timeout'), '0.25s');
    assert.equal(at(extAuthz, 'transport_api_version'), 'V3');
    assert.equal(at(extAuthz, 'with_request_body.pack_as_bytes'), true);
    assert.equal(at(extAuthz, 'with_request_body.max_request_bytes'), 1048576);
    assert.equal(at(extAuthz, 'with_request_body.allow_partial_message'), true);
    assert.equal(at(extAuthz, 'include_peer_certificate'), true);
    assert.equal(at(extAuthz, 'include_tls_session'), true);
    assert.equal(at(extAuthz, 'failure_mode_allow'), false);
    assert.equal(at(extAuthz, 'status_on_error.code'), 'ServiceUnavailable');
    assert.equal(at(extAuthz, 'validate_mutations'), true);
    assert.equal(typeof at(extAuthz, 'stat_prefix'), 'string');
  });

  it('gives the listener a connection buffer that holds the whole ext_authz body', () => {
    const limit = Number(at(listener, 'per_connection_buffer_limit_bytes'));
    const body = Number(at(extAuthz, 'with_request_body.max_request_bytes'));
    assert.ok(limit >= body + 64 * 1024, `buffer ${limit} must exceed body ${body} plus 64 KiB of headers`);
  });

  it('requires client certificates (mTLS) on the listener', () => {
    const tls = at(listener, 'filter_chains[0].transport_socket.typed_config');
    assert.equal(
      at(tls, '@type'),
      'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
    );
    assert.equal(at(tls, 'require_client_certificate'), true);
    assert.equal(typeof at(tls, 'common_tls_context.validation_context.trusted_ca.filename'), 'string');
    assert.deepEqual(at(tls, 'common_tls_context.alpn_protocols'), ['h2', 'http/1.1']);
  });

  it('sanitises XFCC, normalises paths and guarantees x-request-id', () => {
    assert.equal(at(hcm, 'forward_client_cert_details'), 'SANITIZE_SET');
    assert.deepEqual(at(hcm, 'set_current_client_cert_details'), { subject: true, uri: true, dns: true });
    assert.equal(at(hcm, 'normalize_path'), true);
    assert.equal(at(hcm, 'merge_slashes'), true);
    assert.equal(at(hcm, 'path_with_escaped_slashes_action'), 'UNESCAPE_AND_REDIRECT');
    assert.equal(at(hcm, 'generate_request_id'), true);
  });

  it('generates the x-request-id of partner traffic: only loopback is internal (quota idempotency, issue 12.10)', () => {
    assert.equal(at(hcm, 'preserve_external_request_id'), false);
    assert.equal(at(hcm, 'use_remote_address'), true);
    // Unset, every RFC 1918 / 4193 address would be internal, and keep its client-sent request id.
    assert.deepEqual(at(hcm, 'internal_address_config.cidr_ranges'), [
      { address_prefix: '127.0.0.1', prefix_len: 32 },
      { address_prefix: '::1', prefix_len: 128 },
    ]);
    assert.notEqual(at(hcm, 'internal_address_config.unix_sockets'), true);
  });

  it('talks HTTP/2 to portcullis on 127.0.0.1:9001 with gRPC health checks', () => {
    const portcullis = byName(clusters, 'portcullis');
    const http = at(
      portcullis,
      'typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]',
    );
    assert.equal(
      at(http, '@type'),
      'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    );
    assert.deepEqual(at(http, 'explicit_http_config.http2_protocol_options'), {});
    const address = at(
      portcullis,
      'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address',
    );
    assert.deepEqual(address, { address: '127.0.0.1', port_value: 9001 });
    const check = at(portcullis, 'health_checks[0]');
    assert.equal(at(check, 'grpc_health_check.service_name'), 'envoy.service.auth.v3.Authorization');
    for (const required of ['timeout', 'interval', 'unhealthy_threshold', 'healthy_threshold']) {
      at(check, required);
    }
  });

  it('sends partner traffic to partner_api on 127.0.0.1:8080', () => {
    const address = at(
      byName(clusters, 'partner_api'),
      'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address',
    );
    assert.deepEqual(address, { address: '127.0.0.1', port_value: 8080 });
  });

  it('disables ext_authz only on the health route; every other route is checked', () => {
    const routes = list(hcm, 'route_config.virtual_hosts').flatMap((vhost) => list(vhost, 'routes'));
    const perRoute = (route: Plain): Plain | undefined =>
      (route.typed_per_filter_config as Record<string, Plain> | undefined)?.[EXT_AUTHZ];
    const health = routes.filter((route) => perRoute(route)?.disabled === true);
    assert.deepEqual(
      health.map((route) => at(route, 'match')),
      [{ path: '/healthz', headers: [{ name: ':method', string_match: { exact: 'GET' } }] }],
    );
    const extensions = routes
      .filter((route) => !health.includes(route))
      .map((route) => [at(route, 'name'), perRoute(route)?.check_settings]);
    assert.deepEqual(extensions, [
      ['orders', { context_extensions: { route: 'orders' } }],
      ['documents', { context_extensions: { route: 'documents' } }],
      ['catch_all', undefined], // checked, no context extension: portcullis matches host + path
    ]);
    assert.deepEqual(
      at(routes.at(-1), 'match'),
      { prefix: '/' },
      'a catch-all keeps unmatched requests checked',
    );
  });
});

/** Applies `mutate` to a deep copy of envoy.yaml and returns the validator's errors. */
function errorsAfter(mutate: (config: Plain) => void): string[] {
  const config = structuredClone(loadEnvoyYaml());
  mutate(config);
  return validate(config);
}

const node = (config: Plain, path: string): Plain => at(config, path) as Plain;
const EXT_AUTHZ_PATH = `${HCM_PATH}.http_filters[0].typed_config`;
const PORTCULLIS_PATH = 'static_resources.clusters[0]';

describe('validateAgainstProto rejects broken config (negative cases)', () => {
  it('an unknown field', () => {
    const errors = errorsAfter((c) => {
      node(c, HCM_PATH).generate_request_ids = true;
    });
    assert.deepEqual(errors, [
      `${HCM_PATH}.generate_request_ids: unknown field in ` +
        'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    ]);
  });

  it('a camelCase field name (only proto field names are accepted)', () => {
    const errors = errorsAfter((c) => {
      node(c, EXT_AUTHZ_PATH).failureModeAllow = true;
    });
    assert.deepEqual(errors, [
      `${EXT_AUTHZ_PATH}.failureModeAllow: unknown field in envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`,
    ]);
  });

  it('a bad enum value', () => {
    const errors = errorsAfter((c) => {
      node(c, HCM_PATH).forward_client_cert_details = 'SANITISE_SET';
    });
    assert.deepEqual(errors, [
      `${HCM_PATH}.forward_client_cert_details: invalid value string "SANITISE_SET" for enum ` +
        'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.ForwardClientCertDetails',
    ]);
  });

  it('an unknown @type', () => {
    const errors = errorsAfter((c) => {
      node(c, EXT_AUTHZ_PATH)['@type'] =
        'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth';
    });
    assert.deepEqual(errors, [
      `${EXT_AUTHZ_PATH}.@type: unknown @type "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuth"` +
        ' (no such message in the official protos)',
    ]);
  });

  it('a field of the wrong @type message (the Any payload is validated)', () => {
    const errors = errorsAfter((c) => {
      node(c, EXT_AUTHZ_PATH)['@type'] = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
    });
    assert.ok(
      errors.includes(
        `${EXT_AUTHZ_PATH}.grpc_service: unknown field in envoy.extensions.filters.http.router.v3.Router`,
      ),
    );
  });

  it('a wrong scalar type', () => {
    const errors = errorsAfter((c) => {
      node(c, EXT_AUTHZ_PATH).failure_mode_allow = 'false';
    });
    assert.deepEqual(errors, [`${EXT_AUTHZ_PATH}.failure_mode_allow: expected bool, got string "false"`]);
  });

  it('a wrapper type (BoolValue) given as an object instead of the bare scalar', () => {
    const tls = 'static_resources.listeners[0].filter_chains[0].transport_socket.typed_config';
    const errors = errorsAfter((c) => {
      node(c, tls).require_client_certificate = { value: true };
    });
    assert.deepEqual(errors, [
      `${tls}.require_client_certificate: expected bool, got object (google.protobuf.BoolValue is written as a bare bool)`,
    ]);
  });

  it('a uint32 out of range', () => {
    const errors = errorsAfter((c) => {
      node(c, `${EXT_AUTHZ_PATH}.with_request_body`).max_request_bytes = 4294967296;
    });
    assert.deepEqual(errors, [
      `${EXT_AUTHZ_PATH}.with_request_body.max_request_bytes: number 4294967296 is out of range for uint32`,
    ]);
  });

  it('two members of one oneof', () => {
    const route = `${HCM_PATH}.route_config.virtual_hosts[0].routes[3]`;
    const errors = errorsAfter((c) => {
      node(c, `${route}.match`).path = '/v1';
    });
    assert.deepEqual(errors, [`${route}.match: oneof "path_specifier" allows one member, got prefix, path`]);
  });

  it('a malformed duration', () => {
    const errors = errorsAfter((c) => {
      node(c, `${EXT_AUTHZ_PATH}.grpc_service`).timeout = '250ms';
    });
    assert.deepEqual(errors, [
      `${EXT_AUTHZ_PATH}.grpc_service.timeout: invalid google.protobuf.Duration string "250ms" (expected e.g. "0.25s" or "5s")`,
    ]);
  });

  it('a scalar where a repeated field needs a list', () => {
    const common =
      'static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context';
    const errors = errorsAfter((c) => {
      node(c, common).alpn_protocols = 'h2';
    });
    assert.deepEqual(errors, [
      `${common}.alpn_protocols: expected a list (repeated string), got string "h2"`,
    ]);
  });

  it('an empty YAML value (null) where a message is required, e.g. http2_protocol_options:', () => {
    const http = `${PORTCULLIS_PATH}.typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`;
    const errors = errorsAfter((c) => {
      node(c, `${http}.explicit_http_config`).http2_protocol_options = null;
    });
    assert.deepEqual(errors, [
      `${http}.explicit_http_config.http2_protocol_options: null is not a envoy.config.core.v3.Http2ProtocolOptions` +
        ' (empty YAML value? write {} for an empty message)',
    ]);
  });

  it('a map with a value of the wrong type', () => {
    const route = `${HCM_PATH}.route_config.virtual_hosts[0].routes[1]`;
    const settings = `${route}.typed_per_filter_config["${EXT_AUTHZ}"].check_settings`;
    const errors = errorsAfter((c) => {
      node(c, settings).context_extensions = { route: 7 };
    });
    assert.deepEqual(errors, [`${settings}.context_extensions.route: expected string, got number 7`]);
  });

  it('an Any without @type', () => {
    const errors = errorsAfter((c) => {
      delete node(c, EXT_AUTHZ_PATH)['@type'];
    });
    assert.deepEqual(errors, [
      `${EXT_AUTHZ_PATH}.@type: google.protobuf.Any needs "@type": type.googleapis.com/<message full name>`,
    ]);
  });

  it('an unknown root type name', () => {
    assert.deepEqual(validateAgainstProto(loadOfficialRoot(), 'envoy.config.bootstrap.v3.Bootstrapp', {}), [
      '(root): unknown message type envoy.config.bootstrap.v3.Bootstrapp',
    ]);
  });

  it('a path prefix is prepended (for config embedded elsewhere, e.g. a ConfigMap key)', () => {
    const errors = validateAgainstProto(
      loadOfficialRoot(),
      BOOTSTRAP,
      { admin: { adress: {} } },
      'data["envoy.yaml"]',
    );
    assert.deepEqual(errors, [
      'data["envoy.yaml"].admin.adress: unknown field in envoy.config.bootstrap.v3.Admin',
    ]);
  });
});
