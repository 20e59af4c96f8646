// Calendar windows in IANA zones: DST days, month lengths, ISO weeks across a year, the cache.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DateTime } from 'luxon';
import {
  CALENDAR_UNITS,
  type CalendarUnit,
  clearWindowCache,
  computeWindow,
  isValidZone,
  windowAt,
} from '../../src/quota/calendar.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** An instant given as local wall time in a zone. */
function local(iso: string, zone: string): number {
  const dt = DateTime.fromISO(iso, { zone });
  assert.ok(dt.isValid, `${iso} in ${zone}`);
  return dt.toMillis();
}

interface Case {
  readonly name: string;
  readonly unit: CalendarUnit;
  readonly zone: string;
  readonly at: string; // local ISO time in `zone` (or with an explicit offset)
  readonly id: string;
  readonly start: string; // ISO with offset
  readonly end: string;
  readonly hours?: number; // the window's length
}

const cases: Case[] = [
  // Europe/Berlin: clocks forward 2026-03-29 02:00 → 03:00, back 2026-10-25 03:00 → 02:00
  {
    name: 'Berlin, spring forward: a 23-hour day',
    unit: 'day',
    zone: 'Europe/Berlin',
    at: '2026-03-29T12:00',
    id: '2026-03-29',
    start: '2026-03-29T00:00+01:00',
    end: '2026-03-30T00:00+02:00',
    hours: 23,
  },
  {
    name: 'Berlin, fall back: a 25-hour day',
    unit: 'day',
    zone: 'Europe/Berlin',
    at: '2026-10-25T12:00',
    id: '2026-10-25',
    start: '2026-10-25T00:00+02:00',
    end: '2026-10-26T00:00+01:00',
    hours: 25,
  },
  {
    name: 'Berlin, an ordinary day',
    unit: 'day',
    zone: 'Europe/Berlin',
    at: '2026-11-28T23:59:59.999',
    id: '2026-11-28',
    start: '2026-11-28T00:00+01:00',
    end: '2026-11-29T00:00+01:00',
    hours: 24,
  },
  // America/New_York: forward 2026-03-08, back 2026-11-01
  {
    name: 'New York, spring forward: 23 hours',
    unit: 'day',
    zone: 'America/New_York',
    at: '2026-03-08T01:59',
    id: '2026-03-08',
    start: '2026-03-08T00:00-05:00',
    end: '2026-03-09T00:00-04:00',
    hours: 23,
  },
  {
    name: 'New York, fall back: 25 hours',
    unit: 'day',
    zone: 'America/New_York',
    at: '2026-11-01T23:00',
    id: '2026-11-01',
    start: '2026-11-01T00:00-04:00',
    end: '2026-11-02T00:00-05:00',
    hours: 25,
  },
  {
    name: 'New York: the same instant is a different day than in UTC',
    unit: 'day',
    zone: 'America/New_York',
    at: '2026-11-28T22:30',
    id: '2026-11-28',
    start: '2026-11-28T00:00-05:00',
    end: '2026-11-29T00:00-05:00',
  },
  {
    name: 'Berlin hour at 01:xx on the spring-forward day ends at 03:00 local (1 h)',
    unit: 'hour',
    zone: 'Europe/Berlin',
    at: '2026-03-29T01:30',
    id: '2026-03-29T01',
    start: '2026-03-29T01:00+01:00',
    end: '2026-03-29T03:00+02:00',
    hours: 1,
  },
  {
    name: 'Berlin, the first 02:00 hour of the fall-back day (offset appended)',
    unit: 'hour',
    zone: 'Europe/Berlin',
    at: '2026-10-25T02:30+02:00',
    id: '2026-10-25T02+02:00',
    start: '2026-10-25T02:00+02:00',
    end: '2026-10-25T02:00+01:00',
    hours: 1,
  },
  {
    name: 'Berlin, the second 02:00 hour of the fall-back day',
    unit: 'hour',
    zone: 'Europe/Berlin',
    at: '2026-10-25T02:30+01:00',
    id: '2026-10-25T02',
    start: '2026-10-25T02:00+01:00',
    end: '2026-10-25T03:00+01:00',
    hours: 1,
  },
  // Australia/Lord_Howe shifts by 30 minutes: back 2026-04-05 02:00 → 01:30, forward 2026-10-04 02:00 → 02:30
  {
    name: 'Lord Howe, fall back: the local hour 01 lasts 1.5 h (its second half hour repeats)',
    unit: 'hour',
    zone: 'Australia/Lord_Howe',
    at: '2026-04-05T01:45+10:30', // the second 01:45
    id: '2026-04-05T01',
    start: '2026-04-05T01:00+11:00',
    end: '2026-04-05T02:00+10:30',
    hours: 1.5,
  },
  {
    name: 'Lord Howe, spring forward: the local hour 02 lasts 30 minutes',
    unit: 'hour',
    zone: 'Australia/Lord_Howe',
    at: '2026-10-04T02:45+11:00',
    id: '2026-10-04T02',
    start: '2026-10-04T02:30+11:00',
    end: '2026-10-04T03:00+11:00',
    hours: 0.5,
  },
  {
    name: 'Havana: midnight is skipped on 2026-03-08, the day starts at 01:00',
    unit: 'day',
    zone: 'America/Havana',
    at: '2026-03-08T12:00',
    id: '2026-03-08',
    start: '2026-03-08T01:00-04:00',
    end: '2026-03-09T00:00-04:00',
    hours: 23,
  },
  // months
  {
    name: 'February 2024 (leap year): 29 days',
    unit: 'month',
    zone: 'UTC',
    at: '2024-02-15T12:00',
    id: '2024-02',
    start: '2024-02-01T00:00Z',
    end: '2024-03-01T00:00Z',
    hours: 29 * 24,
  },
  {
    name: 'February 2026: 28 days',
    unit: 'month',
    zone: 'UTC',
    at: '2026-02-28T23:59:59.999',
    id: '2026-02',
    start: '2026-02-01T00:00Z',
    end: '2026-03-01T00:00Z',
    hours: 28 * 24,
  },
  {
    name: 'December → January, in Berlin',
    unit: 'month',
    zone: 'Europe/Berlin',
    at: '2026-12-31T23:59',
    id: '2026-12',
    start: '2026-12-01T00:00+01:00',
    end: '2027-01-01T00:00+01:00',
    hours: 31 * 24,
  },
  {
    name: 'March 2026 in Berlin holds the spring-forward day: 31 days less an hour',
    unit: 'month',
    zone: 'Europe/Berlin',
    at: '2026-03-02T00:00',
    id: '2026-03',
    start: '2026-03-01T00:00+01:00',
    end: '2026-04-01T00:00+02:00',
    hours: 31 * 24 - 1,
  },
  {
    name: 'January 2027 starts at midnight, New Year',
    unit: 'month',
    zone: 'Europe/Berlin',
    at: '2027-01-01T00:00',
    id: '2027-01',
    start: '2027-01-01T00:00+01:00',
    end: '2027-02-01T00:00+01:00',
  },
  // ISO weeks: 2026-12-31 is a Thursday of 2026-W53; 2027-01-01 (Friday) too; 2027-W01 starts 01-04
  {
    name: 'ISO week: 2026-12-31 is in 2026-W53',
    unit: 'week',
    zone: 'UTC',
    at: '2026-12-31T12:00',
    id: '2026-W53',
    start: '2026-12-28T00:00Z',
    end: '2027-01-04T00:00Z',
    hours: 7 * 24,
  },
  {
    name: 'ISO week: 2027-01-01 is still in 2026-W53',
    unit: 'week',
    zone: 'UTC',
    at: '2027-01-01T00:00',
    id: '2026-W53',
    start: '2026-12-28T00:00Z',
    end: '2027-01-04T00:00Z',
  },
  {
    name: 'ISO week: 2027-01-04 (Monday) starts 2027-W01',
    unit: 'week',
    zone: 'UTC',
    at: '2027-01-04T00:00',
    id: '2027-W01',
    start: '2027-01-04T00:00Z',
    end: '2027-01-11T00:00Z',
  },
  {
    name: 'ISO week holding the Berlin fall-back: 7 days and an hour',
    unit: 'week',
    zone: 'Europe/Berlin',
    at: '2026-10-22T10:00',
    id: '2026-W43',
    start: '2026-10-19T00:00+02:00',
    end: '2026-10-26T00:00+01:00',
    hours: 7 * 24 + 1,
  },
  {
    name: 'a minute, in a +05:45 zone',
    unit: 'minute',
    zone: 'Asia/Kathmandu',
    at: '2026-11-28T14:05:59.999',
    id: '2026-11-28T14:05',
    start: '2026-11-28T14:05+05:45',
    end: '2026-11-28T14:06+05:45',
  },
  {
    name: 'an hour, in a +05:45 zone',
    unit: 'hour',
    zone: 'Asia/Kathmandu',
    at: '2026-11-28T14:59',
    id: '2026-11-28T14',
    start: '2026-11-28T14:00+05:45',
    end: '2026-11-28T15:00+05:45',
  },
];

