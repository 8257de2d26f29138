/**
 * codec/bzip2.ts against the real `bzip2`: both decoders (libbz2 through FFI, and the JavaScript fallback)
 * give `bzip2 -dc`'s bytes for random and compressible data, several blocks and block sizes, concatenated and
 * empty streams, in small and large input chunks; and reject empty, truncated, corrupt and trailing data
 * with one "bzip2: …" message. Then `frost freezer restore` of a bzip2 backup made of several streams (as
 * pbzip2 writes), run as the real program (also with FROST_BIN).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Buffer } from "node:buffer";
import process from "node:process";
import { execFileSync, spawnSync } from "node:child_process";
import { bunzip2, type Bunzip2Implementation, bunzip2Implementation } from "../../codec/bzip2.ts";
import { cleanup, frost, pseudoRandom, tempDir } from "../_cli.ts";
import { assertSameTree } from "../_tree.ts";

const ROOT = path.resolve(import.meta.dirname!, "../..");
const MiB = 1024 * 1024;

/** Runs `bzip2 args` on `data` through files (a pipe both ways can deadlock a synchronous child). */
function runBzip2(args: string[], data: Uint8Array): Uint8Array {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-bzip2-"));
  try {
    const input = path.join(dir, "in");
    fs.writeFileSync(input, data);
    const out = fs.openSync(path.join(dir, "out"), "w");
    try {
      execFileSync("bzip2", [...args, "-c", input], { stdio: ["ignore", out, "pipe"] });
    } finally {
      fs.closeSync(out);
    }
    return new Uint8Array(fs.readFileSync(path.join(dir, "out")));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function bzip2(data: Uint8Array, level = 9): Uint8Array {
  return runBzip2([`-${level}`], data);
}

function bzip2dc(data: Uint8Array): Uint8Array {
  return runBzip2(["-d"], data);
}

/** `data` as a stream of `chunk`-byte pieces. */
function streamOf(data: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= data.byteLength) return controller.close();
      controller.enqueue(data.slice(at, at + chunk));
      at += chunk;
    },
  });
}

/** Decodes `data` with `implementation`, fed in `chunk`-byte pieces; also returns the largest output chunk. */
async function decode(data: Uint8Array, implementation: Bunzip2Implementation, chunk = 64 * 1024) {
  const parts: Uint8Array[] = [];
  let largest = 0;
  for await (const part of bunzip2(streamOf(data, chunk), { implementation })) {
    parts.push(part);
    largest = Math.max(largest, part.byteLength);
  }
  return { out: new Uint8Array(Buffer.concat(parts)), largest };
}

/** Deterministic compressible text with long runs (exercises the run-length passes). */
function compressible(size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = 12345;
  for (let i = 0; i < size;) {
    x = (x * 1103515245 + 12345) >>> 0;
    const run = (x >>> 16) % 300;
    const byte = 97 + ((x >>> 8) % 6);
    const n = Math.min(run, size - i);
    if (x & 1) out.fill(byte, i, i + n);
    else for (let k = 0; k < n; k++) out[i + k] = 97 + ((x >>> k) & 15);
    i += Math.max(n, 1);
  }
  return out;
}

const randomBytes = (size: number, seed = 7) => pseudoRandom(size, seed);

