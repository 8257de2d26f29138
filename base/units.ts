/**
 * Parsing and formatting of command-line values: sizes, durations and dates. Every parse failure is a
 * `UsageError` that quotes the value.
 * @module
 */
import { UsageError } from "./errors.ts";

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
};

const SIZE_PATTERN = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgtp])(?:i?b)?|(b)?)$/i;

/**
 * Parses a byte count: a decimal number with an optional unit, case-insensitive, optionally after a space.
 * K, M, G, T and P are binary multiples (1024, 1024², …) whether written `K`, `KB` or `KiB`, so `32M`,
 * `32MB` and `32MiB` are all 33554432 (as Freezer's `human2bytes`). `B` or no unit means bytes. Fractions
 * are allowed with a unit and rounded to whole bytes (`1.5K` is 1536). `what` names the value in the error,
 * e.g. `--max-segment-size`. Throws `UsageError` for anything else (`""`, `"-1"`, `"12 foo"`, `"1.5.2"`).
 */
export function parseSize(text: string, what = "size"): number {
  const m = SIZE_PATTERN.exec(text.trim());
  const fail = () =>
    new UsageError(`Parse ${what} "${text}": expected a byte count such as 4096, 512K, 32M or 1.5GiB`);
  if (m === null) throw fail();
  const unit = (m[2] ?? m[3] ?? "").toLowerCase();
  const multiplier = SIZE_UNITS[unit];
  const value = Number(m[1]);
  if (multiplier === undefined) throw fail();
  if (multiplier === 1 && !Number.isInteger(value)) {
    throw new UsageError(`Parse ${what} "${text}": a byte count must be whole`);
  }
  const bytes = Math.round(value * multiplier);
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`Parse ${what} "${text}": too large`);
  return bytes;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
  mo: 30 * 86_400_000,
  y: 365 * 86_400_000,
};

// Longer units first, so that "ms", "min" and "mo" are not read as a shorter one.
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)(ms|min|mo|s|h|d|w|y|m)/y;

/**
 * Parses a duration into milliseconds: one or more parts of a decimal number and a unit — `y` years (365
 * days), `mo` months (30 days), `w` weeks, `d` days, `h` hours, `min` minutes, `s` seconds, `ms`
 * milliseconds (lowercase) — optionally separated by spaces: `30d`, `1.5d`, `2w`, `6mo`, `1y`, `1d 12h`,
 * `90min`. `m` alone is refused: some read it as minutes, others (restic) as months. A bare number is days,
 * like Freezer's `--remove-older-than`. Rounded to whole milliseconds. `what` names the value in the error
 * (e.g. `--older-than`). Throws `UsageError` otherwise.
 */
export function parseDuration(text: string, what = "duration"): number {
  const fail = () =>
    new UsageError(
      `Parse ${what} "${text}": expected a number of days or a time such as 30d, 12h, 2w, 6mo or 1y`,
    );
  const s = text.trim();
  if (/^(\d+(?:\.\d+)?|\.\d+)$/.test(s)) return Math.round(Number(s) * DURATION_UNITS.d!);
  if (s === "") throw fail();
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(s);
    if (m === null) throw fail();
    if (m[2] === "m") {
      throw new UsageError(
        `Parse ${what} "${text}": "${m[0]}" is ambiguous: write ${m[1]}min for minutes or ${
          m[1]
        }mo for months`,
      );
    }
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = DURATION_PART.lastIndex;
    while (s[pos] === " ") pos++;
  }
  const ms = Math.round(total);
  if (!Number.isSafeInteger(ms)) throw new UsageError(`Parse ${what} "${text}": too long`);
  return ms;
}

const DATE_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

/**
 * Parses an ISO 8601 date or time: `2026-11-20`, `2026-11-20T10:00`, `2026-11-20T10:00:00`,
 * `2026-11-20T10:00:00.250` (a space may replace the `T`; digits beyond milliseconds are dropped), with an
 * optional zone `Z`, `+01:00`, `-0500` or `+01`. Without a zone the time is local (the process's TZ); a date
 * alone is local midnight. A local time skipped by a daylight-saving change moves forward, as `new Date()`
 * does. Throws `UsageError` for impossible dates (`2026-02-30`) and anything else.
 */
export function parseDate(text: string): Date {
  const fail = (why: string) =>
    new UsageError(`Parse date "${text}": ${why}, e.g. 2026-11-20, 2026-11-20T10:00 or 2026-11-20T10:00:00Z`);
  const m = DATE_PATTERN.exec(text.trim());
  if (m === null) throw fail("expected an ISO 8601 date or time");
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  const ms = Number((m[7] ?? "").padEnd(3, "0").slice(0, 3));
  if (month < 1 || month > 12) throw fail(`month ${m[2]} does not exist`);
  if (day < 1 || day > daysInMonth(year, month)) throw fail(`day ${m[3]} does not exist in that month`);
  if (hour > 23 || minute > 59 || second > 59) throw fail("the time of day does not exist");
  const zone = m[8];
  const date = new Date(0);
  if (zone === undefined) {
    date.setFullYear(year, month - 1, day);
    date.setHours(hour, minute, second, ms);
    return date;
  }
  let offsetMinutes = 0;
  if (zone.toUpperCase() !== "Z") {
    const digits = zone.slice(1).replace(":", "");
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2) || "0");
    if (oh > 23 || om > 59) throw fail(`the zone offset ${zone} does not exist`);
    offsetMinutes = (zone[0] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute - offsetMinutes, second, ms);
  return date;
}

/** Days in `month` (1–12) of `year` in the proleptic Gregorian calendar. */
function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/** Formats a byte count with binary units and at most one decimal: `512 B`, `1.5 GiB`, `32 MiB`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return `${n} B`;
  const sign = n < 0 ? "-" : "";
  let value = Math.abs(n);
  let unit = 0;
  while (unit < BYTE_UNITS.length - 1 && Number(value.toFixed(1)) >= 1024) {
    value /= 1024;
    unit++;
  }
  const shown = unit === 0 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, "");
  return `${sign}${shown} ${BYTE_UNITS[unit]}`;
}

/**
 * Formats a duration for people, in the form `parseDuration` reads: `250ms`, `12.3s`, `5min 3s`, `2h 5min`,
 * `3d 4h`. The last unit shown is truncated, not rounded.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return `${ms}ms`;
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms < 1000) return `${Math.floor(ms)}ms`;
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1).replace(/\.0$/, "")}s`;
  const pairs: [number, string, number, string][] = [
    [86_400_000, "d", 3_600_000, "h"],
    [3_600_000, "h", 60_000, "min"],
    [60_000, "min", 1000, "s"],
  ];
  for (const [big, bigUnit, small, smallUnit] of pairs) {
    if (ms >= big) {
      const whole = Math.floor(ms / big);
      const rest = Math.floor((ms - whole * big) / small);
      return rest === 0 ? `${whole}${bigUnit}` : `${whole}${bigUnit} ${rest}${smallUnit}`;
    }
  }
  return `${ms}ms`; // unreachable: ms >= 60 000 matches the last pair
}
