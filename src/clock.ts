// Time, for every layer: injected so decisions stay pure and tests can fix it.

/** Time, injected so decisions stay pure and tests can fix it. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };
