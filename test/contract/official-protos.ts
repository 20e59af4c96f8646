// Loads Envoy's official API protos (vendored in @grpc/grpc-js-xds/deps) and our own protos/ so the
// contract tests can compare them and validate envoy/envoy.yaml against the real schema.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));

export const PROJECT_ROOT = resolve(here, '..', '..');
export const OUR_PROTOS_DIR = join(PROJECT_ROOT, 'protos');

/** The four folders of official protos that grpc-js-xds vendors (envoy-api, googleapis, xds, PGV). */
export function officialProtoDirs(): string[] {
  const pkgDir = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  const deps = join(pkgDir, 'deps');
  return ['envoy-api', 'googleapis', 'xds', 'protoc-gen-validate'].map((d) => join(deps, d));
}

/** Every official file needed: the Check service, the bootstrap and each extension envoy.yaml names. */
export const OFFICIAL_ENTRY_FILES: readonly string[] = [
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
];

/** Entry files of our own protos (everything else is pulled in through imports). */
export const OUR_ENTRY_FILES: readonly string[] = [
  'envoy/service/auth/v3/external_auth.proto',
  'grpc/health/v1/health.proto',
];

/** Path of the health.proto that the official grpc-node package `grpc-health-check` ships. */
export function healthCheckProtoPath(): string {
  const mod: unknown = require('grpc-health-check');
  const protoPath = (mod as { protoPath?: unknown }).protoPath;
  if (typeof protoPath !== 'string') throw new Error('grpc-health-check does not export protoPath');
  return protoPath;
}

/**
 * A Root whose imports resolve against `dirs`, in order. protobufjs substitutes its bundled
 * google/protobuf/* well-known types before resolvePath is consulted; descriptor.proto is not
 * bundled, so protobufjs' own copy is the last resort.
 */
function rootResolvingAgainst(dirs: readonly string[]): protobuf.Root {
  const fallback = dirname(require.resolve('protobufjs/package.json'));
  const searchDirs = [...dirs, fallback];
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (isAbsolute(target)) return target;
    const found = searchDirs.map((d) => join(d, target)).find((p) => existsSync(p));
    if (found === undefined) throw new Error(`proto import not found in any include dir: ${target}`);
    return found;
  };
  return root;
}

function loadRoot(dirs: readonly string[], files: readonly string[]): protobuf.Root {
  const root = rootResolvingAgainst(dirs);
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

let officialRoot: protobuf.Root | undefined;

/** Envoy's official protos (cached: ~80 files, parsed once per test process). */
export function loadOfficialRoot(): protobuf.Root {
  officialRoot ??= loadRoot(officialProtoDirs(), OFFICIAL_ENTRY_FILES);
  return officialRoot;
}

/** Our protos/ as portcullis loads them (fresh Root each call; it is small). */
export function loadOurRoot(): protobuf.Root {
  return loadRoot([OUR_PROTOS_DIR], OUR_ENTRY_FILES);
}

/** The official grpc.health.v1 proto from grpc-health-check. */
export function loadOfficialHealthRoot(): protobuf.Root {
  return loadRoot([], [healthCheckProtoPath()]);
}

/** Other official protos by entry file (e.g. the rate limit service, for bench/ratelimit.ts). */
export function loadOfficialFiles(files: readonly string[]): protobuf.Root {
  return loadRoot(officialProtoDirs(), files);
}