describe('windowAt: exact windows', () => {
  for (const c of cases) {
    test(c.name, () => {
      const now = /[+-]\d\d:\d\d$|Z$/.test(c.at) ? DateTime.fromISO(c.at).toMillis() : local(c.at, c.zone);
      const w = computeWindow(c.unit, c.zone, now);
      assert.equal(w.id, c.id);
      assert.equal(new Date(w.startMs).toISOString(), DateTime.fromISO(c.start).toUTC().toISO());
      assert.equal(new Date(w.endMs).toISOString(), DateTime.fromISO(c.end).toUTC().toISO());
      if (c.hours !== undefined) assert.equal((w.endMs - w.startMs) / HOUR, c.hours);
      assert.ok(w.startMs <= now && now < w.endMs);
      assert.deepEqual(windowAt(c.unit, c.zone, now), w, 'the cached path gives the same window');
    });
  }
});

describe('windows tile time in every zone (no gap, no overlap, ids unique)', () => {
  const zones = [
    'UTC',
    'Europe/Berlin',
    'America/New_York',
    'Asia/Kathmandu',
    'Australia/Lord_Howe', // 30-minute DST shift
    'America/Havana', // DST at midnight: some days start at 01:00
    'America/Santiago',
  ];
  // Around the DST changes of these zones in 2026 (Santiago 04-05 and 09-06, Lord Howe 04-05 and
  // 10-04, Havana 03-08 and 11-01, Europe 03-29 and 10-25, New York 03-08 and 11-01), and longer
  // spans for the longer units.
  const spans: Record<CalendarUnit, [number, number][]> = {
    minute: [
      [Date.UTC(2026, 3, 4, 14), Date.UTC(2026, 3, 4, 17)], // Lord Howe fall-back (15:00Z)
      [Date.UTC(2026, 9, 3, 14), Date.UTC(2026, 9, 3, 17)], // Lord Howe spring-forward (15:30Z)
      [Date.UTC(2026, 9, 25, 0), Date.UTC(2026, 9, 25, 2)], // Europe fall-back (01:00Z)
    ],
    hour: [
      [Date.UTC(2026, 2, 6), Date.UTC(2026, 2, 10)],
      [Date.UTC(2026, 2, 27), Date.UTC(2026, 2, 31)],
      [Date.UTC(2026, 3, 3), Date.UTC(2026, 3, 7)],
      [Date.UTC(2026, 8, 4), Date.UTC(2026, 8, 8)],
      [Date.UTC(2026, 9, 2), Date.UTC(2026, 9, 6)],
      [Date.UTC(2026, 9, 23), Date.UTC(2026, 9, 27)],
      [Date.UTC(2026, 9, 30), Date.UTC(2026, 10, 3)],
    ],
    day: [[Date.UTC(2026, 0, 1), Date.UTC(2028, 0, 1)]],
    week: [[Date.UTC(2026, 0, 1), Date.UTC(2028, 0, 1)]],
    month: [[Date.UTC(2024, 0, 1), Date.UTC(2028, 0, 1)]],
  };
  for (const zone of zones) {
    for (const unit of CALENDAR_UNITS) {
      test(`${unit} in ${zone}`, () => {
        const ids = new Set<string>();
        for (const [from, to] of spans[unit]) {
          let w = computeWindow(unit, zone, from);
          while (w.startMs < to) {
            assert.ok(!ids.has(w.id), `id ${w.id} used twice`);
            ids.add(w.id);
            assert.ok(w.endMs > w.startMs);
            const next = computeWindow(unit, zone, w.endMs);
            assert.equal(next.startMs, w.endMs, `${w.id} → ${next.id}: no gap, no overlap`);
            // the last ms of a window is still in it
            assert.equal(computeWindow(unit, zone, w.endMs - 1).id, w.id);
            w = next;
          }
        }
      });
    }
  }
});

