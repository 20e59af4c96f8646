// The two ConfigMaps of deploy/kubernetes/ embed files of this repository verbatim: envoy.yaml and
// the example catalog (with the JWKS file it names). This module renders them from those files, so
// the contract test can demand that the manifests on disk are exactly what it renders, and so they
// can be regenerated after an edit:
//
//   node --import tsx test/contract/deploy-configmaps.ts --write
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from './official-protos.js';

export const REGENERATE = 'node --import tsx test/contract/deploy-configmaps.ts --write';

export interface EmbeddedFile {
  /** The ConfigMap key. */
  readonly key: string;
  /** The repository file it holds, relative to the project root. */
  readonly source: string;
}

export interface ConfigMapSpec {
  /** Relative to the project root. */
  readonly manifest: string;
  readonly name: string;
  readonly header: readonly string[];
  readonly files: readonly EmbeddedFile[];
}

const LABELS = ['    app.kubernetes.io/name: partner-gateway', '    app.kubernetes.io/part-of: portcullis'];

export const CONFIGMAPS: readonly ConfigMapSpec[] = [
  {
    manifest: 'deploy/kubernetes/configmap-envoy.yaml',
    name: 'partner-gateway-envoy',
    header: [
      "Envoy's bootstrap for the partner gateway: envoy/envoy.yaml, byte for byte.",
      'Mounted as a directory at /etc/envoy/config (deployment.yaml); Envoy reads it only at start,',
      'so apply a change with `kubectl rollout restart deployment/partner-gateway`.',
    ],
    files: [{ key: 'envoy.yaml', source: 'envoy/envoy.yaml' }],
  },
  {
    manifest: 'deploy/kubernetes/configmap-catalog.yaml',
    name: 'partner-gateway-catalog',
    header: [
      'The policy catalog portcullis serves: examples/catalog.yaml and the files it names',
      '(keys/jwks.json, schemas/order.json: laid out by the volume items in deployment.yaml), byte for byte.',
      'Replace them with your own catalog (validate it first: `portcullis policy validate FILE`).',
      'Mounted as a directory, not with subPath, so an edit reaches the pod: kubelet swaps the',
      'volume\'s "..data" symlink within its sync period (about a minute).',
    ],
    files: [
      { key: 'catalog.yaml', source: 'examples/catalog.yaml' },
      { key: 'jwks.json', source: 'examples/keys/jwks.json' },
      { key: 'order.schema.json', source: 'examples/schemas/order.json' },
    ],
  },
];

/** A YAML literal block scalar holding `text` exactly, as the value of `key` at 2 spaces. */
export function literalBlock(key: string, text: string): string {
  const unsafe = [...text].some((ch) => {
    const code = ch.charCodeAt(0);
    return (code < 0x20 && ch !== '\n') || code === 0x7f || code === 0xfeff;
  });
  if (unsafe) {
    throw new Error(`${key}: carriage returns, tabs and control characters do not survive a YAML block`);
  }
  const body = text.replace(/\n+$/, '');
  const trailing = text.length - body.length;
  // Chomping: "|" keeps one final newline, "|-" none, "|+" all of them.
  const chomp = trailing === 1 ? '' : trailing === 0 ? '-' : '+';
  // An indentation indicator is needed when the first line starts with a space.
  const indicator = body.startsWith(' ') ? '4' : '';
  const lines = body.split('\n').map((line) => (line === '' ? '' : `    ${line}`));
  const extra = trailing > 1 ? '\n'.repeat(trailing - 1) : '';
  return `  ${key}: |${indicator}${chomp}\n${lines.join('\n')}\n${extra}`;
}

export function renderConfigMap(spec: ConfigMapSpec, root = PROJECT_ROOT): string {
  const header = [
    ...spec.header.map((line) => `# ${line}`),
    '#',
    `# GENERATED: do not edit. Edit ${spec.files.map((f) => f.source).join(' and ')}, then run`,
    `#   ${REGENERATE}`,
    '# test/contract/deploy.test.ts fails while this file and its sources differ.',
  ];
  const data = spec.files.map((file) =>
    literalBlock(file.key, readFileSync(join(root, file.source), 'utf8')),
  );
  return [
    ...header,
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    `  name: ${spec.name}`,
    '  labels:',
    ...LABELS,
    'data:',
    data.join(''),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const write = process.argv.includes('--write');
  let stale = 0;
  for (const spec of CONFIGMAPS) {
    const path = join(PROJECT_ROOT, spec.manifest);
    const text = renderConfigMap(spec);
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {}
    if (current === text) continue;
    if (write) {
      writeFileSync(path, text);
      process.stdout.write(`wrote ${spec.manifest}\n`);
    } else {
      stale++;
      process.stdout.write(`stale: ${spec.manifest}\n`);
    }
  }
  if (stale > 0) {
    process.stdout.write(`run: ${REGENERATE}\n`);
    process.exitCode = 1;
  }
}
