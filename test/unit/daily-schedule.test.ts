/**
 * The day of a schedule (src/domain/daily-schedule.ts) against a brute-force oracle: scanning every
 * minute, a local date's boundary is the first instant whose wall clock shows that date at HH:MM or
 * later (once per date, also when a fall-back repeats HH:MM). Zones with DST gaps at the boundary time (Madrid 02:30, Santiago 00:00), 30-minute DST
 * (Lord Howe), southern-hemisphere DST and large offsets.
 */
import { describe, expect, test } from "bun:test";
import { type DailySchedule, dayAt, parseSchedule, scheduleFromText } from "../../src/domain/daily-schedule.ts";

const MINUTE = 60_000;

function wall(zone: string, t: number): { date: string; minutes: number } {
  const f = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
  const p = Object.fromEntries(f.formatToParts(t).map((x) => [x.type, x.value]));
  return { date: `${p.year}-${p.month}-${p.day}`, minutes: Number(p.hour) * 60 + Number(p.minute) };
}

/** The boundary of the day containing `now`, by scanning minutes backwards from `now`. */
function oracle(schedule: DailySchedule, now: number): { start: number; label: string } {
  const target = schedule.hour * 60 + schedule.minute;
  const isBoundary = (u: number) => {
    const here = wall(schedule.timeZone, u);
    if (here.minutes < target) return false;
    const before = wall(schedule.timeZone, u - MINUTE);
    return before.date !== here.date || before.minutes < target;
  };
  let u = Math.floor(now / MINUTE) * MINUTE;
  while (!isBoundary(u)) u -= MINUTE;
  // On a fall-back date HH:MM comes twice: the day begins at the first instant of that date past it.
  const date = wall(schedule.timeZone, u).date;
  let first = u - 26 * 60 * MINUTE;
  for (; ; first += MINUTE) {
    const here = wall(schedule.timeZone, first);
    if (here.date === date && here.minutes >= target) break;
  }
  return { start: first, label: date };
}

const CASES: Array<[string, string, number]> = [
  ["02:30", "Europe/Madrid", Date.UTC(2026, 2, 29, 0, 59)],
  ["02:30", "Europe/Madrid", Date.UTC(2026, 2, 29, 1, 0)],
  ["02:30", "Europe/Madrid", Date.UTC(2026, 9, 25, 1, 40)],
  ["02:30", "Europe/Madrid", Date.UTC(2026, 9, 26, 1, 29)],
  ["00:00", "America/Santiago", Date.UTC(2026, 8, 6, 3, 30)],
  ["00:00", "America/Santiago", Date.UTC(2026, 8, 6, 4, 0)],
  ["02:15", "Australia/Lord_Howe", Date.UTC(2026, 9, 3, 15, 40)],
  ["01:45", "Australia/Lord_Howe", Date.UTC(2026, 3, 4, 14, 50)],
  ["23:59", "Pacific/Kiritimati", Date.UTC(2026, 11, 2, 9, 58)],
  ["06:00", "America/New_York", Date.UTC(2026, 2, 8, 10, 59)],
  ["01:30", "America/New_York", Date.UTC(2026, 10, 1, 6, 31)],
  ["00:00", "UTC", Date.UTC(2026, 11, 31, 23, 59, 59, 999)],
  ["00:00", "UTC", Date.UTC(2027, 0, 1)],
  ["12:00", "Asia/Kolkata", Date.UTC(2026, 1, 28, 6, 29)],
];

describe("dayAt", () => {
  for (const [daily, zone, now] of CASES) {
    test(`${daily} ${zone} at ${new Date(now).toISOString()}`, () => {
      const schedule = parseSchedule({ daily, timeZone: zone }) as DailySchedule;
      const day = dayAt(schedule, now);
      const expected = oracle(schedule, now);
      expect({ start: new Date(day.start).toISOString(), label: day.label }).toEqual({
        start: new Date(expected.start).toISOString(),
        label: expected.label,
      });
      expect(day.start).toBeLessThanOrEqual(now);
      expect(day.next).toBeGreaterThan(now);
      // The next day's bounds start where this one ends.
      expect(dayAt(schedule, day.next).start).toBe(day.next);
      expect(dayAt(schedule, day.next - 1).start).toBe(day.start);
    });
  }

  test("schedule text round-trips and names the zone as Intl resolves it", () => {
    const schedule = parseSchedule({ daily: "06:00", timeZone: "europe/madrid" }) as DailySchedule;
    expect(schedule.text).toBe("06:00 Europe/Madrid");
    expect(scheduleFromText(schedule.text)).toEqual(schedule);
  });
});
