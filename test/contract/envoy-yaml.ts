// A strict validator for Envoy YAML/JSON config against the official protobufjs types.
// Envoy parses YAML as proto3 JSON; this walks the same shape and reports every field name, enum
// value, scalar type, oneof, Duration and Any "@type" that Envoy would reject (or silently ignore,
// like a null). It does not evaluate protoc-gen-validate rules (required fields, ranges).
import protobuf from 'protobufjs';

export interface ValidateOptions {
  /** Also report fields and enum values marked `deprecated` (Envoy warns, some versions reject). */
  rejectDeprecated?: boolean;
}

interface Context {
  root: protobuf.Root;
  options: ValidateOptions;
  errors: string[];
}

const ANY_PREFIX = 'type.googleapis.com/';
const DURATION = /^-?\d+(\.\d{1,9})?s$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const DECIMAL_INT = /^-?\d+$/;

const INT_RANGES: Record<string, readonly [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

/** JSON form of each wrapper type: the bare scalar of its `value` field. */
const WRAPPERS: Record<string, string> = {
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.DoubleValue': 'double',
};

type Plain = Record<string, unknown>;

function isPlainObject(value: unknown): value is Plain {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'object') return 'object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

const bare = (fullName: string): string => fullName.replace(/^\./, '');
const join = (path: string, key: string): string => (path ? `${path}.${key}` : key);
// Map keys such as "envoy.filters.http.ext_authz" contain dots: quote them to keep paths unambiguous.
const joinKey = (path: string, key: string): string =>
  /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? join(path, key) : `${path}[${JSON.stringify(key)}]`;
const shown = (path: string): string => path || '(root)';

function fail(ctx: Context, path: string, message: string): void {
  ctx.errors.push(`${shown(path)}: ${message}`);
}

/**
 * Validates `value` (parsed YAML/JSON) against message `typeName` of `root`. Returns one
 * `path: message` string per problem; an empty list means valid.
 */
export function validateAgainstProto(
  root: protobuf.Root,
  typeName: string,
  value: unknown,
  path = '',
  options: ValidateOptions = {},
): string[] {
  const ctx: Context = { root, options, errors: [] };
  const type = root.lookup(typeName);
  if (!(type instanceof protobuf.Type)) {
    fail(ctx, path, `unknown message type ${typeName}`);
    return ctx.errors;
  }
  validateMessage(ctx, type, value, path);
  return ctx.errors;
}

function validateMessage(ctx: Context, type: protobuf.Type, value: unknown, path: string): void {
  if (validateWellKnown(ctx, type, value, path)) return;
  if (value === null) {
    fail(ctx, path, `null is not a ${bare(type.fullName)} (empty YAML value? write {} for an empty message)`);
    return;
  }
  if (!isPlainObject(value)) {
    fail(ctx, path, `expected an object for ${bare(type.fullName)}, got ${describeValue(value)}`);
    return;
  }
  validateObjectFields(ctx, type, value, path);
}

function validateObjectFields(ctx: Context, type: protobuf.Type, value: Plain, path: string): void {
  for (const [key, fieldValue] of Object.entries(value)) {
    const field = type.fields[key];
    if (!field) {
      fail(ctx, join(path, key), `unknown field in ${bare(type.fullName)}`);
      continue;
    }
    if (ctx.options.rejectDeprecated && field.options?.deprecated === true) {
      fail(ctx, join(path, key), `field is deprecated in ${bare(type.fullName)}`);
    }
    validateField(ctx, field, fieldValue, join(path, key));
  }
  validateOneofs(ctx, type, value, path);
}

function validateOneofs(ctx: Context, type: protobuf.Type, value: Plain, path: string): void {
  for (const oneof of type.oneofsArray) {
    const present = oneof.oneof.filter((name) => name in value);
    if (present.length > 1) {
      fail(ctx, path, `oneof "${oneof.name}" allows one member, got ${present.join(', ')}`);
    }
  }
}

function validateField(ctx: Context, field: protobuf.FieldBase, value: unknown, path: string): void {
  if (field instanceof protobuf.MapField) {
    validateMap(ctx, field, value, path);
  } else if (field.repeated) {
    validateRepeated(ctx, field, value, path);
  } else {
    validateSingle(ctx, field, value, path);
  }
}

function validateMap(ctx: Context, field: protobuf.MapField, value: unknown, path: string): void {
  if (!isPlainObject(value)) {
    fail(ctx, path, `expected an object (map<${field.keyType}, ${field.type}>), got ${describeValue(value)}`);
    return;
  }
  for (const [key, entry] of Object.entries(value)) {
    const keyError = mapKeyError(field.keyType, key);
    if (keyError) fail(ctx, joinKey(path, key), keyError);
    validateSingle(ctx, field, entry, joinKey(path, key));
  }
}

function mapKeyError(keyType: string, key: string): string | undefined {
  if (keyType === 'string') return undefined;
  if (keyType === 'bool') return key === 'true' || key === 'false' ? undefined : `map key must be true/false`;
  return scalarError(keyType, key);
}

function validateRepeated(ctx: Context, field: protobuf.FieldBase, value: unknown, path: string): void {
  if (!Array.isArray(value)) {
    fail(ctx, path, `expected a list (repeated ${fieldTypeName(field)}), got ${describeValue(value)}`);
    return;
  }
  value.forEach((item, i) => {
    validateSingle(ctx, field, item, `${path}[${i}]`);
  });
}

function fieldTypeName(field: protobuf.FieldBase): string {
  return field.resolvedType ? bare(field.resolvedType.fullName) : field.type;
}

function validateSingle(ctx: Context, field: protobuf.FieldBase, value: unknown, path: string): void {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    validateMessage(ctx, resolved, value, path);
  } else if (resolved instanceof protobuf.Enum) {
    validateEnum(ctx, resolved, value, path);
  } else {
    const error = scalarError(field.type, value);
    if (error) fail(ctx, path, error);
  }
}

