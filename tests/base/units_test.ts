/**
 * Command-line value parsing and formatting: sizes, durations, dates.
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { UsageError } from "../../base/errors.ts";
import { formatBytes, formatDuration, parseDate, parseDuration, parseSize } from "../../base/units.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

describe("parseSize", () => {
  it("reads bytes and binary multiples, with or without B/iB", () => {
    const cases: [string, number][] = [
      ["0", 0],
      ["100", 100],
      ["100B", 100],
      ["512K", 512 * KiB],
      ["512k", 512 * KiB],
      ["512KB", 512 * KiB],
      ["512KiB", 512 * KiB],
      ["32M", 32 * MiB],
      ["32MiB", 32 * MiB],
      ["32MB", 32 * MiB],
      ["10MB", 10 * MiB],
      ["1.5G", 1.5 * GiB],
      ["1GiB", GiB],
      ["2T", 2 * 1024 * GiB],
      ["1 K", 1024],
      ["0.5k", 512],
      [".5K", 512],
      ["1.1K", 1126],
      [" 7 ", 7],
    ];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
  });

  it("rejects junk with a UsageError naming the option and the value", () => {
    for (
      const text of [
        "",
        " ",
        "-1",
        "+1",
        "12 foo",
        "1.5.2",
        "K",
        "1KiBB",
        "1iB",
        "1e3",
        "1.5",
        "1.5B",
        "1,5K",
        "0x10",
        "9999999P",
      ]
    ) {
      assert.throws(() => parseSize(text), UsageError, JSON.stringify(text));
    }
    assert.throws(() => parseSize("12 foo", "--max-segment-size"), {
      name: "UsageError",
      message: 'Parse --max-segment-size "12 foo": expected a byte count such as 4096, 512K, 32M or 1.5GiB',
    });
  });
});

describe("parseDuration", () => {
  it("reads units and compounds", () => {
    const cases: [string, number][] = [
      ["30d", 30 * 86_400_000],
      ["12h", 12 * 3_600_000],
      ["90min", 90 * 60_000],
      ["6mo", 180 * 86_400_000],
      ["1y", 365 * 86_400_000],
      ["1y 2mo", 425 * 86_400_000],
      ["45s", 45_000],
      ["250ms", 250],
      ["2w", 14 * 86_400_000],
      ["1.5d", 36 * 3_600_000],
      ["1d12h", 36 * 3_600_000],
      ["1d 12h", 36 * 3_600_000],
      ["0s", 0],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
  });

  it("reads a bare number as days (like --remove-older-than)", () => {
    assert.equal(parseDuration("7"), 7 * 86_400_000);
    assert.equal(parseDuration("0.5"), 12 * 3_600_000);
    assert.equal(parseDuration("0"), 0);
  });

  it("rejects junk", () => {
    for (
      const text of [
        "",
        "d",
        "-1",
        "-1d",
        "1Y",
        "1M",
        "1m",
        "1d 30m",
        "1D",
        "30 days",
        "1d junk",
        "1.5.2d",
        "1d-2h",
        "d1",
      ]
    ) {
      assert.throws(() => parseDuration(text), UsageError, JSON.stringify(text));
    }
    assert.throws(() => parseDuration("1x"), { message: /^Parse duration "1x": / });
    assert.throws(() => parseDuration("1m"), { message: /"1m" is ambiguous: write 1min for minutes or 1mo/ });
  });
});

describe("parseDate", () => {
  it("reads times with a zone exactly", () => {
    const cases: [string, string][] = [
      ["2026-11-20T10:00Z", "2026-11-20T10:00:00.000Z"],
      ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.000Z"],
      ["2026-11-20T10:00:00.250Z", "2026-11-20T10:00:00.250Z"],
      ["2026-11-20T10:00:00.2Z", "2026-11-20T10:00:00.200Z"],
      ["2026-11-20T10:00:00.123456789Z", "2026-11-20T10:00:00.123Z"],
      ["2026-11-20 10:00:00+01:00", "2026-11-20T09:00:00.000Z"],
      ["2026-11-20T10:00-0500", "2026-11-20T15:00:00.000Z"],
      ["2026-11-20T10:00+05:30", "2026-11-20T04:30:00.000Z"],
      ["2026-11-20T01:00+02", "2026-11-19T23:00:00.000Z"],
      ["2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00.000Z"],
      ["2028-02-29T00:00:00Z", "2028-02-29T00:00:00.000Z"],
      ["0050-06-01T00:00:00Z", "0050-06-01T00:00:00.000Z"],
    ];
    for (const [text, iso] of cases) assert.equal(parseDate(text).toISOString(), iso, text);
  });

  it("reads times without a zone as local time", () => {
    const cases: [string, Date][] = [
      ["2026-11-20", new Date(2026, 10, 20)],
      ["2026-11-20T10:00", new Date(2026, 10, 20, 10, 0)],
      ["2026-11-20 10:00", new Date(2026, 10, 20, 10, 0)],
      ["2026-11-20T10:00:00", new Date(2026, 10, 20, 10, 0, 0)],
      ["2026-11-20T10:00:00.250", new Date(2026, 10, 20, 10, 0, 0, 250)],
      ["2026-07-01T23:59:59", new Date(2026, 6, 1, 23, 59, 59)],
    ];
    for (const [text, date] of cases) assert.equal(parseDate(text).getTime(), date.getTime(), text);
  });

  it("uses the process's TZ for local times", () => {
    const url = new URL("../../base/units.ts", import.meta.url).href;
    const code = `import { parseDate } from ${JSON.stringify(url)};` +
      `console.log(["2026-11-20T10:00", "2026-07-01", "2026-11-20T10:00Z"].map((t) => parseDate(t).toISOString()).join(" "));`;
    const args = process.versions.deno ? ["eval", code] : ["-e", code];
    const run = (tz: string) =>
      execFileSync(process.execPath, args, {
        env: { ...process.env, TZ: tz, NO_COLOR: "1" },
        encoding: "utf8",
      }).trim();
    assert.equal(
      run("Asia/Tokyo"),
      "2026-11-20T01:00:00.000Z 2026-06-30T15:00:00.000Z 2026-11-20T10:00:00.000Z",
    );
    assert.equal(
      run("America/New_York"),
      "2026-11-20T15:00:00.000Z 2026-07-01T04:00:00.000Z 2026-11-20T10:00:00.000Z",
    );
  });

  it("rejects impossible dates and junk", () => {
    for (
      const text of [
        "",
        "yesterday",
        "2026-13-01",
        "2026-00-10",
        "2026-02-30",
        "2026-02-29",
        "2026-04-31",
        "2026-11-00",
        "2026-11-20T24:00",
        "2026-11-20T10:60",
        "2026-11-20T10:00:60",
        "2026-11-20T10:00+24:00",
        "2026-11-20T10:00+01:60",
        "2026-11-20Z",
        "2026-1-2",
        "20261120",
        "2026-11-20T10",
        "2026-11-20T10:00:00.",
        "2026-11-20T10:00 junk",
        "1700000000",
      ]
    ) {
      assert.throws(() => parseDate(text), UsageError, JSON.stringify(text));
    }
    assert.throws(() => parseDate("2026-02-30"), {
      message: /^Parse date "2026-02-30": day 30 does not exist/,
    });
  });
});

describe("formatBytes", () => {
  it("uses binary units and at most one decimal", () => {
    const cases: [number, string][] = [
      [0, "0 B"],
      [512, "512 B"],
      [1023, "1023 B"],
      [1024, "1 KiB"],
      [1536, "1.5 KiB"],
      [32 * MiB, "32 MiB"],
      [1.5 * GiB, "1.5 GiB"],
      [MiB - 1, "1 MiB"],
      [1234 * GiB, "1.2 TiB"],
      [-2048, "-2 KiB"],
    ];
    for (const [n, text] of cases) assert.equal(formatBytes(n), text, String(n));
  });
});

describe("formatDuration", () => {
  it("shows the two largest units, in the form parseDuration reads", () => {
    const cases: [number, string][] = [
      [0, "0ms"],
      [250, "250ms"],
      [1000, "1s"],
      [12_345, "12.3s"],
      [59_999, "59.9s"],
      [60_000, "1min"],
      [303_000, "5min 3s"],
      [7_500_000, "2h 5min"],
      [3 * 86_400_000 + 4 * 3_600_000 + 5000, "3d 4h"],
      [-1500, "-1.5s"],
    ];
    for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, String(ms));
    for (const ms of [250, 1000, 60_000, 303_000, 7_500_000, 3 * 86_400_000 + 4 * 3_600_000]) {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }
  });
});
