/**
 * Daily resets (issue 17): a counter with a schedule `{"daily":"HH:MM","timeZone":"<IANA>"}` starts
 * each day at 1. A "day" begins at the first instant the zone's wall clock reads HH:MM on a local
 * date: on a spring-forward date where HH:MM does not exist (02:30 in Europe/Madrid on 2026-03-29)
 * the day begins when the gap ends (03:00 local); on a fall-back date where HH:MM happens twice it
 * begins at the first one. So every local date has exactly one boundary, DST or not.
 *
 * Days are named by their instant of start (epoch ms, the "day stamp" a reservation carries) and by
 * their local date (`2026-12-02`). The store keeps the latest stamp it was sent and resets the counter
 * when a later one arrives (plan-reservation.ts, redis-scripts.ts): see docs/guides/operations.md, "Daily
 * resets and clock skew".
 *
 * Only Intl is used (no Bun API); formatters are cached per zone. Computing a day costs a few
 * formatToParts calls, done once per id per day: hosts keep the current day's bounds (DayBounds).
 */

/** A validated schedule. `text` is its canonical form, stored with the counter and compared by the store. */
export interface DailySchedule {
  /** "HH:MM", 00:00 to 23:59. */
  readonly daily: string;
  /** The zone as Intl resolves it (case-normalized IANA name). */
  readonly timeZone: string;
  readonly hour: number;
  readonly minute: number;
  /** `HH:MM <timeZone>`: the schedule's identity (its version) in the store. */
  readonly text: string;
}

/** One day of a schedule. */
export interface DayBounds {
  /** When it began (epoch ms): the day stamp. */
  readonly start: number;
  /** When the next one begins (epoch ms). */
  readonly next: number;
  /** Its local date in the schedule's zone, `YYYY-MM-DD`. */
  readonly label: string;
}

const DAILY = /^([01]\d|2[0-3]):([0-5]\d)$/;
const DAY_MS = 86_400_000;

/** Why a schedule body is refused (the 400's detail); `shape` when it is not a two-field object at all. */
export type ScheduleRefusal = { readonly refused: string; readonly shape: boolean };

/** Validates `{"daily","timeZone"}` (exactly those two fields, both strings). */
export function parseSchedule(body: unknown): DailySchedule | ScheduleRefusal {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { refused: 'Send {"daily":"HH:MM","timeZone":"<IANA name>"}.', shape: true };
  }
  const extra = Object.keys(body).filter((key) => key !== "daily" && key !== "timeZone");
  if (extra.length > 0) {
    return { refused: `Unknown field ${JSON.stringify(extra[0])}; send only "daily" and "timeZone".`, shape: true };
  }
  const { daily, timeZone } = body as { daily?: unknown; timeZone?: unknown };
  if (typeof daily !== "string" || !DAILY.test(daily)) {
    return { refused: '"daily" must be a time "HH:MM" from 00:00 to 23:59 (two digits each, e.g. "06:00").', shape: false };
  }
  const zone = typeof timeZone === "string" ? resolveZone(timeZone) : undefined;
  if (zone === undefined) {
    const named = typeof timeZone === "string" ? `Unknown time zone ${JSON.stringify(timeZone)}` : '"timeZone" is missing';
    return { refused: `${named}; use an IANA name such as "Europe/Madrid".`, shape: false };
  }
  return schedule(daily, zone);
}

/** Reads a schedule back from its stored text (written by this module, so trusted). */
export function scheduleFromText(text: string): DailySchedule {
  const space = text.indexOf(" ");
  return schedule(text.slice(0, space), text.slice(space + 1));
}

/** The day of `schedule` that contains `now` (epoch ms). */
export function dayAt(schedule: DailySchedule, now: number): DayBounds {
  const zone = schedule.timeZone;
  const local = wallClock(zone, now);
  let date = { y: local.y, m: local.m, d: local.d };
  let start = boundary(schedule, date);
  if (start > now) {
    date = shiftDate(date, -1);
    start = boundary(schedule, date);
  }
  return { start, next: boundary(schedule, shiftDate(date, 1)), label: isoDate(date) };
}

function schedule(daily: string, timeZone: string): DailySchedule {
  return { daily, timeZone, hour: Number(daily.slice(0, 2)), minute: Number(daily.slice(3, 5)), text: `${daily} ${timeZone}` };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, f);
  }
  return f;
}

function resolveZone(name: string): string | undefined {
  // Intl accepts offsets ("+01:00") as zones too; a schedule needs a named zone.
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name) || name.length > 64) return undefined;
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
}

interface LocalDate {
  readonly y: number;
  /** 1-12. */
  readonly m: number;
  readonly d: number;
}

interface WallClock extends LocalDate {
  readonly H: number;
  readonly M: number;
  readonly S: number;
}

function wallClock(zone: string, t: number): WallClock {
  const parts: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(t)) if (part.type !== "literal") parts[part.type] = Number(part.value);
  return {
    y: parts.year ?? 0,
    m: parts.month ?? 1,
    d: parts.day ?? 1,
    H: parts.hour ?? 0,
    M: parts.minute ?? 0,
    S: parts.second ?? 0,
  };
}

/** The zone's offset from UTC at instant `t` (ms; +3600000 for CET). */
function offsetAt(zone: string, t: number): number {
  const w = wallClock(zone, t);
  return Date.UTC(w.y, w.m - 1, w.d, w.H, w.M, w.S) - Math.floor(t / 1000) * 1000;
}

/** The first instant at which the zone's wall clock reads at least HH:MM on `date` (see header). */
function boundary(schedule: DailySchedule, date: LocalDate): number {
  const zone = schedule.timeZone;
  const wall = Date.UTC(date.y, date.m - 1, date.d, schedule.hour, schedule.minute);
  // Offsets a day either side: a zone changes its offset at most once in such a window.
  const before = offsetAt(zone, wall - DAY_MS);
  const after = offsetAt(zone, wall + DAY_MS);
  const found = [wall - before, wall - after].filter((u) => offsetAt(zone, u) === wall - u);
  if (found.length > 0) return Math.min(...found);
  // HH:MM falls in a gap: the day begins at the transition, found by bisection on whole seconds.
  let lo = Math.min(wall - before, wall - after) / 1000;
  let hi = Math.max(wall - before, wall - after) / 1000;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetAt(zone, mid * 1000) === after) hi = mid;
    else lo = mid;
  }
  return hi * 1000;
}

function shiftDate(date: LocalDate, days: number): LocalDate {
  const t = new Date(Date.UTC(date.y, date.m - 1, date.d + days));
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate() };
}

function isoDate(date: LocalDate): string {
  return `${String(date.y).padStart(4, "0")}-${String(date.m).padStart(2, "0")}-${String(date.d).padStart(2, "0")}`;
}