function validateEnum(ctx: Context, type: protobuf.Enum, value: unknown, path: string): void {
  const name = typeof value === 'number' ? type.valuesById[value] : value;
  if (typeof name !== 'string' || type.values[name] === undefined) {
    fail(ctx, path, `invalid value ${describeValue(value)} for enum ${bare(type.fullName)}`);
    return;
  }
  if (ctx.options.rejectDeprecated && type.valuesOptions?.[name]?.deprecated === true) {
    fail(ctx, path, `enum value ${name} is deprecated in ${bare(type.fullName)}`);
  }
}

/** Checks a proto3-JSON scalar; returns an error message or undefined. */
function scalarError(type: string, value: unknown): string | undefined {
  switch (type) {
    case 'string':
      return typeof value === 'string' ? undefined : `expected string, got ${describeValue(value)}`;
    case 'bool':
      return typeof value === 'boolean' ? undefined : `expected bool, got ${describeValue(value)}`;
    case 'double':
    case 'float':
      return isJsonNumber(value) ? undefined : `expected ${type}, got ${describeValue(value)}`;
    case 'bytes':
      return typeof value === 'string' && BASE64.test(value)
        ? undefined
        : `expected base64 bytes, got ${describeValue(value)}`;
    default:
      return integerError(type, value);
  }
}

function isJsonNumber(value: unknown): boolean {
  if (typeof value === 'number') return Number.isFinite(value);
  return value === 'NaN' || value === 'Infinity' || value === '-Infinity';
}

/** Integers may be JSON numbers or decimal strings (proto3 JSON writes 64-bit ones as strings). */
function integerError(type: string, value: unknown): string | undefined {
  const range = INT_RANGES[type];
  if (!range) return `unsupported scalar type ${type}`;
  const asBigInt = toBigInt(value);
  if (asBigInt === undefined) return `expected ${type}, got ${describeValue(value)}`;
  const [min, max] = range;
  return asBigInt < min || asBigInt > max ? `${describeValue(value)} is out of range for ${type}` : undefined;
}

