/**
 * Tests of `droppedChildren`: the deletions of a dumpdir replay found as bytes are those the set comparison
 * (`readDumpdir` + `dumpdirDrops` over a directory listing) finds.
 * @module
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { droppedChildren, type DropTest, recordsRenames } from "../../engines/_dumpdir_drops.ts";
import { Dumpdir, dumpdirDrops, parseDumpdir, readDumpdir } from "../../engines/_tar_read.ts";
import { decodeName } from "../../engines/_names.ts";

const enc = new TextEncoder();

/** A dumpdir of these records (code letter + name bytes), ended by an empty record. */
function dumpdir(records: [string, Uint8Array][]): Uint8Array {
  const parts: number[] = [];
  for (const [code, name] of records) parts.push(code.charCodeAt(0), ...name, 0);
  parts.push(0);
  return new Uint8Array(parts);
}

/** Byte order, as frost and GNU tar sort dumpdirs. */
function byBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** A tiny deterministic generator (xorshift). */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Names to draw from: short ones that sort close together, non-UTF-8 bytes, and ones no directory holds. */
const NAMES: Uint8Array[] = [
  ...["a", "ab", "abc", "b", "B", "é", "z z", "a.", ".a", "..", ".", "x/y", ""].map((s) => enc.encode(s)),
  new Uint8Array([0xff]),
  new Uint8Array([0x61, 0xe9]),
  new Uint8Array([0xc3]),
];

/** A sorted listing of distinct names drawn from NAMES, each with a code (R/T/X ones too, sometimes). */
function listing(rnd: () => number): [string, Uint8Array][] {
  const names = NAMES.filter(() => rnd() < 0.5).sort(byBytes);
  const out: [string, Uint8Array][] = names.map((n) => [["Y", "N", "D"][Math.floor(rnd() * 3)]!, n]);
  if (rnd() < 0.2) out.push(["R", enc.encode("./old")], ["T", enc.encode("./new")]);
  if (rnd() < 0.1) out.unshift(["X", enc.encode("./tmp")]);
  return out;
}

/** What the set comparison removes of an entry `name` on disk (a directory or not). */
function reference(before: Uint8Array, now: Uint8Array, name: string, isDir: boolean): boolean {
  const held = new Set<string>();
  for (const r of parseDumpdir(before)) if (r.code !== Dumpdir.R && r.code !== Dumpdir.T) held.add(r.name);
  return held.has(name) && dumpdirDrops(readDumpdir(now).keep, name, isDir);
}

function decide(test: DropTest | undefined, isDir: boolean): boolean {
  return test === "any" || (test === "notDir" && !isDir) || (test === "dir" && isDir);
}

test("droppedChildren() removes what the set comparison removes, for every kind on disk", () => {
  const rnd = random(20261207);
  for (let round = 0; round < 2000; round++) {
    const before = dumpdir(listing(rnd));
    const now = dumpdir(listing(rnd));
    const drops = droppedChildren(before, now);
    assert.ok(drops, "sorted listings are walked side by side");
    const tests = new Map<string, DropTest>(drops);
    assert.equal(tests.size, drops.length, "each name once");
    for (const bytes of NAMES) {
      const name = decodeName(bytes);
      // A directory listing never shows these: they are never removed.
      if (name === "" || name === "." || name === ".." || name.includes("/")) {
        assert.equal(tests.has(name), false, `"${name}" is not a directory entry`);
        continue;
      }
      for (const isDir of [false, true]) {
        assert.equal(
          decide(tests.get(name), isDir),
          reference(before, now, name, isDir),
          `round ${round}: "${name}" (${isDir ? "dir" : "not dir"}) in ${before} → ${now}`,
        );
      }
    }
  }
});

test("droppedChildren() gives up on listings out of byte order or with a name twice", () => {
  const a = enc.encode("a");
  const b = enc.encode("b");
  const sorted = dumpdir([["Y", a], ["D", b]]);
  assert.equal(droppedChildren(dumpdir([["Y", b], ["N", a]]), sorted), undefined);
  assert.equal(droppedChildren(sorted, dumpdir([["Y", b], ["N", a]])), undefined);
  assert.equal(droppedChildren(dumpdir([["Y", a], ["D", a]]), sorted), undefined);
  assert.equal(droppedChildren(sorted, dumpdir([["Y", a], ["N", a]])), undefined);
  // Rename records are not names of the directory: their order does not count.
  const renames = dumpdir([["Y", b], ["R", enc.encode("./z")], ["T", enc.encode("./a")]]);
  assert.deepEqual(droppedChildren(sorted, renames), [["a", "any"], ["b", "dir"]]);
  assert.deepEqual(droppedChildren(renames, sorted), [["b", "notDir"]]);
});

test("recordsRenames() tells what readDumpdir tells", () => {
  const rnd = random(7);
  for (let round = 0; round < 500; round++) {
    const d = dumpdir(listing(rnd));
    assert.equal(recordsRenames(d), readDumpdir(d).renames);
  }
  assert.equal(recordsRenames(new Uint8Array([0x59, 0x61])), false); // no end record
  assert.equal(recordsRenames(new Uint8Array([0x59, 0x61, 0, 0x58, 0x62])), true);
  assert.equal(recordsRenames(new Uint8Array([0x59, 0x61, 0, 0, 0x58, 0x62, 0])), false); // after the end
});
