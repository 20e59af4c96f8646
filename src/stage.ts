// What a stage returns, for every layer: a value or a Denial, and the one exception a stage may
// throw on purpose. A stage is a function of the request, the catalog and what earlier stages
// found; it returns data and does its I/O only through the interfaces it is given.
import type { Denial } from './decision.js';

export type StageResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly denial: Denial };

export const pass = <T>(value: T): StageResult<T> => ({ ok: true, value });
export const refuse = (denial: Denial): StageResult<never> => ({ ok: false, denial });

/**
 * A dependency (identity provider, Redis, clamd) cannot answer. The pipeline turns it into the
 * route's `on_error` with the code `dependency_unavailable`, never into a denial of the partner.
 */
export class DependencyUnavailable extends Error {
  constructor(
    readonly dependency: string,
    message: string,
  ) {
    super(`${dependency}: ${message}`);
    this.name = 'DependencyUnavailable';
  }
}

export type MaybePromise<T> = T | Promise<T>;
