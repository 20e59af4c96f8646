// Calendar windows of fixed_window limits: minute, hour, day, week (ISO, Monday start) and month, in
// an IANA time zone, computed with luxon so that they follow the zone's rules exactly:
// - a day is midnight to midnight local time: 23 h on the day clocks go forward (Europe/Berlin
//   2026-03-29), 25 h on the day they go back (2026-10-25); where midnight itself is skipped
//   (America/Havana), the day starts at the first local instant that exists;
// - a month is the 1st to the 1st (28, 29, 30 or 31 days); a week is ISO, ids use the ISO week-year
//   (2026-12-31 is in `2026-W53`, 2027-01-04 starts `2027-W01`).
//
// Ids (part of the Redis key, so stable and unique per window in a zone):
//   month `2026-11`, week `2026-W48`, day `2026-11-28`, hour `2026-11-28T14`, minute `2026-11-28T14:05`.
// A local hour that happens twice (the fall-back hour, 02:00–03:00 in Berlin on 2026-10-25) would give
// two windows the same label: the occurrence that luxon does not pick for the bare label gets its UTC
// offset appended (`2026-10-25T02+02:00`, then `2026-10-25T02`), so the two never share a counter.
//
// Cost: windowAt caches the current window per (unit, zone) and recomputes only once now ≥ endMs (or
// now < startMs, if the clock went back): a cache hit is one Map lookup and two comparisons. The cache
// holds at most MAX_CACHED windows (it is cleared when full: (unit, zone) pairs come from the policy,
// so it never fills in practice).
import { DateTime, IANAZone } from 'luxon';
import type { CalendarWindow } from './types.js';

export type CalendarUnit = 'minute' | 'hour' | 'day' | 'week' | 'month';
export const CALENDAR_UNITS: readonly CalendarUnit[] = ['minute', 'hour', 'day', 'week', 'month'];

const FORMATS: Readonly<Record<CalendarUnit, string>> = {
  minute: "yyyy-MM-dd'T'HH:mm",
  hour: "yyyy-MM-dd'T'HH",
  day: 'yyyy-MM-dd',
  week: "kkkk-'W'WW",
  month: 'yyyy-MM',
};

/** True for an IANA zone name luxon (and so Intl) knows, e.g. `Europe/Berlin`, `UTC`. */
export function isValidZone(zone: string): boolean {
  return typeof zone === 'string' && zone !== '' && IANAZone.isValidZone(zone);
}

/** The window of `unit` containing `nowMs` in `zone`, without the cache. Throws on an unknown zone. */
export function computeWindow(unit: CalendarUnit, zone: string, nowMs: number): CalendarWindow {
  const now = DateTime.fromMillis(nowMs, { zone });
  if (!now.isValid) throw new RangeError(`unknown time zone ${JSON.stringify(zone)}`);
  if (!(unit in FORMATS)) throw new RangeError(`unknown calendar unit ${JSON.stringify(unit)}`);
  const start = now.startOf(unit);
  const startMs = start.toMillis();
  // The window ends where the next one starts: the start of the unit one unit later. plus() alone is
  // not enough where a unit's local start does not exist (a skipped midnight, a 30-minute DST shift),
  // and where a local hour is longer than an hour (Lord Howe's repeated half hour) one unit later is
  // still in this window: then try one more unit.
  let probe = start.plus({ [unit]: 1 });
  let endMs = probe.startOf(unit).toMillis();
  for (let i = 0; endMs <= startMs && i < 3; i++) {
    probe = probe.plus({ [unit]: 1 });
    endMs = probe.startOf(unit).toMillis();
  }
  if (!(startMs <= nowMs && nowMs < endMs)) {
    throw new RangeError(`no ${unit} window around ${nowMs} in ${zone}`); // not seen with real zones
  }
  let id = start.toFormat(FORMATS[unit]);
  if (unit === 'hour' || unit === 'minute') {
    const picked = DateTime.fromObject(
      { year: start.year, month: start.month, day: start.day, hour: start.hour, minute: start.minute },
      { zone },
    );
    if (picked.toMillis() !== startMs) id += start.toFormat('ZZ');
  }
  return Object.freeze({ id, startMs, endMs });
}

const MAX_CACHED = 1024;
const cache = new Map<string, CalendarWindow>();

/** The window of `unit` containing `nowMs` in `zone`, cached (see the module header). */
export function windowAt(unit: CalendarUnit, zone: string, nowMs: number): CalendarWindow {
  const key = `${unit} ${zone}`;
  const hit = cache.get(key);
  if (hit !== undefined && nowMs < hit.endMs && nowMs >= hit.startMs) return hit;
  const window = computeWindow(unit, zone, nowMs);
  if (hit === undefined && cache.size >= MAX_CACHED) cache.clear();
  cache.set(key, window);
  return window;
}

/** Empties the window cache (tests). */
export function clearWindowCache(): void {
  cache.clear();
}