describe("bunzip2()", () => {
  it("uses libbz2 where the runtime can call it (Deno with --allow-ffi)", () => {
    assert.equal(bunzip2Implementation(), "libbz2");
  });

  it("falls back to the JavaScript decoder under Deno without --allow-ffi", () => {
    const dir = tempDir("bzip2-noffi");
    try {
      const script = path.join(dir, "which.ts");
      fs.writeFileSync(
        script,
        `import { bunzip2Implementation } from ${JSON.stringify(path.join(ROOT, "codec/bzip2.ts"))};\n` +
          `console.log(bunzip2Implementation());\n`,
      );
      const r = spawnSync(process.execPath, ["run", "--allow-read", "--no-prompt", "--quiet", script], {
        encoding: "utf8",
      });
      assert.equal(r.stdout.trim(), "js", r.stderr);
    } finally {
      cleanup(dir);
    }
  });

  for (const implementation of ["libbz2", "js"] as const) {
    describe(`with ${implementation}`, () => {
      const cases: [string, () => Uint8Array, number][] = [
        ["random data, 3 blocks of BZh9", () => randomBytes(2 * MiB + 12345), 9],
        ["compressible data with long runs, several blocks of BZh1", () => compressible(700 * 1024), 1],
        ["text", () => new TextEncoder().encode("frost restores Freezer backups\n".repeat(40000)), 6],
        ["one byte", () => new Uint8Array([7]), 9],
      ];
      for (const [name, make, level] of cases) {
        it(`decodes ${name} like bzip2 -dc, in small and large chunks`, async () => {
          const plain = make();
          const packed = bzip2(plain, level);
          const expected = bzip2dc(packed);
          assert.deepEqual(Buffer.from(expected), Buffer.from(plain));
          for (const chunk of [4099, 4 * MiB]) {
            const { out } = await decode(packed, implementation, chunk);
            assert.equal(out.byteLength, expected.byteLength);
            assert.ok(Buffer.from(out).equals(Buffer.from(expected)), `chunk ${chunk}`);
          }
        });
      }

      it("hands out at most 1 MiB at a time, even for a block that expands 45 times", async () => {
        const plain = new Uint8Array(40 * MiB); // zeros: one BZh9 block holds ~45 MB
        const packed = bzip2(plain, 9);
        assert.ok(packed.byteLength < 4096);
        const { out, largest } = await decode(packed, implementation);
        assert.equal(out.byteLength, plain.byteLength);
        assert.ok(out.every((b) => b === 0));
        assert.ok(largest <= MiB, `largest chunk ${largest}`);
      });

      it("decodes concatenated streams (pbzip2, cat a.bz2 b.bz2), an empty one among them", async () => {
        const a = compressible(300 * 1024);
        const b = randomBytes(100 * 1024);
        const packed = Buffer.concat([bzip2(a, 1), bzip2(new Uint8Array(0)), bzip2(b, 9), bzip2(a, 5)]);
        const expected = bzip2dc(packed);
        assert.equal(expected.byteLength, a.byteLength * 2 + b.byteLength);
        for (const chunk of [1, 3000, 4 * MiB]) {
          if (chunk === 1 && implementation === "js") continue; // byte by byte: slow, and the same path as 3000
          const { out } = await decode(packed, implementation, chunk === 1 ? 7 : chunk);
          assert.ok(Buffer.from(out).equals(Buffer.from(expected)), `chunk ${chunk}`);
        }
      });

      it("stops when its reader cancels, and cancels its input", async () => {
        const packed = bzip2(new Uint8Array(8 * MiB), 9);
        let inputCancelled = false;
        // Stream after stream, never ending (a 1 MiB piece: the JavaScript decoder waits for that much).
        const piece = Buffer.concat(Array.from({ length: Math.ceil(MiB / packed.byteLength) }, () => packed));
        const input = new ReadableStream<Uint8Array>({
          pull(controller) {
            controller.enqueue(piece.slice());
          },
          cancel() {
            inputCancelled = true;
          },
        });
        const reader = bunzip2(input, { implementation }).getReader();
        const first = await reader.read();
        assert.equal(first.done, false);
        assert.ok(first.value!.byteLength > 0 && first.value!.every((b) => b === 0));
        await reader.cancel(new Error("stop"));
        assert.equal(inputCancelled, true);
      });

      it("decodes an empty stream to nothing", async () => {
        const packed = bzip2(new Uint8Array(0));
        assert.equal(bzip2dc(packed).byteLength, 0);
        assert.equal((await decode(packed, implementation)).out.byteLength, 0);
      });

      const rejects = async (data: Uint8Array, message: RegExp) => {
        await assert.rejects(decode(data, implementation), (err: Error) => {
          assert.match(err.message, /^bzip2: /);
          assert.match(err.message, message);
          assert.equal(err.message.includes("\n"), false);
          return true;
        });
      };

      it("rejects empty input, other data and trailing garbage", async () => {
        await rejects(new Uint8Array(0), /empty input/);
        await rejects(new TextEncoder().encode("hello, not bzip2 at all"), /not a bzip2 stream/);
        const packed = bzip2(compressible(50000));
        await rejects(Buffer.concat([packed, Buffer.from("garbage!")]), /after the end of stream 1/);
      });

      it("rejects a truncated stream", async () => {
        const packed = bzip2(randomBytes(300 * 1024));
        for (const keep of [2, 10, 1000, packed.byteLength - 1]) {
          await rejects(packed.subarray(0, keep), /truncated/);
        }
      });

      it("rejects a block whose CRC does not match, naming the CRC mismatch", async () => {
        const plain = compressible(200 * 1024);
        const packed = bzip2(plain, 9);
        // The first block's CRC: bytes 10..13 ("BZh9", the 6-byte block magic, then the CRC).
        const bad = packed.slice();
        bad[12]! ^= 0x40;
        assert.throws(() => bzip2dc(bad));
        await rejects(bad, /CRC mismatch/);
        // Data changed in the middle of a block fails too (whatever check catches it first).
        const mid = packed.slice();
        mid[Math.floor(mid.byteLength / 2)]! ^= 0x10;
        assert.throws(() => bzip2dc(mid));
        await rejects(mid, /corrupt|CRC mismatch/);
      });
    });
  }
});

