// The instant a policy test fixture runs at when it names none: fixed, so expiry and windows replay
// the same way on every machine and day. A module of its own so that help texts can quote it
// without loading the policy tools.
export const DEFAULT_CLOCK = '2026-01-01T00:00:00Z';
