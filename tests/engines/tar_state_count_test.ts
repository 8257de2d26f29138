/**
 * Tests of `TarStateCounter` (the tar engine's `countEntries`): it counts what `tarStateEntries` lists, from
 * the same state bytes in chunks of any size.
 * @module
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { tarEngine } from "../../engines/tar.ts";
import { stateHeader, stateRecord, tarStateEntries } from "../../engines/_tar_state.ts";
import { TarStateCounter } from "../../engines/_tar_state_count.ts";
import { FrostError } from "../../base/errors.ts";

const enc = new TextEncoder();

/** A state as the backup writes it, of these (path, kind) records. */
function state(records: [string, "f" | "d" | "l"][], opts: { trailingNewline?: boolean } = {}): Uint8Array {
  let text = stateHeader(1796668230903000000n);
  for (const [p, kind] of records) text += stateRecord(p, kind, "65024", "12", "64", "1", "2");
  if (opts.trailingNewline === false) text = text.slice(0, -1);
  return enc.encode(text);
}

/** What `tarStateEntries` lists of `bytes`: the count and the entries but the root. */
async function listed(bytes: Uint8Array): Promise<{ count: number; nonRoot: number }> {
  let count = 0;
  let nonRoot = 0;
  for await (const e of tarStateEntries(new Blob([bytes as Uint8Array<ArrayBuffer>]).stream())) {
    count++;
    if (e.path !== "") nonRoot++;
  }
  return { count, nonRoot };
}

/** `TarStateCounter` fed `bytes` in chunks of `size` bytes. */
function counted(bytes: Uint8Array, size: number): { count: number; nonRoot: number } {
  const counter = new TarStateCounter();
  for (let i = 0; i < bytes.length; i += size) counter.push(bytes.slice(i, i + size));
  return counter.end();
}

const TRICKY: [string, "f" | "d" | "l"][] = [
  [".", "d"],
  ["a", "f"],
  [".,", "f"], // starts like the root's record, but is not
  ['.",x', "f"], // a quote in a name is escaped: `[".\",x"`
  ["..", "f"],
  ["dir", "d"],
  ["dir/.", "f"],
  ["dir/é ☃ \n newline", "f"],
  ["link", "l"],
];

describe("TarStateCounter", () => {
  test("counts what tarStateEntries lists, in chunks of any size", async () => {
    for (const bytes of [state(TRICKY), state(TRICKY, { trailingNewline: false }), state(TRICKY.slice(1))]) {
      const want = await listed(bytes);
      for (const size of [1, 2, 3, 5, 7, 64, bytes.length]) assert.deepEqual(counted(bytes, size), want);
    }
    assert.deepEqual(counted(state(TRICKY), 4), { count: 9, nonRoot: 8 });
    // A single-file source: one entry, no root.
    assert.deepEqual(counted(state([["file.txt", "f"]]), 3), { count: 1, nonRoot: 1 });
  });

  test("counts an empty state and skips empty lines, as the reader does", async () => {
    const empty = enc.encode(stateHeader(1n));
    assert.deepEqual(counted(empty, 5), await listed(empty));
    assert.deepEqual(counted(empty, 5), { count: 0, nonRoot: 0 });
    const gaps = enc.encode(stateHeader(1n) + "\n" + stateRecord(".", "d", "1", "2", "3", "4", "5") + "\n\n");
    assert.deepEqual(counted(gaps, 2), await listed(gaps));
    assert.deepEqual(counted(gaps, 2), { count: 1, nonRoot: 0 });
  });

  test("refuses what is not a frost tar state, as the reader does", () => {
    const bad = [
      '{"format":"something-else","version":1,"started":"1"}\n',
      '{"format":"frost-tar-state","version":1,"started":"x"}\n',
      "not json\n[]\n",
      "",
    ];
    for (const text of bad) {
      assert.throws(
        () => counted(enc.encode(text), 3),
        (err) => err instanceof FrostError && /not a frost tar state/.test(err.message),
      );
    }
    assert.throws(
      () => counted(enc.encode('{"format":"frost-tar-state","version":3,"started":"1"}\n'), 3),
      /version 3 is not supported/,
    );
  });

  test("is the tar engine's countEntries", () => {
    const counter = tarEngine.countEntries?.();
    assert.ok(counter instanceof TarStateCounter);
  });
});
