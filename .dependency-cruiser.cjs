// The layering of src/, checked by `make lint` (docs/architecture.md draws it). A violation fails
// the lint: fix the import, or change this file together with docs/architecture.md.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'No import cycles in src/, type-only imports included.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'base-imports-nothing-above',
      severity: 'error',
      comment:
        'The base (src/*.ts but the wiring app.ts and runtime.ts; net/) is shared by every layer: it imports no layer.',
      from: { path: '^src/(net/|[^/]+[.]ts$)', pathNot: '^src/(app|runtime)[.]ts$' },
      to: {
        path: '^src/((pipeline|envoy|cli|policy|policy-tools|observability|identity|quota|content)/|(app|runtime)[.]ts$)',
      },
    },
    {
      name: 'capabilities-below-the-pipeline',
      severity: 'error',
      comment:
        'identity/, quota/, content/ and admission/ are capabilities: they never import the pipeline, the edge (envoy/) or the command line.',
      from: { path: '^src/(identity|quota|content|admission)/' },
      to: { path: '^src/(pipeline|envoy|cli)/' },
    },
    {
      name: 'capabilities-apart',
      severity: 'error',
      comment: 'identity/, quota/, content/ and admission/ never import one another.',
      from: { path: '^src/(identity|quota|content|admission)/' },
      to: { path: '^src/(identity|quota|content|admission)/', pathNot: '^src/$1/' },
    },
    {
      name: 'catalog-below-the-pipeline',
      severity: 'error',
      comment: 'policy/ is the catalog only: it never imports the pipeline, observability/ or the policy tools.',
      from: { path: '^src/policy/' },
      to: { path: '^src/(pipeline|observability|policy-tools)/' },
    },
    {
      name: 'policy-tools-on-top',
      severity: 'error',
      comment: 'The policy tools (test, diff, harness) sit above the pipeline: only cli/ imports them.',
      from: { path: '^src/', pathNot: '^src/(cli|policy-tools)/' },
      to: { path: '^src/policy-tools/' },
    },
    {
      name: 'runtime-without-listeners',
      severity: 'error',
      comment:
        'Building a runtime (runtime.ts, and the policy tools on it) starts no listener: no app.ts, no gRPC server, no admin server.',
      from: { path: '^src/(runtime[.]ts$|policy-tools/)' },
      to: { path: '^src/(app[.]ts$|envoy/(listener|server|client)[.]ts$|observability/admin[.]ts$)' },
    },
    {
      name: 'wire-at-the-edge',
      severity: 'error',
      comment: 'Only envoy/ imports gRPC and the protobuf codec packages.',
      from: { path: '^src/', pathNot: '^src/envoy/' },
      to: { path: '(^|/)node_modules/(@grpc/grpc-js|@grpc/proto-loader|grpc-health-check|protobufjs)/' },
    },
    {
      name: 'resolvable',
      severity: 'error',
      comment: 'Every import resolves (an unresolved one would escape the rules above).',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // TypeScript ESM: `./x.js` in an import names `./x.ts`; the tsconfig makes the resolver map it.
    tsConfig: { fileName: 'tsconfig.json' },
    // Type-only imports count: a cycle of types is still a cycle between modules.
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.json'],
    },
  },
};
