// Contract: what platform teams copy from deploy/ works the first time.
// - deploy/kubernetes: every manifest is valid against the Kubernetes OpenAPI schemas
//   (kubernetes-models) and has no field the API does not know; the wiring matches portcullis
//   (SERVE_DEFAULTS, resolveServeConfig, the probe paths of the real admin server) and envoy.yaml
//   (ports, mounted files, the byte-identical ConfigMap, the official Bootstrap proto).
// - deploy/prometheus: promtool checks and unit-tests the rules.
// - rules and deploy/grafana: every metric (and matcher label) they use is one the real app exports,
//   or one of the few declared-soon metrics listed below.
// Not checked here: a real cluster, a real Envoy binary, real clamd/Redis images (see
// docs/operations.md, "What the tests do not cover").
import assert from 'node:assert/strict';
import { spawn as spawnAsync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { describe, it } from 'node:test';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import { Secret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { Service } from 'kubernetes-models/v1/Service';
import ts from 'typescript';
import { parse, parseAllDocuments } from 'yaml';
import { resolveServeConfig, SERVE_DEFAULTS, SERVE_ENV, splitHostPort } from '../../src/config.js';
import { MIN_PEPPER_BYTES } from '../../src/identity/apikeys.js';
import { loadCatalogFile } from '../../src/policy/load.js';
import { startTestApp } from '../support/app.js';
import { CONFIGMAPS, REGENERATE, renderConfigMap } from './deploy-configmaps.js';
import { validateAgainstProto } from './envoy-yaml.js';
import { loadOfficialRoot, PROJECT_ROOT } from './official-protos.js';
import { selectors, templateQueryExpr } from './promql-names.js';

type Plain = Record<string, unknown>;

const K8S_DIR = join(PROJECT_ROOT, 'deploy', 'kubernetes');
const OPTIONAL_DIR = join(K8S_DIR, 'optional');
const RULES = join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules.yaml');
const RULES_TEST = join(PROJECT_ROOT, 'deploy', 'prometheus', 'rules.test.yaml');
const DASHBOARD = join(PROJECT_ROOT, 'deploy', 'grafana', 'portcullis.json');
const OPERATIONS_DOC = join(PROJECT_ROOT, 'docs', 'operations.md');
const RUNBOOK_BASE = 'https://portcullis.dev/docs/operations';

/**
 * Metrics the rules and the dashboard use before portcullis exports them. Each entry says what
 * will export it; the test fails once portcullis exports it, so the entry gets removed.
 */
const DECLARED_SOON: Readonly<Record<string, readonly string[]>> = {};

/** Labels Prometheus adds to every scraped series, and the bucket label of histograms. */
const TARGET_LABELS = ['job', 'instance'];

// --- loading -------------------------------------------------------------------------------------

interface Manifest {
  readonly file: string;
  readonly index: number;
  readonly object: Plain;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => join(dir, f));
}

function loadManifests(file: string): Manifest[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  return docs.map((doc, index) => {
    assert.deepEqual(doc.errors, [], `${file}[${index}]: YAML errors`);
    const object = doc.toJS() as unknown;
    assert.ok(isPlain(object), `${file}[${index}] is a mapping`);
    return { file, index, object };
  });
}

function isPlain(value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const rel = (file: string) => file.slice(PROJECT_ROOT.length + 1);

const ALL_FILES = [...yamlFiles(K8S_DIR), ...yamlFiles(OPTIONAL_DIR)];
const KUSTOMIZATIONS = ALL_FILES.filter((f) => basename(f) === 'kustomization.yaml');
const MANIFEST_FILES = ALL_FILES.filter((f) => basename(f) !== 'kustomization.yaml');
const MANIFESTS = MANIFEST_FILES.flatMap(loadManifests);
const REQUIRED = MANIFESTS.filter((m) => dirname(m.file) === K8S_DIR);

/** kubernetes-models class and TypeScript interface per apiVersion/kind. */
const MODELS: Record<
  string,
  { model: new (data: never) => { validate(): void }; type: readonly [string, string] }
> = {
  'apps/v1/Deployment': { model: Deployment, type: ['kubernetes-models/apps/v1/Deployment', 'IDeployment'] },
  'v1/ConfigMap': { model: ConfigMap, type: ['kubernetes-models/v1/ConfigMap', 'IConfigMap'] },
  'v1/Secret': { model: Secret, type: ['kubernetes-models/v1/Secret', 'ISecret'] },
  'v1/Service': { model: Service, type: ['kubernetes-models/v1/Service', 'IService'] },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    type: ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
  },
  'networking.k8s.io/v1/NetworkPolicy': {
    model: NetworkPolicy,
    type: ['kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'],
  },
};

const kindOf = (o: Plain) => `${String(o.apiVersion)}/${String(o.kind)}`;

function named<T>(kind: string, name: string, from: readonly Manifest[] = MANIFESTS): T {
  const found = from.filter(
    (m) => kindOf(m.object).endsWith(`/${kind}`) && (m.object.metadata as Plain | undefined)?.name === name,
  );
  assert.equal(found.length, 1, `exactly one ${kind} named ${name}`);
  return found[0]?.object as T;
}

function must<T>(value: T | undefined | null, what: string): T {
  assert.ok(value !== undefined && value !== null, `${what} is missing`);
  return value;
}

const gateway = named<IDeployment>('Deployment', 'partner-gateway');
const podSpec: IPodSpec = must(gateway.spec?.template.spec, 'the gateway pod spec');
const podLabels = must(gateway.spec?.template.metadata?.labels, 'the gateway pod labels');

function container(spec: IPodSpec, name: string): IContainer {
  return must(
    spec.containers.find((c) => c.name === name),
    `container ${name}`,
  );
}
const envoy = container(podSpec, 'envoy');
const portcullis = container(podSpec, 'portcullis');

/** The value following `flag` in a container's args. */
function flag(c: IContainer, name: string): string {
  const args = c.args ?? [];
  const at = args.indexOf(name);
  assert.ok(at >= 0 && at + 1 < args.length, `${c.name}: ${name} VALUE in args`);
  return args[at + 1] as string;
}

function envValue(c: IContainer, name: string): string {
  const found = must(
    c.env?.find((e) => e.name === name),
    `${c.name}: env ${name}`,
  );
  return must(found.value, `${c.name}: env ${name} value`);
}

function envoyYamlText(): string {
  return readFileSync(join(PROJECT_ROOT, 'envoy', 'envoy.yaml'), 'utf8');
}

/** The mount (volume + path inside it) that serves `file` in container `c`. */
function mountedFile(c: IContainer, file: string): { volume: string; path: string } {
  const mounts = (c.volumeMounts ?? []).filter((m) => file.startsWith(`${m.mountPath}/`));
  assert.equal(mounts.length, 1, `${c.name}: one volume mount serves ${file}`);
  const mount = mounts[0];
  assert.ok(mount);
  assert.equal(mount.subPath, undefined, `${c.name}: ${mount.mountPath} is a directory mount, not subPath`);
  return { volume: mount.name, path: posix.relative(mount.mountPath, file) };
}

function volume(name: string) {
  return must(
    podSpec.volumes?.find((v) => v.name === name),
    `volume ${name}`,
  );
}

/** The seconds of a `sleep N` at the end of an exec command. */
function sleepSeconds(command: readonly string[] | undefined, what: string): number {
  const text = must(command, what).join(' ');
  const m = /(?:^|[\s;])sleep\s+(\d+)\s*$/.exec(text);
  assert.ok(m?.[1], `${what}: ends with "sleep N": ${text}`);
  return Number(m[1]);
}

/** Runs promtool; fails the test with instructions when it is not installed. */
function promtool(args: readonly string[]): { status: number; output: string } {
  const run = spawnSync('promtool', [...args], { encoding: 'utf8' });
  if (run.error && (run.error as NodeJS.ErrnoException).code === 'ENOENT') {
    assert.fail(
      'promtool is not on PATH: run `make tools` (it installs the Debian package "prometheus"), or ' +
        '`apt-get install prometheus`',
    );
  }
  return { status: run.status ?? -1, output: `${run.stdout}${run.stderr}` };
}

// --- Kubernetes manifests ------------------------------------------------------------------------

describe('deploy/kubernetes: schemas', () => {
  it('every manifest validates against the Kubernetes OpenAPI schemas (kubernetes-models)', () => {
    assert.ok(MANIFESTS.length >= 10, `found ${MANIFESTS.length} manifests`);
    for (const m of MANIFESTS) {
      const entry = MODELS[kindOf(m.object)];
      assert.ok(entry, `${rel(m.file)}[${m.index}]: no model for ${kindOf(m.object)}`);
      assert.doesNotThrow(
        () => new entry.model(m.object as never).validate(),
        `${rel(m.file)}[${m.index}] ${kindOf(m.object)}`,
      );
    }
  });

  it('no manifest has a field the Kubernetes API does not know (typed models, excess property check)', () => {
    const errors = typeCheck(MANIFESTS);
    assert.deepEqual(errors, [], errors.join('\n'));
  });

  it('the two checks catch a wrong type and a misspelt security field', () => {
    const bad = structuredClone(gateway) as unknown as Plain;
    const spec = (bad.spec as Plain).template as Plain;
    const containers = (spec.spec as Plain).containers as Plain[];
    (containers[0] as Plain).ports = [{ containerPort: '8443' }];
    assert.throws(() => new Deployment(bad as never).validate(), /containerPort must be integer/);

    const typo = structuredClone(gateway) as unknown as Plain;
    const typoContainers = (((typo.spec as Plain).template as Plain).spec as Plain).containers as Plain[];
    (typoContainers[1] as Plain).securityContext = { readOnlyRootFileSystem: true };
    // kubernetes-models alone accepts the typo (unknown fields pass its validator) ...
    assert.doesNotThrow(() => new Deployment(typo as never).validate());
    // ... the typed check does not.
    const errors = typeCheck([{ file: 'typo.yaml', index: 0, object: typo }]);
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0] ?? '', /readOnlyRootFileSystem/);
  });
});