describe('the cache', () => {
  test('the same window object within it; a new one at endMs exactly', () => {
    clearWindowCache();
    const zone = 'Europe/Berlin';
    const now = local('2026-11-28T14:05:30', zone);
    const a = windowAt('minute', zone, now);
    const b = windowAt('minute', zone, now + 29_999); // the last ms of 14:05
    assert.equal(b, a, 'cached: the very same object');
    const c = windowAt('minute', zone, a.endMs);
    assert.notEqual(c, a);
    assert.equal(c.id, '2026-11-28T14:06');
    assert.equal(c.startMs, a.endMs);
    assert.equal(windowAt('minute', zone, a.endMs + 1), c);
  });

  test('per (unit, zone): another unit or zone does not evict', () => {
    clearWindowCache();
    const now = Date.UTC(2026, 10, 28, 12);
    const day = windowAt('day', 'UTC', now);
    const nyDay = windowAt('day', 'America/New_York', now);
    const month = windowAt('month', 'UTC', now);
    assert.notEqual(day, nyDay);
    assert.equal(windowAt('day', 'UTC', now + HOUR), day);
    assert.equal(windowAt('month', 'UTC', now + DAY), month);
    assert.equal(windowAt('day', 'America/New_York', now + HOUR), nyDay);
  });

  test('the clock going back recomputes', () => {
    clearWindowCache();
    const now = Date.UTC(2026, 10, 28, 12);
    const today = windowAt('day', 'UTC', now);
    const yesterday = windowAt('day', 'UTC', now - DAY);
    assert.equal(yesterday.id, '2026-11-27');
    assert.notEqual(yesterday, today);
  });

  test('bounded: more (unit, zone) pairs than it holds still answer correctly', () => {
    clearWindowCache();
    const now = Date.UTC(2026, 10, 28, 12);
    const zones = Intl.supportedValuesOf('timeZone');
    assert.ok(zones.length * CALENDAR_UNITS.length > 1024, 'enough pairs to overflow the cache');
    for (const zone of zones) {
      for (const unit of CALENDAR_UNITS) {
        const w = windowAt(unit, zone, now);
        assert.ok(w.startMs <= now && now < w.endMs);
      }
    }
  });
});

describe('zones', () => {
  const zones: [string, boolean][] = [
    ['Europe/Berlin', true],
    ['America/New_York', true],
    ['UTC', true],
    ['Asia/Kathmandu', true],
    ['Mars/Olympus_Mons', false],
    ['UTC+3', false],
    ['', false],
  ];
  for (const [zone, valid] of zones) {
    test(`isValidZone(${JSON.stringify(zone)}) = ${valid}`, () => assert.equal(isValidZone(zone), valid));
  }

  test('an unknown zone throws', () => {
    assert.throws(() => windowAt('day', 'Mars/Olympus_Mons', 0), /unknown time zone/);
  });
});