describe("frost freezer restore of a bzip2 backup", () => {
  let work: string;
  before(() => {
    work = tempDir("bzip2");
  });
  after(() => cleanup(work));

  it("restores a backup written as several bzip2 streams (pbzip2) and fails on a corrupt one", async () => {
    const src = path.join(work, "src");
    fs.mkdirSync(path.join(src, "dir"), { recursive: true });
    fs.writeFileSync(path.join(src, "random.bin"), randomBytes(1536 * 1024));
    fs.writeFileSync(path.join(src, "dir", "text.txt"), compressible(900 * 1024));
    fs.writeFileSync(path.join(src, "empty"), "");
    const tar = execFileSync("tar", ["--create", `--listed-incremental=${path.join(work, "snar")}`, "."], {
      cwd: src,
      maxBuffer: 1 << 28,
    });
    // Two streams, as pbzip2 or `cat a.bz2 b.bz2` make them.
    const cut = 700 * 1024;
    const data = Buffer.concat([bzip2(tar.subarray(0, cut), 9), bzip2(tar.subarray(cut), 1)]);
    const z = 1700000000;
    const store = path.join(work, "store");
    const dir = `web1_etc/${z}/0_${z}`;
    const write = (key: string, bytes: Uint8Array | string) => {
      fs.mkdirSync(path.dirname(path.join(store, key)), { recursive: true });
      fs.writeFileSync(path.join(store, key), bytes);
    };
    write(
      `metadata/tar/${dir}/metadata`,
      JSON.stringify({ engine_name: "tar", compression: "bzip2", encryption: false }),
    );
    write(`data/tar/${dir}/data`, data);
    const to = path.join(work, "restored");
    const args = ["freezer", "restore", "--storage", store, "--hostname", "web1", "--name", "etc"];
    const r = await frost([...args, "--to", to]);
    assert.equal(r.code, 0, r.stderr);
    assertSameTree(src, to, { mtimePrecisionNs: 1_000_000_000n }); // GNU tar keeps whole seconds

    // The second stream's first block CRC changed: one line naming the backup and the CRC mismatch.
    const bad = Buffer.from(data);
    const second = bad.indexOf(Buffer.from("BZh1"), 4);
    bad[second + 11]! ^= 0x01;
    write(`data/tar/${dir}/data`, bad);
    const f = await frost([...args, "--to", to + "-bad"]);
    assert.equal(f.code, 1, f.stderr);
    assert.match(f.stderr, /^frost: .*web1_etc\/1700000000\/0_1700000000.*bzip2: .*CRC mismatch/m);
    assert.equal(f.stderr.trim().split("\n").filter((l) => l.includes("CRC mismatch")).length, 1, f.stderr);
  });
});