/** Type-checks every manifest against kubernetes-models' interfaces, in memory. */
function typeCheck(manifests: readonly Manifest[]): string[] {
  const file = join(PROJECT_ROOT, 'test', 'contract', '__deploy_manifests__.ts');
  const imports = new Map<string, string>();
  const lines: string[] = [];
  const origin: string[] = [];
  manifests.forEach((m, i) => {
    const entry = MODELS[kindOf(m.object)];
    if (!entry) return;
    const [module, type] = entry.type;
    imports.set(type, `import type { ${type} } from '${module}';`);
    lines.push(`export const m${i}: ${type} = ${JSON.stringify(m.object, null, 2)};`);
    origin[i] = `${rel(m.file)}[${m.index}]`;
  });
  const source = [...imports.values(), ...lines].join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    resolve(name) === file
      ? ts.createSourceFile(name, source, language)
      : getSourceFile(name, language, ...rest);
  host.fileExists = (name) => resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const declared = d.file.text
      .split('\n')
      .slice(0, line + 1)
      .reverse()
      .find((l) => /^export const m\d+:/.test(l));
    const index = Number(/^export const m(\d+):/.exec(declared ?? '')?.[1]);
    return `${origin[index] ?? 'manifest'}: ${text}`;
  });
}

describe('deploy/kubernetes: ConfigMaps', () => {
  it(`both ConfigMaps are exactly what ${REGENERATE} renders`, () => {
    for (const spec of CONFIGMAPS) {
      const onDisk = readFileSync(join(PROJECT_ROOT, spec.manifest), 'utf8');
      assert.ok(onDisk === renderConfigMap(spec), `${spec.manifest} is stale: run ${REGENERATE}`);
    }
  });

  it('the envoy ConfigMap holds envoy/envoy.yaml byte for byte, valid against the official Bootstrap proto', () => {
    const cm = named<IConfigMap>('ConfigMap', 'partner-gateway-envoy');
    const text = must(cm.data?.['envoy.yaml'], 'data["envoy.yaml"]');
    assert.ok(
      text === envoyYamlText(),
      `envoy.yaml in the ConfigMap differs from envoy/envoy.yaml: ${REGENERATE}`,
    );
    const errors = validateAgainstProto(
      loadOfficialRoot(),
      'envoy.config.bootstrap.v3.Bootstrap',
      parse(text),
    );
    assert.deepEqual(errors, [], errors.join('\n'));
  });

  it('envoy -c names a file of the envoy ConfigMap, mounted as a directory', () => {
    const config = flag(envoy, '-c');
    const { volume: name, path } = mountedFile(envoy, config);
    const cmName = must(volume(name).configMap?.name, `volume ${name} is a ConfigMap`);
    const cm = named<IConfigMap>('ConfigMap', cmName);
    assert.equal(volume(name).configMap?.items, undefined, 'every key of the envoy ConfigMap is mounted');
    assert.ok(cm.data?.[path] !== undefined, `${cmName} has key ${path}`);
  });

  it('the catalog ConfigMap is the example catalog, and it loads from the files as the pod mounts them', async () => {
    const cm = named<IConfigMap>('ConfigMap', 'partner-gateway-catalog');
    const data = must(cm.data, 'catalog data');
    assert.ok(data['catalog.yaml'] === readFileSync(join(PROJECT_ROOT, 'examples', 'catalog.yaml'), 'utf8'));
    assert.ok(
      data['jwks.json'] === readFileSync(join(PROJECT_ROOT, 'examples', 'keys', 'jwks.json'), 'utf8'),
    );

    const config = flag(portcullis, '--config');
    const { volume: name, path } = mountedFile(portcullis, config);
    const vol = must(volume(name).configMap, `volume ${name} is a ConfigMap`);
    assert.equal(vol.name, 'partner-gateway-catalog');
    // Lay the volume out as kubelet does (items: key -> path), then load it like `serve` does.
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-catalog-'));
    try {
      const items = vol.items ?? Object.keys(data).map((key) => ({ key, path: key }));
      for (const item of items) {
        const content = must(data[item.key], `ConfigMap key ${item.key} (volume item)`);
        const target = join(dir, item.path);
        spawnSync('mkdir', ['-p', dirname(target)]);
        writeFileSync(target, content);
      }
      const catalog = await loadCatalogFile(join(dir, path));
      assert.ok(catalog.routes.length > 0);

      // A fail_open limit makes each replica enforce limit / settings.quotas.replicas when Redis
      // fails: that number must be the Deployment's replicas.
      const failOpen = JSON.stringify(parse(data['catalog.yaml'] ?? '')).includes(
        '"on_store_error":"fail_open"',
      );
      if (failOpen) assert.equal(catalog.settings.quotas.replicas, gateway.spec?.replicas);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/kubernetes: the pod', () => {
  const envoyConfig = parse(envoyYamlText()) as {
    admin: { address: { socket_address: { address: string; port_value: number } } };
    static_resources: {
      listeners: { address: { socket_address: { port_value: number } } }[];
      clusters: {
        name: string;
        load_assignment: {
          endpoints: { lb_endpoints: { endpoint: { address: { socket_address: Plain } } }[] }[];
        };
      }[];
    };
  };
  const clusterAddress = (name: string) => {
    const cluster = must(
      envoyConfig.static_resources.clusters.find((c) => c.name === name),
      `envoy.yaml cluster ${name}`,
    );
    return cluster.load_assignment.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address as {
      address: string;
      port_value: number;
    };
  };

  it("declares only Envoy's listener and portcullis' admin port, matching envoy.yaml and SERVE_DEFAULTS", () => {
    const listener = must(envoyConfig.static_resources.listeners[0], 'listener').address.socket_address
      .port_value;
    const adminPort = splitHostPort(SERVE_DEFAULTS.adminAddress).port;
    const declared = podSpec.containers.flatMap((c) =>
      (c.ports ?? []).map((p) => `${c.name}:${p.name}:${p.containerPort}/${p.protocol}`),
    );
    assert.deepEqual(declared.sort(), [`envoy:https:${listener}/TCP`, `portcullis:admin:${adminPort}/TCP`]);
    // The scrape annotations point at the admin port.
    const annotations = gateway.spec?.template.metadata?.annotations ?? {};
    assert.equal(annotations['prometheus.io/port'], String(adminPort));
    assert.equal(annotations['prometheus.io/path'], '/metrics');
  });

  it('portcullis: Check on loopback where envoy.yaml sends it, admin on the pod IP at its default port', () => {
    const grpc = splitHostPort(flag(portcullis, '--grpc-address'));
    const admin = splitHostPort(flag(portcullis, '--admin-address'));
    const cluster = clusterAddress('portcullis');
    assert.equal(grpc.host, '127.0.0.1', 'nothing outside the pod may call Check');
    assert.equal(grpc.port, splitHostPort(SERVE_DEFAULTS.grpcAddress).port);
    assert.deepEqual(
      { host: grpc.host, port: grpc.port },
      { host: cluster.address, port: cluster.port_value },
    );
    // kubelet probes and Prometheus reach the pod IP, never its loopback (deployment.yaml, "Probes").
    assert.equal(admin.host, '0.0.0.0');
    assert.equal(admin.port, splitHostPort(SERVE_DEFAULTS.adminAddress).port);
  });

  it("portcullis' flags and environment are accepted by serve's own parser", () => {
    assert.equal(portcullis.args?.[0], 'serve');
    const flags = {
      catalogFile: flag(portcullis, '--config'),
      grpcAddress: flag(portcullis, '--grpc-address'),
      adminAddress: flag(portcullis, '--admin-address'),
    };
    const env: NodeJS.ProcessEnv = {};
    for (const e of portcullis.env ?? []) env[e.name] = e.value ?? 'redis://from-a-secret:6379';
    const config = resolveServeConfig(flags, env);
    assert.equal(config.drainDelayMs, Number(envValue(portcullis, SERVE_ENV.drainDelayMs)));
    assert.equal(config.shutdownGraceMs, Number(envValue(portcullis, SERVE_ENV.shutdownGraceMs)));
    // Every PORTCULLIS_* variable set is one serve reads (a typo would be silently ignored).
    const known = new Set<string>([...Object.values(SERVE_ENV), 'PORTCULLIS_API_KEY_PEPPER']);
    for (const e of portcullis.env ?? []) {
      if (e.name.startsWith('PORTCULLIS_')) assert.ok(known.has(e.name), `unknown variable ${e.name}`);
    }
  });

  it('probes: portcullis /readyz and /healthz on its admin port; Envoy via exec on its loopback admin', () => {
    const adminPort = splitHostPort(SERVE_DEFAULTS.adminAddress).port;
    const namedPort = (port: number | string | undefined) =>
      typeof port === 'string' ? portcullis.ports?.find((p) => p.name === port)?.containerPort : port;
    for (const [probe, path] of [
      [portcullis.readinessProbe, '/readyz'],
      [portcullis.livenessProbe, '/healthz'],
      [portcullis.startupProbe, '/healthz'],
    ] as const) {
      const get = must(probe?.httpGet, `portcullis probe httpGet ${path}`);
      assert.equal(get.path, path);
      assert.equal(namedPort(get.port), adminPort);
      assert.equal(get.host, undefined, 'kubelet connects to the pod IP');
    }
    const envoyAdmin = envoyConfig.admin.address.socket_address;
    assert.equal(envoyAdmin.address, '127.0.0.1');
    for (const probe of [envoy.readinessProbe, envoy.livenessProbe, envoy.startupProbe]) {
      const command = must(probe?.exec?.command, 'envoy exec probe').join(' ');
      assert.ok(command.includes(`/dev/tcp/127.0.0.1/${envoyAdmin.port_value}`), command);
    }
    const preStop = must(envoy.lifecycle?.preStop?.exec?.command, 'envoy preStop').join(' ');
    assert.ok(preStop.includes(`/dev/tcp/127.0.0.1/${envoyAdmin.port_value}`), preStop);
    assert.ok(preStop.includes('POST /drain_listeners?graceful'), preStop);
  });

  it('mounts: the TLS files envoy.yaml reads, the pepper file, and each Secret key has an example', () => {
    const filenames: string[] = [];
    const walk = (value: unknown) => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (isPlain(value))
        for (const [k, v] of Object.entries(value)) {
          if (k === 'filename' && typeof v === 'string') filenames.push(v);
          else walk(v);
        }
    };
    walk(envoyConfig);
    assert.deepEqual(filenames.sort(), [
      '/etc/envoy/tls/client-ca.crt',
      '/etc/envoy/tls/server.crt',
      '/etc/envoy/tls/server.key',
    ]);
    const secretKeys = new Map<string, string>(); // "secret/key" -> what uses it
    for (const file of filenames) {
      const { volume: name, path } = mountedFile(envoy, file);
      const sources = must(volume(name).projected?.sources, `volume ${name} is projected`);
      const hit = sources.flatMap((s) =>
        (s.secret?.items ?? []).filter((i) => i.path === path).map((i) => `${s.secret?.name}/${i.key}`),
      );
      assert.equal(hit.length, 1, `${file}: one secret item`);
      secretKeys.set(hit[0] as string, file);
    }
    const pepperFile = envValue(portcullis, SERVE_ENV.apiKeyPepperFile);
    const pepper = mountedFile(portcullis, pepperFile);
    const pepperVolume = must(volume(pepper.volume).secret, 'pepper volume is a Secret');
    const pepperItem = must(
      pepperVolume.items?.find((i) => i.path === pepper.path),
      'pepper item',
    );
    secretKeys.set(`${pepperVolume.secretName}/${pepperItem.key}`, pepperFile);
    for (const e of portcullis.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (ref) {
        assert.notEqual(ref.optional, true, `${e.name}: a required Secret`);
        secretKeys.set(`${ref.name}/${ref.key}`, e.name);
      }
    }
    // Every one of them has an example secret-*.yaml with that key, holding a placeholder.
    const examples = REQUIRED.filter((m) => kindOf(m.object) === 'v1/Secret');
    for (const [ref, use] of secretKeys) {
      const [secretName, key] = ref.split('/') as [string, string];
      const example = named<ISecret>('Secret', secretName, examples);
      const value = example.stringData?.[key];
      assert.ok(
        value?.includes('REPLACE-ME'),
        `${ref} (for ${use}): example value is an obvious placeholder`,
      );
    }
    for (const m of examples) assert.match(basename(m.file), /^secret-.+\.yaml$/);
    // A forgotten placeholder pepper cannot run: it is below portcullis' minimum length.
    const examplePepper = named<ISecret>('Secret', pepperVolume.secretName ?? '', examples).stringData?.[
      pepperItem.key
    ];
    assert.ok(Buffer.byteLength(examplePepper ?? '') < MIN_PEPPER_BYTES);
  });

  it('security: non-root, no privilege escalation, read-only root filesystem, no capabilities, RuntimeDefault', () => {
    const deployments = MANIFESTS.filter((m) => kindOf(m.object) === 'apps/v1/Deployment');
    for (const m of deployments) {
      const d = m.object as unknown as IDeployment;
      const name = d.metadata?.name ?? '?';
      // The test-cluster clamd runs its image's root init: documented in optional/clamd.yaml.
      if (name === 'portcullis-clamd') continue;
      const spec = must(d.spec?.template.spec, `${name} pod spec`);
      assert.equal(spec.automountServiceAccountToken, false, `${name}: no API token`);
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
        const where = `${name}/${c.name}`;
        const sc = must(c.securityContext, `${where} securityContext`);
        assert.equal(sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
        const uid = sc.runAsUser ?? spec.securityContext?.runAsUser;
        assert.ok(uid !== undefined && uid > 0, `${where}: a numeric non-root uid`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
        assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${where}: drop ALL`);
        assert.equal(sc.capabilities?.add, undefined, `${where}: adds no capability`);
        assert.equal(sc.privileged ?? false, false, `${where}: not privileged`);
        assert.equal(
          sc.seccompProfile?.type ?? spec.securityContext?.seccompProfile?.type,
          'RuntimeDefault',
          `${where}: seccomp`,
        );
      }
    }
    // The portcullis uid is the Dockerfile's USER.
    const user = /^USER (\d+):(\d+)$/m.exec(readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8'));
    assert.equal(portcullis.securityContext?.runAsUser, Number(user?.[1]));
  });

  it('resources: requests and limits for every container, V8 heap below the memory limit', () => {
    const bytes = (q: string | number | undefined) => {
      const m = /^(\d+)(Mi|Gi)?$/.exec(String(q));
      assert.ok(m, `quantity ${q}`);
      return Number(m[1]) * (m[2] === 'Gi' ? 1024 ** 3 : m[2] === 'Mi' ? 1024 ** 2 : 1);
    };
    const cores = (q: string | number | undefined) =>
      String(q).endsWith('m') ? Number(String(q).slice(0, -1)) / 1000 : Number(q);
    for (const c of podSpec.containers) {
      const { requests, limits } = must(c.resources, `${c.name} resources`);
      for (const r of ['cpu', 'memory']) {
        assert.ok(
          requests?.[r] !== undefined && limits?.[r] !== undefined,
          `${c.name}: ${r} request and limit`,
        );
      }
      assert.ok(bytes(requests?.memory) <= bytes(limits?.memory), `${c.name}: memory request <= limit`);
      assert.ok(cores(requests?.cpu) <= cores(limits?.cpu), `${c.name}: cpu request <= limit`);
    }
    const heapMb = Number(/--max-old-space-size=(\d+)/.exec(envValue(portcullis, 'NODE_OPTIONS'))?.[1]);
    const limit = bytes(portcullis.resources?.limits?.memory);
    assert.ok(heapMb * 1024 ** 2 < limit, 'V8 old space below the memory limit');
    // Node runs the JavaScript on one thread: a limit under one core throttles every Check.
    assert.ok(cores(portcullis.resources?.limits?.cpu) >= 1);
  });

  it('termination: the grace period covers preStop + drain + shutdown grace, and portcullis outlives Envoy', () => {
    const grace = must(podSpec.terminationGracePeriodSeconds, 'terminationGracePeriodSeconds');
    const drainTime = Number(flag(envoy, '--drain-time-s'));
    const envoyPreStop = sleepSeconds(envoy.lifecycle?.preStop?.exec?.command, 'envoy preStop');
    const portcullisPreStop = sleepSeconds(
      portcullis.lifecycle?.preStop?.exec?.command,
      'portcullis preStop',
    );
    const config = resolveServeConfig(
      {},
      {
        [SERVE_ENV.drainDelayMs]: envValue(portcullis, SERVE_ENV.drainDelayMs),
        [SERVE_ENV.shutdownGraceMs]: envValue(portcullis, SERVE_ENV.shutdownGraceMs),
      },
    );
    assert.ok(envoyPreStop >= drainTime, "Envoy's preStop lasts its whole drain");
    assert.ok(portcullisPreStop > envoyPreStop, 'portcullis keeps answering until Envoy is gone');
    const portcullisTotal = portcullisPreStop + (config.drainDelayMs + config.shutdownGraceMs) / 1000;
    assert.ok(grace > portcullisTotal, `grace ${grace}s > portcullis ${portcullisTotal}s`);
    assert.ok(grace > envoyPreStop);
  });
});

describe('deploy/kubernetes: Service, PodDisruptionBudget, NetworkPolicy, kustomization', () => {
  const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
    selector !== undefined &&
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([k, v]) => labels[k] === v);

  it('the Service exposes only the Envoy listener, keeping client addresses', () => {
    const svc = named<IService>('Service', 'partner-gateway');
    assert.ok(selects(svc.spec?.selector, podLabels));
    assert.equal(svc.spec?.externalTrafficPolicy, 'Local');
    const ports = svc.spec?.ports ?? [];
    assert.equal(ports.length, 1);
    const target = ports[0]?.targetPort;
    const listener = envoy.ports?.find((p) => p.name === target || p.containerPort === target);
    assert.equal(listener?.containerPort, 8443);
  });

  it('the PodDisruptionBudget and the NetworkPolicy select the gateway pods', () => {
    const pdb = named<IPodDisruptionBudget>('PodDisruptionBudget', 'partner-gateway');
    assert.ok(selects(pdb.spec?.selector?.matchLabels, podLabels));
    assert.ok((gateway.spec?.replicas ?? 1) > 1, 'a PDB needs more than one replica');
    const np = named<INetworkPolicy>('NetworkPolicy', 'partner-gateway');
    assert.ok(selects(np.spec?.podSelector.matchLabels, podLabels));
    assert.deepEqual(np.spec?.policyTypes, ['Ingress', 'Egress']);
  });

  it('ingress: 8443 from anywhere, the admin port from Prometheus only, nothing else', () => {
    const np = named<INetworkPolicy>('NetworkPolicy', 'partner-gateway');
    const rules = np.spec?.ingress ?? [];
    const byPort = new Map(rules.flatMap((r) => (r.ports ?? []).map((p) => [p.port, r] as const)));
    assert.deepEqual([...byPort.keys()].sort(), [8443, 9090]);
    assert.equal(byPort.get(8443)?.from, undefined, 'partners come from anywhere');
    const admin = must(byPort.get(9090)?.from, 'the admin port has a source restriction');
    assert.ok(admin.length > 0 && admin.every((peer) => peer.podSelector || peer.namespaceSelector));
  });

  it('egress: DNS, Redis and clamd (reaching the optional manifests), HTTPS to public addresses only', () => {
    const np = named<INetworkPolicy>('NetworkPolicy', 'partner-gateway');
    const egress = np.spec?.egress ?? [];
    const ports = egress.flatMap((r) => (r.ports ?? []).map((p) => `${p.port}/${p.protocol}`));
    for (const p of ['53/UDP', '53/TCP', '6379/TCP', '3310/TCP', '443/TCP']) assert.ok(ports.includes(p), p);
    const https = must(
      egress.find((r) => r.ports?.some((p) => p.port === 443)),
      'https egress',
    );
    const except = https.to?.[0]?.ipBlock?.except ?? [];
    for (const cidr of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']) {
      assert.ok(except.includes(cidr), `443 egress excludes ${cidr}`);
    }
    // The optional Redis and clamd are what the egress rules and the Redis URL point at.
    for (const [name, port] of [
      ['portcullis-redis', 6379],
      ['portcullis-clamd', 3310],
    ] as const) {
      const d = named<IDeployment>('Deployment', name);
      const labels = must(d.spec?.template.metadata?.labels, `${name} labels`);
      const rule = egress.find((r) => r.ports?.some((p) => p.port === port));
      assert.ok(selects(rule?.to?.[0]?.podSelector?.matchLabels, labels), `egress to ${name}`);
      const svc = named<IService>('Service', name);
      assert.equal(svc.spec?.ports?.[0]?.port, port);
      assert.ok(selects(svc.spec?.selector, labels));
    }
    const url = new URL(
      named<ISecret>('Secret', 'portcullis-redis').stringData?.url?.replace('REPLACE-ME', 'x') ?? '',
    );
    assert.equal(url.hostname, 'portcullis-redis');
    assert.equal(url.port, '6379');
  });

  it('kustomizations list files that exist: every required manifest, never the example Secrets', () => {
    for (const file of KUSTOMIZATIONS) {
      const k = parse(readFileSync(file, 'utf8')) as {
        apiVersion: string;
        kind: string;
        resources: string[];
      };
      assert.equal(k.apiVersion, 'kustomize.config.k8s.io/v1beta1');
      assert.equal(k.kind, 'Kustomization');
      const dir = dirname(file);
      const listed = k.resources.map((r) => join(dir, r));
      for (const r of listed) assert.ok(MANIFEST_FILES.includes(r), `${rel(file)}: ${r} exists`);
      const expected = MANIFEST_FILES.filter((f) => dirname(f) === dir && !basename(f).startsWith('secret-'));
      assert.deepEqual(listed.sort(), expected.sort(), `${rel(file)} lists every manifest but the secrets`);
    }
    assert.deepEqual(KUSTOMIZATIONS.map(rel).sort(), [
      'deploy/kubernetes/kustomization.yaml',
      'deploy/kubernetes/optional/kustomization.yaml',
    ]);
  });
});

// --- probes against real servers -----------------------------------------------------------------

describe('probes and hooks against real servers', () => {
  it('the real portcullis answers the probe paths on its admin server', async (t) => {
    const { adminUrl } = await startTestApp(t, {});
    for (const probe of [portcullis.readinessProbe, portcullis.livenessProbe, portcullis.startupProbe]) {
      const res = await fetch(`${adminUrl}${probe?.httpGet?.path}`);
      assert.equal(res.status, 200, `${probe?.httpGet?.path}`);
    }
  });

  it("Envoy's probes and preStop speak HTTP to its admin port (real bash, fake admin server)", async (t) => {
    const bash = spawnSync('bash', ['--version']);
    if (bash.error) return t.skip('bash is not installed');
    const seen: string[] = [];
    let status = 200;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(status, { connection: 'close' }).end(status === 200 ? 'LIVE\n' : 'PRE_INITIALIZING\n');
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    t.after(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const run = (command: readonly string[] | undefined) => {
      const [shell, flagC, script] = must(command, 'exec command');
      assert.equal(shell, '/bin/bash');
      const adminPort = (
        parse(envoyYamlText()) as { admin: { address: { socket_address: { port_value: number } } } }
      ).admin.address.socket_address.port_value;
      const local = (script ?? '').replaceAll(
        `/dev/tcp/127.0.0.1/${adminPort}`,
        `/dev/tcp/127.0.0.1/${port}`,
      );
      // The preStop's final sleep is the drain wait; not here.
      const quick = local.replace(/sleep\s+\d+\s*$/, 'sleep 0');
      return new Promise<number>((done) => {
        const child = spawnAsync('bash', [flagC ?? '-c', quick]);
        child.on('exit', (code) => done(code ?? -1));
      });
    };
    assert.equal(await run(envoy.readinessProbe?.exec?.command), 0, 'ready when /ready is 200');
    assert.equal(await run(envoy.livenessProbe?.exec?.command), 0, 'alive when admin answers');
    status = 503;
    assert.notEqual(await run(envoy.readinessProbe?.exec?.command), 0, 'not ready when /ready is 503');
    assert.equal(await run(envoy.livenessProbe?.exec?.command), 0, 'still alive when /ready is 503');
    status = 200;
    assert.equal(await run(envoy.lifecycle?.preStop?.exec?.command), 0);
    assert.deepEqual(seen, [
      'GET /ready',
      'GET /server_info',
      'GET /ready',
      'GET /server_info',
      'POST /drain_listeners?graceful',
    ]);
    await new Promise<void>((done) => server.close(() => done()));
    assert.notEqual(await run(envoy.readinessProbe?.exec?.command), 0, 'not ready when admin is down');
  });
});

// --- Prometheus rules and the Grafana dashboard ---------------------------------------------------

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (
  parse(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] }
).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert);

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: { refId: string; expr: string }[];
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
};
const dashboardExprs = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ where: `panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr })),
);
const templateExprs = dashboard.templating.list
  .filter((v) => v.type === 'query')
  .map((v) => {
    const q = v.query as string | { query: string };
    return { where: `variable ${v.name}`, expr: templateQueryExpr(typeof q === 'string' ? q : q.query) };
  });

/** Grafana's variables replaced by values promtool can parse. */
function grafanaToPromQL(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '6h')
    .replace(/\$\{?\w+\}?/g, '.*');
}

describe('deploy/prometheus and deploy/grafana', () => {
  it('promtool check rules', () => {
    const { status, output } = promtool(['check', 'rules', RULES]);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS: \d+ rules found/);
  });

  it('promtool test rules: every alert fires in a case and stays quiet in another', () => {
    const tests = parse(readFileSync(RULES_TEST, 'utf8')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      assert.ok(
        mine.some((c) => c.exp_alerts.length > 0),
        `${a.alert}: a firing case`,
      );
      assert.ok(
        mine.some((c) => c.exp_alerts.length === 0),
        `${a.alert}: a quiet case`,
      );
    }
    const { status, output } = promtool(['test', 'rules', RULES_TEST]);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS/);
  });

  it('every dashboard query and variable is valid PromQL (promtool)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-dashboard-'));
    try {
      const file = join(dir, 'dashboard-queries.yaml');
      const group = [...dashboardExprs, ...templateExprs].map((q, i) => ({
        record: `dashboard:query_${i}`,
        expr: grafanaToPromQL(q.expr),
      }));
      writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules: group }] }));
      const { status, output } = promtool(['check', 'rules', file]);
      assert.equal(status, 0, output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every metric and matcher label in the rules and the dashboard is exported (or declared-soon)', async (t) => {
    const { app, adminUrl } = await startTestApp(t, {});
    const exported = new Map<string, Set<string>>();
    // The names, from the real exposition format...
    const text = await (await fetch(`${adminUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (!m?.[1]) continue;
      const suffixes =
        m[2] === 'histogram'
          ? ['_bucket', '_sum', '_count']
          : m[2] === 'summary'
            ? ['', '_sum', '_count']
            : [''];
      for (const s of suffixes) exported.set(`${m[1]}${s}`, new Set(s === '_bucket' ? ['le'] : []));
    }
    // ...and their label names, from the registry (series that saw no sample yet have none).
    for (const metric of app.metrics.registry.getMetricsAsArray() as unknown as {
      name: string;
      labelNames?: string[];
    }[]) {
      for (const [name, labels] of exported) {
        if (name === metric.name || name.startsWith(`${metric.name}_`)) {
          for (const l of metric.labelNames ?? []) labels.add(l);
        }
      }
    }
    assert.ok(exported.has('portcullis_decisions_total'));
    assert.ok(exported.has('portcullis_process_resident_memory_bytes'), 'default process metrics');

    for (const soon of Object.keys(DECLARED_SOON)) {
      assert.ok(!exported.has(soon), `${soon} is exported now: remove it from DECLARED_SOON`);
    }
    const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    const uses = [
      ...rules.map((r) => ({ where: `rule ${r.record ?? r.alert}`, expr: r.expr })),
      ...dashboardExprs,
      ...templateExprs,
    ];
    const problems: string[] = [];
    let count = 0;
    for (const use of uses) {
      for (const s of selectors(use.expr)) {
        count++;
        if (recorded.has(s.metric)) continue;
        const labels =
          exported.get(s.metric) ?? (DECLARED_SOON[s.metric] ? new Set(DECLARED_SOON[s.metric]) : null);
        if (!labels) {
          problems.push(`${use.where}: ${s.metric} is not a metric portcullis exports`);
          continue;
        }
        for (const l of s.labels) {
          if (!labels.has(l) && !TARGET_LABELS.includes(l))
            problems.push(`${use.where}: ${s.metric} has no label ${l}`);
        }
      }
    }
    assert.deepEqual(problems, [], problems.join('\n'));
    assert.ok(count > 40, `${count} selectors checked`);
  });

  it('every alert has a severity, a summary, a description and a runbook in docs/operations.md', () => {
    const anchors = new Set(
      readFileSync(OPERATIONS_DOC, 'utf8')
        .split('\n')
        .filter((l) => /^#{1,6} /.test(l))
        .map((l) =>
          l
            .replace(/^#+ /, '')
            .trim()
            .toLowerCase()
            .replace(/[^\p{L}\p{N} _-]/gu, '')
            .replace(/ /g, '-'),
        ),
    );
    assert.ok(alerts.length >= 10);
    for (const a of alerts) {
      assert.match(a.labels?.severity ?? '', /^(critical|warning|info)$/, `${a.alert}: severity`);
      assert.ok(a.annotations?.summary && a.annotations.description, `${a.alert}: summary and description`);
      const url = a.annotations?.runbook_url ?? '';
      const [base, anchor] = url.split('#');
      assert.equal(base, RUNBOOK_BASE, `${a.alert}: runbook_url base`);
      assert.equal(anchor, a.alert?.toLowerCase(), `${a.alert}: anchor named after the alert`);
      assert.ok(anchors.has(anchor ?? ''), `${a.alert}: docs/operations.md has a "${a.alert}" section`);
    }
  });

  it('the dashboard: unique panel ids, a data source variable, a query in every panel', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique ids');
    assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'));
    for (const p of dashboard.panels) {
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel ${p.id} fits the grid`);
      if (p.type === 'row') continue;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
      assert.equal(p.datasource?.uid, '${datasource}', `panel ${p.id} uses the data source variable`);
      assert.ok(
        (p.targets ?? []).length > 0 && p.targets?.every((t) => t.expr.trim()),
        `panel ${p.id} queries`,
      );
    }
    // The questions the dashboard must answer, by the metric that answers them.
    const all = dashboardExprs.map((q) => q.expr).join('\n');
    for (const metric of [
      'portcullis_decisions_total',
      'portcullis_quota_usage_ratio',
      'portcullis_scan_results_total',
      'portcullis_stage_duration_seconds_bucket',
      'portcullis_check_duration_seconds_bucket',
      'portcullis_quota_store_state',
      'portcullis_jwks_age_seconds',
      'portcullis_policy_info',
    ]) {
      assert.ok(all.includes(metric), `the dashboard shows ${metric}`);
    }
  });
});

describe('the PromQL scanner', () => {
  it('finds metric names and matcher labels, skipping functions, keywords, label lists and variables', () => {
    const found = selectors(
      'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job", x!="y,z"}[$__rate_interval])))' +
        ' / on (job) group_left (le) count without (i) (b) and bool c:rec:rate5m offset 30m or d == +Inf' +
        ' unless topk(5, e{s="}"})',
    );
    assert.deepEqual(found, [
      { metric: 'a_bucket', labels: ['job', 'x'] },
      { metric: 'b', labels: [] },
      { metric: 'c:rec:rate5m', labels: [] },
      { metric: 'd', labels: [] },
      { metric: 'e', labels: ['s'] },
    ]);
    assert.equal(templateQueryExpr('label_values(m{job=~"$job"}, partner)'), 'm{job=~"$job"}');
  });
});