function toBigInt(value: unknown): bigint | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (typeof value === 'string' && DECIMAL_INT.test(value)) return BigInt(value);
  return undefined;
}

/** Types whose JSON form is not an object of their fields. Returns true when it handled `type`. */
function validateWellKnown(ctx: Context, type: protobuf.Type, value: unknown, path: string): boolean {
  const name = type.fullName;
  const wrapped = WRAPPERS[name];
  if (wrapped !== undefined) {
    const error = scalarError(wrapped, value);
    if (error) fail(ctx, path, `${error} (${bare(name)} is written as a bare ${wrapped})`);
    return true;
  }
  const check = WELL_KNOWN[name];
  if (check === undefined) return false;
  check(ctx, value, path);
  return true;
}

const WELL_KNOWN: Record<string, (ctx: Context, value: unknown, path: string) => void> = {
  '.google.protobuf.Duration': (ctx, value, path) => {
    if (typeof value !== 'string' || !DURATION.test(value)) {
      fail(
        ctx,
        path,
        `invalid google.protobuf.Duration ${describeValue(value)} (expected e.g. "0.25s" or "5s")`,
      );
    }
  },
  '.google.protobuf.Timestamp': (ctx, value, path) => {
    if (typeof value !== 'string' || !TIMESTAMP.test(value)) {
      fail(ctx, path, `invalid google.protobuf.Timestamp ${describeValue(value)} (expected RFC 3339)`);
    }
  },
  '.google.protobuf.Struct': (ctx, value, path) => {
    if (!isPlainObject(value))
      fail(ctx, path, `expected an object for google.protobuf.Struct, got ${describeValue(value)}`);
  },
  '.google.protobuf.ListValue': (ctx, value, path) => {
    if (!Array.isArray(value))
      fail(ctx, path, `expected a list for google.protobuf.ListValue, got ${describeValue(value)}`);
  },
  // Any JSON value at all, including null.
  '.google.protobuf.Value': () => {},
  '.google.protobuf.Empty': (ctx, value, path) => {
    if (!isPlainObject(value) || Object.keys(value).length > 0) {
      fail(ctx, path, `expected {} for google.protobuf.Empty, got ${describeValue(value)}`);
    }
  },
  '.google.protobuf.Any': validateAny,
};

/** `{"@type": "type.googleapis.com/<message>", ...fields of that message}`. */
function validateAny(ctx: Context, value: unknown, path: string): void {
  if (!isPlainObject(value)) {
    fail(ctx, path, `expected an object for google.protobuf.Any, got ${describeValue(value)}`);
    return;
  }
  const { '@type': typeUrl, ...rest } = value;
  const anyPath = join(path, '@type');
  if (typeof typeUrl !== 'string') {
    fail(ctx, anyPath, 'google.protobuf.Any needs "@type": type.googleapis.com/<message full name>');
    return;
  }
  if (!typeUrl.startsWith(ANY_PREFIX)) {
    fail(ctx, anyPath, `@type must start with ${ANY_PREFIX}, got ${JSON.stringify(typeUrl)}`);
    return;
  }
  const target = ctx.root.lookup(typeUrl.slice(ANY_PREFIX.length));
  if (!(target instanceof protobuf.Type)) {
    fail(ctx, anyPath, `unknown @type ${JSON.stringify(typeUrl)} (no such message in the official protos)`);
    return;
  }
  validatePacked(ctx, target, rest, path);
}

/** Well-known types inside an Any carry their JSON form under "value"; others inline their fields. */
function validatePacked(ctx: Context, target: protobuf.Type, rest: Plain, path: string): void {
  const special = WRAPPERS[target.fullName] !== undefined || WELL_KNOWN[target.fullName] !== undefined;
  if (!special) {
    validateMessage(ctx, target, rest, path);
    return;
  }
  const { value, ...extra } = rest;
  for (const key of Object.keys(extra))
    fail(ctx, join(path, key), `unknown field in Any of ${bare(target.fullName)}`);
  validateMessage(ctx, target, value, join(path, 'value'));
}
