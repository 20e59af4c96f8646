// Rules: CEL expressions (@bufbuild/cel) over one documented, stable input, compiled when the
// catalog loads. A rule whose expression is true applies its action (deny with its message, or
// allow: stop evaluating further rules). Errors found at load: syntax, unknown variables, operators
// or functions applied to the wrong types, a non-boolean result. A runtime error (e.g. a header the
// expression indexes is absent) fails safe in the authorize stage: a deny rule counts as applying,
// an allow rule as not applying. It never reaches the route's on_error.
//
// The input (docs/configuration.md#rules lists it; keep the two in step):
//   method, path, host, route, source_ip, content_type: string
//   headers: map<string, string>          lower-case names, as Envoy sends them
//   query: map<string, list<string>>
//   body_bytes: int
//   partner, partner_name, application, user, principal: string ('' when none)
//   scopes: list<string>
//   claims: map<string, dyn>              the token's claims ({} without a token)
//   credentials: list<string>             'mtls', 'jwt', 'api_key'
//   now: int (epoch seconds), hour: int (0-23, UTC), weekday: int (0 = Sunday, UTC)
import { createRequire } from 'node:module';

type Cel = typeof import('@bufbuild/cel');

let loaded: { cel: Cel; env: ReturnType<Cel['celEnv']> } | undefined;

/**
 * The CEL library and our environment, loaded on the first rule: it takes ~0.1 s to load, which a
 * catalog without rules should not pay at start-up (its CommonJS build loads synchronously).
 */
function cel(): { cel: Cel; env: ReturnType<Cel['celEnv']> } {
  if (loaded) return loaded;
  const lib = createRequire(import.meta.url)('@bufbuild/cel') as Cel;
  loaded = { cel: lib, env: environment(lib) };
  return loaded;
}

function environment({ CelScalar, celEnv, listType, mapType }: Cel) {
  const DYN = { kind: 'dyn' } as unknown as typeof CelScalar.STRING;
  return celEnv({
    variables: {
      method: CelScalar.STRING,
      path: CelScalar.STRING,
      host: CelScalar.STRING,
      route: CelScalar.STRING,
      source_ip: CelScalar.STRING,
      content_type: CelScalar.STRING,
      headers: mapType(CelScalar.STRING, CelScalar.STRING),
      query: mapType(CelScalar.STRING, listType(CelScalar.STRING)),
      body_bytes: CelScalar.INT,
      partner: CelScalar.STRING,
      partner_name: CelScalar.STRING,
      application: CelScalar.STRING,
      user: CelScalar.STRING,
      principal: CelScalar.STRING,
      scopes: listType(CelScalar.STRING),
      claims: mapType(CelScalar.STRING, DYN),
      credentials: listType(CelScalar.STRING),
      now: CelScalar.INT,
      hour: CelScalar.INT,
      weekday: CelScalar.INT,
    },
  });
}

export interface RuleInput {
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly route: string;
  readonly source_ip: string;
  readonly content_type: string;
  readonly headers: ReadonlyMap<string, string>;
  readonly query: ReadonlyMap<string, readonly string[]>;
  readonly body_bytes: bigint;
  readonly partner: string;
  readonly partner_name: string;
  readonly application: string;
  readonly user: string;
  readonly principal: string;
  readonly scopes: readonly string[];
  readonly claims: ReadonlyMap<string, unknown>;
  readonly credentials: readonly string[];
  readonly now: bigint;
  readonly hour: bigint;
  readonly weekday: bigint;
}

/** Keeps evaluation cost bounded: CEL has no loops beyond macros over the (bounded) input. */
export const MAX_EXPRESSION_LENGTH = 2048;

export interface CompiledRule {
  readonly name: string;
  readonly action: 'deny' | 'allow';
  readonly message: string;
  readonly dryRun: boolean;
  /** true = the rule applies; throws (an Error naming the rule) on a runtime error. */
  evaluate(input: RuleInput): boolean;
}

export interface RuleSpec {
  readonly name: string;
  readonly when: string;
  readonly action: 'deny' | 'allow';
  readonly message: string;
  readonly dryRun: boolean;
}

/** Errors that mean the expression is wrong whatever the request: reported at load. */
const LOAD_ERRORS = /no matching overload|unresolved attribute|undeclared reference|unknown function/i;

/** Compiles a rule; returns an error text for the catalog loader instead of throwing. */
export function compileRule(spec: RuleSpec): CompiledRule | string {
  if (spec.when.length > MAX_EXPRESSION_LENGTH)
    return `expression longer than ${MAX_EXPRESSION_LENGTH} characters`;
  const { cel: lib, env } = cel();
  const { isCelError } = lib;
  let run: (input: RuleInput) => unknown;
  try {
    run = lib.plan(env, lib.parse(spec.when)) as unknown as (input: RuleInput) => unknown;
  } catch (err: unknown) {
    return `CEL: ${err instanceof Error ? err.message : String(err)}`;
  }
  // A trial run on a neutral input finds type errors, unknown names and non-boolean results now,
  // not on the first partner request. Data-dependent errors (an absent key) are left to runtime.
  const trial = run(SAMPLE);
  if (isCelError(trial)) {
    const message = String((trial as { message?: string }).message ?? trial);
    if (LOAD_ERRORS.test(message)) return `CEL: ${message}`;
  } else if (typeof trial !== 'boolean') {
    return `CEL: the expression must be a bool, got ${typeof trial === 'bigint' ? 'int' : typeof trial}`;
  }
  return {
    name: spec.name,
    action: spec.action,
    message: spec.message,
    dryRun: spec.dryRun,
    evaluate(input) {
      const result = run(input);
      if (isCelError(result)) {
        throw new Error(`rule ${spec.name}: ${String((result as { message?: string }).message ?? result)}`);
      }
      if (typeof result !== 'boolean') throw new Error(`rule ${spec.name}: result is not a bool`);
      return result;
    },
  };
}

const SAMPLE: RuleInput = Object.freeze({
  method: 'GET',
  path: '/',
  host: 'example.com',
  route: 'r',
  source_ip: '192.0.2.1',
  content_type: '',
  headers: new Map<string, string>(),
  query: new Map<string, readonly string[]>(),
  body_bytes: 0n,
  partner: '',
  partner_name: '',
  application: '',
  user: '',
  principal: '',
  scopes: [],
  claims: new Map<string, unknown>(),
  credentials: [],
  now: 0n,
  hour: 0n,
  weekday: 0n,
});
