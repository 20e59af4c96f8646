// Regular expressions from the catalog (file name rules, JSON Schema `pattern` and
// `patternProperties`) run on RE2 (re2js): matching takes time linear in the input, so no pattern
// and no partner input can block the event loop by backtracking. RE2 has no backreferences or
// lookaround; a pattern that needs them is refused when the catalog loads.
import { RE2JS } from 're2js';

/** A compiled catalog pattern. `test` finds a match anywhere, as RegExp#test does without flags. */
export interface LinearRegExp {
  readonly source: string;
  test(text: string): boolean;
  toString(): string;
}

/** Compiles `pattern` (RE2 syntax); throws an Error whose message says why RE2 refuses it. */
export function compileLinear(pattern: string): LinearRegExp {
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(
      `${JSON.stringify(pattern)} is not a linear-time (RE2) regular expression: ${message.replace(/^error parsing regexp: /, '')}`,
    );
  }
  return Object.freeze({
    source: pattern,
    test: (text: string) => re.matcher(text).find(),
    toString: () => `/${pattern}/`,
  });
}

/**
 * ajv's `code.regExp`: every `pattern`, `patternProperties` and `propertyNames` pattern on RE2. `code`
 * only serves ajv's standalone code generation, which portcullis does not use.
 */
export const ajvRegExp = Object.assign(
  (pattern: string, _flags: string): LinearRegExp => compileLinear(pattern),
  {
    code: 'compileLinear',
  },
);
