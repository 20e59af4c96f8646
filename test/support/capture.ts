// An Io for the CLI's testable commands that keeps what they print.
import type { Io } from '../../src/cli/policy.js';

export function capture(): Io & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    stdout: () => out,
    stderr: () => err,
  };
}
