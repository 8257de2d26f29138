/**
 * TarReader tells its handler each range of the stream it reads past (`TarHandler.skipping`), at the right
 * offsets, and takes `readPast(n)` in place of bytes of such a range: the members after it come at the same
 * offsets, with the same names, as when every byte is pushed. On an archive written by GNU tar.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { Buffer } from "node:buffer";
import { execFileSync } from "node:child_process";
import { type TarEntry, TarReader } from "../../engines/_tar_read.ts";
import { cleanup, pseudoRandom, tempDir } from "../_cli.ts";

interface Seen {
  entries: [string, number][];
  told: [string, number, number][];
}

/**
 * Reads `archive` taking no member's data, in chunks of `chunk` bytes; with `past`, the bytes of each told
 * range are replaced, from `skipFrom` bytes into it on, by `readPast` calls of at most `past` bytes.
 */
function read(archive: Uint8Array, chunk: number, past?: number, skipFrom = 0): Seen {
  const seen: Seen = { entries: [], told: [] };
  let last = "";
  let range: [number, number] | undefined;
  const reader = new TarReader({
    entry(e: TarEntry) {
      last = e.name;
      seen.entries.push([e.name, e.offset]);
      return false;
    },
    data() {
      throw new Error("no data was asked for");
    },
    end() {},
    warn() {},
    skipping(offset, length) {
      seen.told.push([last, offset, length]);
      range = [offset + skipFrom, offset + length];
    },
  });
  let at = 0;
  while (at < archive.length) {
    if (past && range && at >= range[0] && at < range[1]) {
      const n = Math.min(past, range[1] - at);
      reader.readPast(n);
      at += n;
      continue;
    }
    let end = Math.min(at + chunk, archive.length);
    if (past && range && at < range[0]) end = Math.min(end, range[0]);
    reader.push(archive.subarray(at, end));
    at = end;
  }
  reader.finish();
  return seen;
}

describe("TarReader's skipped ranges", () => {
  let dir: string;
  let archive: Uint8Array;
  const files: Record<string, Uint8Array> = {};

  before(() => {
    dir = tempDir("tar-read-skip");
    const src = path.join(dir, "src");
    fs.mkdirSync(src);
    const sizes: Record<string, number> = {
      "a": 1000,
      "big1": 700_001,
      "big2": 600_000,
      ["long".repeat(40)]: 300_007,
      "c": 10,
      "empty": 0,
    };
    for (const [k, [name, size]] of Object.entries(sizes).entries()) {
      files[name] = pseudoRandom(size, k + 1);
      fs.writeFileSync(path.join(src, name), files[name]!);
    }
    archive = new Uint8Array(
      execFileSync("tar", ["--format=posix", "--sort=name", "-C", src, "-cf", "-", "."], {
        maxBuffer: 64 << 20,
      }),
    );
  });
  after(() => cleanup(dir));

  // 512: every header ends a chunk (the range is told after the push); 1: byte by byte.
  for (const chunk of [10_007, 512, 1]) {
    it(`tells each member's data and padding at its offset in the stream (chunks of ${chunk} bytes)`, () => {
      const seen = read(archive, chunk);
      const told = seen.told.filter(([name]) => name !== "./");
      assert.deepEqual(
        told.map(([name]) => name).sort(),
        Object.keys(files).filter((n) => files[n]!.length > 0).map((n) => "./" + n).sort(),
      );
      for (const [name, offset, length] of told) {
        const data = files[name.slice(2)]!;
        assert.equal(length, Math.ceil(data.length / 512) * 512, name);
        assert.ok(
          Buffer.from(archive.subarray(offset, offset + data.length)).equals(data),
          `${name}'s data at ${offset}`,
        );
      }
    });
  }

  const cases = [[1, 0, 10_007], [4093, 0, 512], [1 << 20, 0, 10_007], [65_537, 3, 777], [1 << 20, 511, 512]];
  for (const [past, skipFrom, chunk] of cases) {
    it(`reads the same members when what it skips comes as readPast(≤ ${past}) from ${skipFrom} on, in chunks of ${chunk}`, () => {
      const plain = read(archive, chunk!);
      const skipped = read(archive, chunk!, past, skipFrom);
      assert.deepEqual(skipped, plain);
    });
  }

  it("refuses readPast outside a skipped range", () => {
    const reader = new TarReader({ entry: () => false, data() {}, end() {}, warn() {}, skipping() {} });
    assert.throws(() => reader.readPast(1), /outside a skipped range/);
  });
});
