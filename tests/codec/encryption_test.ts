/**
 * encryption.ts: the streaming AEAD (round trips, tampering, truncation, reordering, splicing), key wrapping
 * by passphrase and by X25519 recipient, the KEK cache, and the secret files. Runs under `deno test` and
 * `bun test`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fs from "node:fs";
import nodeCrypto from "node:crypto";
import os from "node:os";
import path from "node:path";
import { isShared } from "../../base/bytes.ts";
import {
  checkEncryptionInfo,
  childScrypt,
  childScryptDetailed,
  createDecryptor,
  createEncryptor,
  DataKey,
  decryptBytes,
  DecryptionError,
  decryptorGivesBack,
  DEFAULT_SCRYPT,
  encryptBytes,
  type EncryptionInfo,
  generateDataKey,
  generateIdentity,
  KeyRing,
  MissingKeyError,
  newScryptParams,
  nodeScrypt,
  openText,
  parseIdentity,
  parseRecipient,
  type PassphraseEncryption,
  readIdentityFile,
  readPassFile,
  readRecipientFile,
  type RecipientEncryption,
  recipientOf,
  type ScryptFunction,
  sealText,
  streamId,
  unwrapDataKey,
  wrapDataKey,
  WrongKeyError,
} from "../../codec/encryption.ts";
import { FrostError, UsageError } from "../../base/errors.ts";
import { concat, streamOf } from "../_streams.ts";

const MiB = 1 << 20;
/** The default chunk size (256 KiB). */
const CHUNK = 1 << 18;
const HEADER = 17;
const TAG = 16;

/** Deterministic bytes (xorshift32). */
function bytesOf(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Cuts `bytes` into pieces whose sizes cycle through `sizes`. */
function cut(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let offset = 0;
  let i = 0;
  while (offset < bytes.byteLength) {
    const n = Math.min(sizes[i++ % sizes.length]!, bytes.byteLength - offset);
    pieces.push(bytes.slice(offset, offset + n));
    offset += n;
  }
  return pieces;
}

/** Runs pieces through a transform; returns what came out before the end or the error. */
async function run(
  pieces: Uint8Array[],
  transform: TransformStream<Uint8Array, Uint8Array>,
): Promise<{ out: Uint8Array; error: unknown }> {
  const parts: Uint8Array[] = [];
  let error: unknown = null;
  try {
    for await (const part of streamOf(pieces).pipeThrough(transform)) parts.push(part);
  } catch (err) {
    error = err;
  }
  return { out: concat(parts), error };
}

async function encrypt(
  key: DataKey,
  id: string,
  plain: Uint8Array,
  sizes = [plain.byteLength || 1],
  chunkLog2?: number,
) {
  const { out, error } = await run(cut(plain, sizes), createEncryptor(key, id, { chunkLog2 }));
  assert.equal(error, null);
  return out;
}

function decrypt(key: DataKey, id: string, sealed: Uint8Array, sizes = [sealed.byteLength || 1]) {
  return run(cut(sealed, sizes), createDecryptor(key, id));
}

/** Asserts a DecryptionError of `failure` kind, and that only whole chunks before the bad one came out. */
function assertRejected(
  result: { out: Uint8Array; error: unknown },
  plain: Uint8Array,
  badChunk: number,
  chunkSize: number,
  failure?: string,
) {
  assert.ok(result.error instanceof DecryptionError, `expected a DecryptionError, got ${result.error}`);
  if (failure) assert.equal(result.error.failure, failure, result.error.message);
  assert.ok(
    result.out.byteLength <= Math.max(0, badChunk) * chunkSize,
    "plaintext of the bad chunk came out",
  );
  assert.equal(result.out.byteLength % chunkSize, 0);
  assert.deepEqual(result.out, plain.subarray(0, result.out.byteLength));
}

/** Splits a sealed stream into its header and chunk pieces. */
function pieces(sealed: Uint8Array, chunkSize: number): { header: Uint8Array; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  for (let o = HEADER; o < sealed.byteLength; o += chunkSize + TAG) {
    chunks.push(sealed.slice(o, Math.min(sealed.byteLength, o + chunkSize + TAG)));
  }
  return { header: sealed.slice(0, HEADER), chunks };
}

describe("streaming AEAD", () => {
  it("round-trips 0 B, 1 B, a chunk ± 1, 1 MiB ± 1 and ~5 MiB through odd input chunk sizes", async () => {
    const key = await generateDataKey();
    const id = streamId("20261127T101500.123Z", "data");
    const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, MiB - 1, MiB, MiB + 1, 5 * MiB + 12345];
    const chunkings = [[1 << 30], [7, 65537, MiB + 3, 333], [MiB], [1000003]];
    for (const size of sizes) {
      const plain = bytesOf(size, size + 1);
      for (const chunking of chunkings) {
        const sealed = await encrypt(key, id, plain, chunking);
        const chunks = Math.max(1, Math.ceil(size / CHUNK));
        assert.equal(sealed.byteLength, HEADER + size + chunks * TAG, `size ${size}`);
        const back = await decrypt(key, id, sealed, chunking.map((n) => n + 5));
        assert.equal(back.error, null, `size ${size}: ${back.error}`);
        assert.deepEqual(back.out, plain, `size ${size} chunking ${chunking}`);
      }
    }
  });

  it("hands input chunks back, and input buffers refilled at once do not change what comes out", async () => {
    const key = await generateDataKey();
    const id = streamId("20261127T101500.123Z", "data");
    // (Not deepEqual: its diff of two MiB-sized arrays would take the process's memory.)
    const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;
    /**
     * Feeds `bytes` through `transform` in pieces, each written into a buffer the transform gave back if
     * there is one (scribbled over the moment it comes back), else into a new one; returns the output, how
     * many pieces were given back and how many buffers served them all.
     */
    const throughOneBuffer = async (
      bytes: Uint8Array,
      sizes: number[],
      make: (giveBack: (chunk: Uint8Array) => void) => TransformStream<Uint8Array, Uint8Array>,
    ) => {
      const largest = Math.max(...sizes);
      const lent = new Set<ArrayBufferLike>();
      const free: Uint8Array[] = [];
      let made = 0;
      let given = 0;
      const transform = make((chunk) => {
        assert.ok(lent.delete(chunk.buffer), "a chunk that was not handed in (or twice) was given back");
        const buffer = new Uint8Array(chunk.buffer, 0, largest);
        buffer.fill(0xaa);
        free.push(buffer);
        given++;
      });
      const writer = transform.writable.getWriter();
      const parts: Uint8Array[] = [];
      const reading = (async () => {
        for await (const part of transform.readable) parts.push(part.slice());
      })();
      let offset = 0;
      let i = 0;
      while (offset < bytes.byteLength) {
        const n = Math.min(sizes[i++ % sizes.length]!, bytes.byteLength - offset);
        const buffer = free.pop() ?? (made++, new Uint8Array(largest));
        const into = buffer.subarray(0, n);
        into.set(bytes.subarray(offset, offset + n));
        lent.add(buffer.buffer);
        offset += n;
        await writer.write(into);
      }
      await writer.close();
      await reading;
      return { out: concat(parts), given, pieces: i, buffers: made };
    };
    for (const size of [0, 1, CHUNK, 3 * CHUNK + 5, 2 * MiB + 77]) {
      const plain = bytesOf(size, size + 3);
      for (const sizes of [[CHUNK], [1000, CHUNK + 1, 5], [MiB]]) {
        const sealed = await throughOneBuffer(
          plain,
          sizes,
          (giveBack) => createEncryptor(key, id, { giveBack }),
        );
        assert.equal(sealed.given, sealed.pieces, `size ${size}: every input chunk is given back`);
        assert.ok(sealed.buffers <= 2, `size ${size} sizes ${sizes}: ${sealed.buffers} input buffers`);
        const back = await decrypt(key, id, sealed.out, [65536]);
        assert.equal(back.error, null, `size ${size} sizes ${sizes}: ${back.error}`);
        assert.ok(same(back.out, plain), `size ${size} sizes ${sizes}: the output changed`);
        const opened = await throughOneBuffer(
          sealed.out,
          sizes,
          (giveBack) => createDecryptor(key, id, { giveBack }),
        );
        // The decryptor gives chunks back only where it opens them synchronously (Bun).
        assert.equal(opened.given, decryptorGivesBack(key) ? opened.pieces : 0);
        assert.ok(same(opened.out, plain), `decrypted from one buffer: size ${size} sizes ${sizes}`);
      }
    }
  });

  it("reuses the output chunks its reader gives back, and scribbling over them changes nothing", async () => {
    const key = await generateDataKey();
    const id = streamId("20261127T101500.123Z", "data");
    const plain = bytesOf(7 * MiB + 12345, 4);
    const encryptor = createEncryptor(key, id);
    const writer = encryptor.writable.getWriter();
    const parts: Uint8Array[] = [];
    const buffers = new Set<ArrayBufferLike>();
    const shared: boolean[] = [];
    const reading = (async () => {
      for await (const part of encryptor.readable) {
        parts.push(part.slice());
        buffers.add(part.buffer);
        shared.push(isShared(part));
        if (encryptor.giveBack) {
          part.fill(0x55); // the reader is done with it: the encryptor must not read these bytes again
          encryptor.giveBack(part);
        }
      }
    })();
    for (let offset = 0; offset < plain.byteLength; offset += 300_000) {
      await writer.write(plain.slice(offset, offset + 300_000));
    }
    await writer.close();
    await reading;
    const back = await decrypt(key, id, concat(parts), [65536]);
    assert.equal(back.error, null);
    assert.equal(Buffer.compare(back.out, plain), 0, "the stream decrypts to the input");
    if (encryptor.giveBack) {
      // Under Bun: ~1 MiB outputs (4 sealed chunks each), a few buffers serving the whole stream.
      assert.ok(parts.length <= 10, `${parts.length} outputs for 7 MiB`);
      assert.ok(buffers.size <= 3, `${buffers.size} output buffers`);
      // On shared memory, after the header: a segment's hash reads them in place on the hashing worker.
      assert.deepEqual(shared.slice(1), shared.slice(1).map(() => true));
    } else {
      assert.equal(decryptorGivesBack(key), false, "output reuse goes with the node:crypto path");
    }
  });

  it("reads a stream fed one byte at a time, and the one-shot helpers use the same format", async () => {
    const key = await generateDataKey();
    const plain = bytesOf(5000, 9);
    const sealed = await encrypt(key, "s", plain, [1], 10);
    assert.deepEqual((await decrypt(key, "s", sealed, [1])).out, plain);
    const oneShot = await encryptBytes(key, "s", plain);
    assert.deepEqual((await decrypt(key, "s", oneShot, [3])).out, plain);
    assert.deepEqual(await decryptBytes(key, "s", await encrypt(key, "s", plain, [100])), plain);
  });

  it("writes the documented header and a fresh random nonce prefix per stream", async () => {
    const key = await generateDataKey();
    const a = await encryptBytes(key, "x", new Uint8Array(10));
    const b = await encryptBytes(key, "x", new Uint8Array(10));
    assert.equal(new TextDecoder().decode(a.subarray(0, 8)), "FROSTENC");
    assert.equal(a[8], 1);
    assert.equal(a[9], 18);
    assert.notDeepEqual(a.subarray(10, 17), b.subarray(10, 17));
    assert.notDeepEqual(a.subarray(HEADER), b.subarray(HEADER));
  });

  it("matches an independent decoder built from docs/FORMAT.md (section Encryption)", async () => {
    const raw = bytesOf(32, 77);
    const key = await DataKey.fromBytes(raw);
    const plain = bytesOf(2500, 5);
    const sealed = await encrypt(key, "b/state", plain, [999], 10);
    // Decode by hand with plain WebCrypto calls, following the spec.
    const aes = await crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, "AES-GCM", false, [
      "decrypt",
    ]);
    const header = sealed.subarray(0, HEADER);
    const aad = concat([header, new TextEncoder().encode("b/state")]);
    const chunkSize = 2 ** header[9]!;
    const out: Uint8Array[] = [];
    let index = 0;
    for (let o = HEADER; o < sealed.byteLength; o += chunkSize + TAG, index++) {
      const piece = sealed.subarray(o, Math.min(sealed.byteLength, o + chunkSize + TAG));
      const nonce = new Uint8Array(12);
      nonce.set(header.subarray(10, 17), 0);
      new DataView(nonce.buffer).setUint32(7, index);
      nonce[11] = o + chunkSize + TAG >= sealed.byteLength ? 1 : 0;
      out.push(
        new Uint8Array(
          await crypto.subtle.decrypt(
            { name: "AES-GCM", iv: nonce, additionalData: aad as Uint8Array<ArrayBuffer> },
            aes,
            piece as Uint8Array<ArrayBuffer>,
          ),
        ),
      );
    }
    assert.equal(index, 3);
    assert.deepEqual(concat(out), plain);
  });

  it("detects a flipped byte at every offset of a small-chunk stream, emitting nothing of the bad chunk", async () => {
    const key = await generateDataKey();
    const chunk = 1024;
    const plain = bytesOf(3 * chunk + 100, 3);
    const sealed = await encrypt(key, "t", plain, [5000], 10);
    for (let offset = 0; offset < sealed.byteLength; offset++) {
      const bad = sealed.slice();
      bad[offset]! ^= 0x01 << (offset % 8);
      const result = await decrypt(key, "t", bad, [700]);
      const badChunk = offset < HEADER ? 0 : Math.floor((offset - HEADER) / (chunk + TAG));
      assertRejected(result, plain, badChunk, chunk);
    }
  });

  it("detects flipped bytes in the header, the data and the tag of every default-size chunk", async () => {
    const key = await generateDataKey();
    const plain = bytesOf(3 * CHUNK + 54321, 4);
    const sealed = await encrypt(key, "data", plain, [MiB]);
    const piece = CHUNK + TAG;
    const offsets: number[] = [];
    for (let i = 0; i < HEADER; i++) offsets.push(i);
    for (let c = 0; c < 4; c++) {
      const start = HEADER + c * piece;
      const end = Math.min(sealed.byteLength, start + piece);
      offsets.push(
        start,
        start + 1,
        start + 4096,
        Math.floor((start + end) / 2),
        end - TAG - 1,
        end - TAG,
        end - 1,
      );
    }
    for (const offset of offsets) {
      const bad = sealed.slice();
      bad[offset]! ^= 0x80;
      const badChunk = offset < HEADER ? 0 : Math.floor((offset - HEADER) / piece);
      const result = await decrypt(key, "data", bad, [CHUNK + 7]);
      assertRejected(result, plain, badChunk, CHUNK);
      assert.match((result.error as Error).message, /"data"/);
    }
  });

  it("detects truncation: a dropped last chunk, a cut inside a chunk, a bare or partial header", async () => {
    const key = await generateDataKey();
    const chunk = 1024;
    const plain = bytesOf(3 * chunk + 10, 5);
    const sealed = await encrypt(key, "t", plain, [chunk], 10);
    const { header, chunks } = pieces(sealed, chunk);
    // Drop the final chunk: the stream now ends at a chunk boundary.
    const dropped = await decrypt(key, "t", concat([header, ...chunks.slice(0, 3)]));
    assertRejected(dropped, plain, 2, chunk, "truncated");
    assert.match((dropped.error as Error).message, /truncated/);
    // Cut at every length inside the last chunks.
    for (let length = sealed.byteLength - 1; length > HEADER + 2 * (chunk + TAG); length -= 7) {
      const result = await decrypt(key, "t", sealed.subarray(0, length));
      assertRejected(result, plain, Math.floor((length - HEADER - 1) / (chunk + TAG)), chunk);
    }
    for (const length of [0, 1, 10, HEADER - 1, HEADER]) {
      const result = await decrypt(key, "t", sealed.subarray(0, length));
      assertRejected(result, plain, 0, chunk, "truncated");
    }
    // The same with default chunks: drop the final chunk of a 2 chunks + 1 byte stream, and cut it mid-chunk.
    const big = bytesOf(2 * CHUNK + 1, 6);
    const bigSealed = await encrypt(key, "d", big);
    assertRejected(
      await decrypt(key, "d", bigSealed.subarray(0, HEADER + 2 * (CHUNK + TAG))),
      big,
      1,
      CHUNK,
      "truncated",
    );
    assertRejected(await decrypt(key, "d", bigSealed.subarray(0, HEADER + CHUNK)), big, 0, CHUNK);
  });

  it("detects reordered, duplicated, dropped and appended chunks", async () => {
    const key = await generateDataKey();
    const chunk = 1024;
    const plain = bytesOf(4 * chunk + 10, 7);
    const sealed = await encrypt(key, "t", plain, [chunk], 10);
    const { header, chunks } = pieces(sealed, chunk);
    const [c0, c1, c2, c3, c4] = chunks as [Uint8Array, Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    assertRejected(
      await decrypt(key, "t", concat([header, c1, c0, c2, c3, c4])),
      plain,
      0,
      chunk,
      "tampered",
    );
    assertRejected(
      await decrypt(key, "t", concat([header, c0, c2, c1, c3, c4])),
      plain,
      1,
      chunk,
      "tampered",
    );
    assertRejected(await decrypt(key, "t", concat([header, c0, c1, c1, c2, c3, c4])), plain, 2, chunk);
    assertRejected(await decrypt(key, "t", concat([header, c0, c1, c3, c4])), plain, 2, chunk);
    assertRejected(await decrypt(key, "t", concat([header, c0, c1, c2, c3])), plain, 3, chunk, "truncated");
    // A full final chunk followed by more data: the data was extended.
    const even = bytesOf(2 * chunk, 8);
    const evenSealed = pieces(await encrypt(key, "t", even, [chunk], 10), chunk);
    assert.equal(evenSealed.chunks.length, 2);
    const extended = await decrypt(key, "t", concat([evenSealed.header, ...evenSealed.chunks, c2]));
    assertRejected(extended, even, 1, chunk, "extended");
    // Two whole streams concatenated.
    assertRejected(await decrypt(key, "t", concat([sealed, sealed])), plain, 4, chunk);
  });

  it("detects chunks spliced from another stream, another stream id or another key", async () => {
    const key = await generateDataKey();
    const chunk = 1024;
    const plain = bytesOf(3 * chunk, 9);
    const a = pieces(await encrypt(key, "B/data", plain, [chunk], 10), chunk);
    const b = pieces(await encrypt(key, "B/data", plain, [chunk], 10), chunk); // same id, other prefix
    const s = pieces(await encrypt(key, "B/state", plain, [chunk], 10), chunk);
    const splice = (other: Uint8Array[]) => concat([a.header, a.chunks[0]!, other[1]!, a.chunks[2]!]);
    assertRejected(await decrypt(key, "B/data", splice(b.chunks)), plain, 1, chunk, "tampered");
    assertRejected(await decrypt(key, "B/data", splice(s.chunks)), plain, 1, chunk, "tampered");
    // A whole stream read under another id (state read as data) or with another backup's key.
    const whole = concat([s.header, ...s.chunks]);
    assertRejected(await decrypt(key, "B/data", whole), plain, 0, chunk, "tampered");
    assertRejected(await decrypt(await generateDataKey(), "B/state", whole), plain, 0, chunk, "tampered");
    assert.equal((await decrypt(key, "B/state", whole)).error, null);
    // Ids of the same length (another backup's data under the same key) are told apart too.
    assertRejected(await decrypt(key, "C/state", whole), plain, 0, chunk, "tampered");
  });

  it("rejects a stream that is not frost's, naming it with the label", async () => {
    const key = await generateDataKey();
    const sealed = await encryptBytes(key, "x", bytesOf(100));
    const bad = sealed.slice();
    bad[9] = 40;
    const result = await run([bad], createDecryptor(key, "x", { label: 'the state of backup "B"' }));
    assert.ok(result.error instanceof DecryptionError);
    assert.equal(result.error.failure, "format");
    assert.match(result.error.message, /^Cannot decrypt the state of backup "B": /);
    const plainText = await run(
      [new TextEncoder().encode("just some text, not encrypted")],
      createDecryptor(key, "x"),
    );
    assert.match((plainText.error as Error).message, /not a frost encrypted stream/);
  });

  it("seals and opens text (manifest fields), rejecting an altered one", async () => {
    const key = await generateDataKey();
    const sealed = await sealText(key, streamId("B", "manifest"), "/srv/ünïcode path");
    assert.equal(await openText(key, streamId("B", "manifest"), sealed), "/srv/ünïcode path");
    const bytes = Buffer.from(sealed, "base64");
    bytes[HEADER + 2]! ^= 1;
    await assert.rejects(openText(key, streamId("B", "manifest"), bytes.toString("base64")), DecryptionError);
    await assert.rejects(openText(key, streamId("C", "manifest"), sealed), DecryptionError);
  });
});

/**
 * A key ring whose scrypt counts its calls and runs at 1/128 of the asked N (so default parameters take a few
 * milliseconds); every parameter still changes the derived key.
 */
function fastRing(): KeyRing & { calls: () => number } {
  let calls = 0;
  const scrypt: ScryptFunction = (passphrase, salt, cost) => {
    calls++;
    return nodeScrypt(passphrase, salt, { ...cost, N: Math.max(2, cost.N / 128) });
  };
  return Object.assign(new KeyRing({ scrypt }), { calls: () => calls });
}

describe("passphrase wrapping", () => {
  it("wraps and unwraps with default scrypt parameters, stored in a JSON-safe object", async () => {
    const key = await generateDataKey();
    const ring = new KeyRing();
    const info = await wrapDataKey(key, { passphrase: "correct horse" }, ring);
    assert.equal(info.scheme, "passphrase");
    assert.ok(info.scheme === "passphrase");
    assert.deepEqual({ ...info.kdf, salt: undefined }, {
      name: "scrypt",
      ...DEFAULT_SCRYPT,
      salt: undefined,
    });
    assert.equal(Buffer.from(info.kdf.salt, "base64").byteLength, 16);
    const stored = JSON.parse(JSON.stringify(info)) as EncryptionInfo;
    const back = await unwrapDataKey(stored, { passphrase: "correct horse" }, "B", new KeyRing());
    const sealed = await encryptBytes(key, "x", bytesOf(3000));
    assert.deepEqual(await decryptBytes(back, "x", sealed), bytesOf(3000));
  });

  it("says which passphrase is wrong, and which flag is missing", async () => {
    const ring = fastRing();
    const info = await wrapDataKey(await generateDataKey(), { passphrase: "right" }, ring);
    await assert.rejects(
      unwrapDataKey(info, { passphrase: "wrong" }, "20261127T101500.123Z", ring),
      (err) => {
        assert.ok(err instanceof WrongKeyError && err instanceof FrostError);
        assert.equal(err.message, 'Wrong passphrase for backup "20261127T101500.123Z"');
        return true;
      },
    );
    const missing = 'backup "B1" is encrypted: pass --encrypt-pass-file FILE (or set FROST_PASSPHRASE)';
    for (const secrets of [{}, { passphrase: "" }, { identity: (await generateIdentity()).identity }]) {
      await assert.rejects(unwrapDataKey(info, secrets, "B1", ring), (err) => {
        assert.ok(err instanceof MissingKeyError && err instanceof UsageError);
        assert.equal(err.message, missing);
        return true;
      });
    }
  });

  it("rejects altered parameters or an altered wrapped key as a wrong passphrase", async () => {
    const ring = fastRing();
    const info = await wrapDataKey(await generateDataKey(), { passphrase: "pw" }, ring);
    assert.ok(info.scheme === "passphrase");
    const variants: EncryptionInfo[] = [
      { ...info, kdf: { ...info.kdf, N: 2 ** 18 } },
      { ...info, kdf: { ...info.kdf, p: 2 } },
      { ...info, kdf: { ...info.kdf, salt: Buffer.alloc(16, 1).toString("base64") } },
      {
        ...info,
        wrappedKey: Buffer.from(Buffer.from(info.wrappedKey, "base64").map((b, i) => i === 20 ? b ^ 1 : b))
          .toString("base64"),
      },
    ];
    for (const variant of variants) {
      await assert.rejects(unwrapDataKey(variant, { passphrase: "pw" }, "B", ring), WrongKeyError);
    }
  });

  it("derives the key-encryption key once for a chain that shares a salt (and once per distinct salt)", async () => {
    const ring = fastRing();
    const first = await wrapDataKey(await generateDataKey(), { passphrase: "pw" }, ring);
    assert.ok(first.scheme === "passphrase");
    // Later backups of the series reuse the previous backup's kdf (salt and cost).
    const chain: EncryptionInfo[] = [first];
    for (let i = 0; i < 4; i++) {
      const info = await wrapDataKey(await generateDataKey(), { passphrase: "pw", kdf: first.kdf }, ring);
      assert.ok(info.scheme === "passphrase");
      assert.deepEqual(info.kdf, first.kdf);
      chain.push(info);
    }
    assert.equal(ring.calls(), 1);
    // A new process (a new ring) restoring the whole chain: one derivation, even when unwrapping in parallel.
    const ring2 = fastRing();
    const keys = await Promise.all(
      chain.map((info, i) => unwrapDataKey(info, { passphrase: "pw" }, `B${i}`, ring2)),
    );
    assert.equal(keys.length, 5);
    for (const info of chain) await unwrapDataKey(info, { passphrase: "pw" }, "B", ring2);
    assert.equal(ring2.calls(), 1);
    assert.equal(ring2.derivations, 1);
    // Another salt or another passphrase needs its own derivation (a wrong one is derived once too).
    await wrapDataKey(await generateDataKey(), { passphrase: "pw" }, ring2);
    assert.equal(ring2.calls(), 2);
    await assert.rejects(unwrapDataKey(first, { passphrase: "other" }, "B", ring2), WrongKeyError);
    await assert.rejects(unwrapDataKey(first, { passphrase: "other" }, "B", ring2), WrongKeyError);
    assert.equal(ring2.calls(), 3);
  });

  it("does not reuse a previous kdf that is cheaper than the default (an altered manifest)", async () => {
    const ring = fastRing();
    const weak = newScryptParams({ N: 1024 });
    const info = await wrapDataKey(await generateDataKey(), { passphrase: "pw", kdf: weak }, ring);
    assert.ok(info.scheme === "passphrase");
    assert.equal(info.kdf.N, DEFAULT_SCRYPT.N);
    assert.notEqual(info.kdf.salt, weak.salt);
    const lowR = await wrapDataKey(await generateDataKey(), {
      passphrase: "pw",
      kdf: { ...weak, N: 2 ** 17, r: 1 },
    }, ring);
    assert.ok(lowR.scheme === "passphrase");
    assert.notEqual(lowR.kdf.salt, weak.salt);
  });
});

describe("background key derivation", () => {
  const cost = { N: 1024, r: 8, p: 1 };
  const secret = new TextEncoder().encode("pw");
  const salt = new Uint8Array(16).fill(7);

  /** Pids of the key derivation children running now (Linux: from /proc). */
  function kdfChildren(): string[] {
    return fs.readdirSync("/proc").filter((pid) => {
      try {
        const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
        return /^\d+$/.test(pid) && cmdline.includes("kdf_child.ts");
      } catch {
        return false;
      }
    });
  }

  it("derives in a child process at the lowest priority, the same key as the thread pool", async () => {
    const own = os.getPriority();
    const { key, priority } = await childScryptDetailed(secret, salt, cost, { nice: 19 });
    assert.deepEqual(key, await nodeScrypt(secret, salt, cost));
    if (process.platform === "linux") assert.equal(priority, 19);
    assert.equal(os.getPriority(), own, "frost itself keeps its priority");
  });

  it("derives in a child process at normal priority by default, the same key", async () => {
    const { key, priority } = await childScryptDetailed(secret, salt, cost);
    assert.deepEqual(key, await nodeScrypt(secret, salt, cost));
    if (process.platform === "linux") assert.equal(priority, os.getPriority(), "frost's own priority");
    assert.deepEqual(await childScrypt(secret, salt, cost), key);
  });

  it("kills the child when aborted", async () => {
    const stop = new AbortController();
    const before = kdfChildren();
    const pending = childScryptDetailed(secret, salt, { N: 2 ** 20, r: 8, p: 1 }, { signal: stop.signal });
    if (process.platform === "linux") {
      for (let i = 0; i < 100 && kdfChildren().length === before.length; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(kdfChildren().length, before.length + 1, "the child runs");
    }
    stop.abort();
    await assert.rejects(pending, /stopped/);
    if (process.platform !== "linux") return;
    for (let i = 0; i < 100 && kdfChildren().length > before.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(kdfChildren(), before, "the child is gone");
  });

  it("passes on scrypt's own error (parameters it refuses)", async () => {
    await assert.rejects(childScryptDetailed(secret, salt, { N: 1000, r: 8, p: 1 }), /N|param|scrypt/i);
  });

  /**
   * A ring whose idle derivation waits until `release` (or fails), counting both kinds of call; both run at
   * 1/128 of the asked N, as `fastRing()` does, so that their keys match its keys.
   */
  function ringWithIdle(idleFails = false) {
    const counts = { idle: 0, urgent: 0, idleAborted: 0 };
    const fast = (c: { N: number; r: number; p: number }) => ({ ...c, N: Math.max(2, c.N / 128) });
    let release!: () => void;
    const idleScrypt: ScryptFunction = (passphrase, salt, cost, signal) => {
      counts.idle++;
      signal?.addEventListener("abort", () => counts.idleAborted++);
      return new Promise((resolve, reject) => {
        if (idleFails) reject(new Error("no threads"));
        release = () => nodeScrypt(passphrase, salt, fast(cost)).then(resolve, reject);
      });
    };
    const scrypt: ScryptFunction = (passphrase, salt, cost) => {
      counts.urgent++;
      return nodeScrypt(passphrase, salt, fast(cost));
    };
    return { ring: new KeyRing({ scrypt, idleScrypt }), counts, release: () => release() };
  }

  /** Whether two AES-GCM keys are the same key: one opens what the other sealed. */
  async function sameKey(a: CryptoKey, b: CryptoKey): Promise<boolean> {
    const iv = new Uint8Array(12);
    const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, a, new Uint8Array(64));
    return await crypto.subtle.decrypt({ name: "AES-GCM", iv }, b, sealed).then(() => true, () => false);
  }

  it("uses the idle derivation when it finishes first, and starts no other", async () => {
    const { ring, counts, release } = ringWithIdle();
    const params = newScryptParams();
    const kek = ring.passphraseKek("pw", params, { background: true });
    release();
    assert.equal(await ring.passphraseKek("pw", params, { background: true }), await kek);
    ring.hurry(); // done: nothing left to hurry
    assert.deepEqual({ ...counts }, { idle: 1, urgent: 0, idleAborted: 1 });
    assert.equal(ring.derivations, 1);
    assert.ok(await sameKey(await kek, await fastRing().passphraseKek("pw", params)));
    assert.ok(!await sameKey(await kek, await fastRing().passphraseKek("pW", params)));
  });

  it("hurried, races a normal derivation and stops the idle one", async () => {
    const { ring, counts } = ringWithIdle();
    const params = newScryptParams();
    const kek = ring.passphraseKek("pw", params, { background: true });
    ring.hurry();
    ring.hurry();
    assert.ok(await sameKey(await kek, await fastRing().passphraseKek("pw", params)));
    assert.deepEqual({ ...counts }, { idle: 1, urgent: 1, idleAborted: 1 });
    assert.equal(ring.derivations, 1);
  });

  it("is hurried by an ordinary request for the same key (a restore or the next level)", async () => {
    const { ring, counts } = ringWithIdle();
    const params = newScryptParams();
    const background = ring.passphraseKek("pw", params, { background: true });
    const urgent = await ring.passphraseKek("pw", params);
    assert.equal(await background, urgent);
    assert.deepEqual({ ...counts }, { idle: 1, urgent: 1, idleAborted: 1 });
  });

  it("falls back to a normal derivation when the idle one fails", async () => {
    const { ring, counts } = ringWithIdle(true);
    const params = newScryptParams();
    const kek = await ring.passphraseKek("pw", params, { background: true });
    assert.deepEqual({ idle: counts.idle, urgent: counts.urgent }, { idle: 1, urgent: 1 });
    assert.ok(await sameKey(kek, await fastRing().passphraseKek("pw", params)));
  });

  it("wraps a backup's key in the background, and the key opens with the passphrase", async () => {
    const { ring, counts, release } = ringWithIdle();
    const key = await generateDataKey();
    const wrapping = wrapDataKey(key, { passphrase: "pw", background: true }, ring);
    release();
    const info = await wrapping;
    assert.deepEqual({ idle: counts.idle, urgent: counts.urgent }, { idle: 1, urgent: 0 });
    const back = await unwrapDataKey(info, { passphrase: "pw" }, "B", fastRing());
    const sealed = await encryptBytes(key, "x", bytesOf(100));
    assert.deepEqual(await decryptBytes(back, "x", sealed), bytesOf(100));
  });
});

describe("recipient wrapping (X25519)", () => {
  it("generates one-line identities and recipients with checksums", async () => {
    const { identity, recipient } = await generateIdentity();
    assert.match(identity, /^FROST-SECRET-KEY-1:[A-Za-z0-9_-]{48}$/);
    assert.match(recipient, /^frost-recipient-1:[A-Za-z0-9_-]{48}$/);
    assert.equal(await recipientOf(identity), recipient);
    assert.equal(parseIdentity(`# a comment\n\n${identity}\n`).byteLength, 32);
    assert.equal(parseRecipient(recipient + "\r\n").byteLength, 32);
    const typo = recipient.slice(0, 20) + (recipient[20] === "A" ? "B" : "A") + recipient.slice(21);
    assert.throws(
      () => parseRecipient(typo),
      (err) => err instanceof UsageError && /checksum/.test(err.message),
    );
    assert.throws(() => parseRecipient(identity), UsageError);
    assert.throws(() => parseIdentity(recipient), UsageError);
    assert.throws(() => parseIdentity(`${identity}\n${identity}`), UsageError);
  });

  it("lets only the identity holder unwrap a key wrapped on a write-only host", async () => {
    const holder = await generateIdentity();
    const key = await generateDataKey();
    // The backup host knows only the public recipient.
    const info = await wrapDataKey(key, { recipient: holder.recipient });
    assert.ok(info.scheme === "recipient");
    assert.equal(info.recipient, holder.recipient);
    assert.equal(Buffer.from(info.ephemeralPublicKey, "base64").byteLength, 32);
    const stored = JSON.parse(JSON.stringify(info)) as EncryptionInfo;
    const back = await unwrapDataKey(stored, { identity: holder.identity }, "B");
    const sealed = await encryptBytes(key, "x", bytesOf(2000));
    assert.deepEqual(await decryptBytes(back, "x", sealed), bytesOf(2000));
    // Two backups to the same recipient use different ephemeral keys.
    const again = await wrapDataKey(key, { recipient: holder.recipient });
    assert.ok(again.scheme === "recipient");
    assert.notEqual(again.ephemeralPublicKey, info.ephemeralPublicKey);

    const stranger = await generateIdentity();
    await assert.rejects(
      unwrapDataKey(info, { identity: stranger.identity }, "20261127T101500.123Z"),
      (err) => {
        assert.ok(err instanceof WrongKeyError);
        assert.equal(err.message, 'Wrong identity for backup "20261127T101500.123Z"');
        return true;
      },
    );
    for (const secrets of [{}, { passphrase: "pw" }]) {
      await assert.rejects(unwrapDataKey(info, secrets, "B2"), (err) => {
        assert.ok(err instanceof MissingKeyError);
        assert.equal(err.message, 'backup "B2" is encrypted: pass --encrypt-identity-file FILE');
        return true;
      });
    }
  });

  it("rejects an altered wrapped key or ephemeral key as corrupt, not as a wrong identity", async () => {
    const holder = await generateIdentity();
    const info = await wrapDataKey(await generateDataKey(), { recipient: holder.recipient });
    assert.ok(info.scheme === "recipient");
    const flip = (b64: string, at: number) =>
      Buffer.from(Buffer.from(b64, "base64").map((b, i) => i === at ? b ^ 4 : b)).toString("base64");
    for (
      const variant of [
        { ...info, wrappedKey: flip(info.wrappedKey, 30) },
        { ...info, ephemeralPublicKey: flip(info.ephemeralPublicKey, 3) },
      ]
    ) {
      await assert.rejects(
        unwrapDataKey(variant, { identity: holder.identity }, "B"),
        (err) => err instanceof FrostError && !(err instanceof WrongKeyError) && /"B"/.test(err.message),
      );
    }
  });

  it("checks the encryption info read from a manifest", async () => {
    const holder = await generateIdentity();
    const info = await wrapDataKey(await generateDataKey(), { recipient: holder.recipient });
    assert.deepEqual(checkEncryptionInfo(JSON.parse(JSON.stringify({ ...info, extra: 1 })), "m"), info);
    const bad: unknown[] = [
      null,
      "x",
      { ...info, version: 2 },
      { ...info, scheme: "pgp" },
      { ...info, wrappedKey: "abc" },
      { ...info, recipient: "frost-recipient-1:xyz" },
      { ...info, ephemeralPublicKey: Buffer.alloc(31).toString("base64") },
      { scheme: "passphrase", version: 1, wrappedKey: info.wrappedKey, kdf: { name: "argon2" } },
      {
        scheme: "passphrase",
        version: 1,
        wrappedKey: info.wrappedKey,
        kdf: { ...newScryptParams(), N: 1000 },
      },
      {
        scheme: "passphrase",
        version: 1,
        wrappedKey: info.wrappedKey,
        kdf: { ...newScryptParams(), N: 2 ** 30 },
      },
    ];
    for (const value of bad) {
      assert.throws(() => checkEncryptionInfo(value, 'manifest "m"'), (err) => err instanceof FrostError);
      await assert.rejects(
        unwrapDataKey(value as EncryptionInfo, { passphrase: "x", identity: holder.identity }, "B"),
      );
    }
  });
});

/** The test vectors of docs/FORMAT.md (section Encryption) (data key = bytes 0x00…0x1f). */
const VECTORS = {
  key: Uint8Array.from({ length: 32 }, (_, i) => i),
  frost: "46524f5354454e430112db1b76e750075d615ddea81dc856e8ec451be3b741d0ed7ae9fcaaa3",
  empty: "46524f5354454e430112d4e87ed7297c3dba0bf3a8fea4ca40129b8209b9e29eb0",
  passphrase: {
    scheme: "passphrase",
    version: 1,
    kdf: { name: "scrypt", N: 1024, r: 8, p: 1, salt: "AAECAwQFBgcICQoLDA0ODw==" },
    wrappedKey: "0XzrJJ9SAmHK/zSjmQXPVKZF/czxnczGodXAtu6twFk9KNCLDxWRm5+NjcJTRcWmRb1+8mahKGTwuVK2",
  } as EncryptionInfo,
  identity: "FROST-SECRET-KEY-1:fJZafyCoCwm1Dp2bV4uOxY9yuh6uyvmJ7idG62Dfl8ZsAsd5",
  recipient: {
    scheme: "recipient",
    version: 1,
    recipient: "frost-recipient-1:9ek72CHAlOBc2z3W2nQ4aYGr4otrWGXJprekN1j-4SLim14r",
    ephemeralPublicKey: "UZM/jCGRpJs9dfzz5nBs1xWQ3XTQgDb70T1orRIzswc=",
    wrappedKey: "AT5H+Klpum/2FvnAxZCleuap2QlVqX5nMS23b0dlTR5vEY1c/VukuGjccJWWuw0p/mQOjUW3J3TfkUh1",
  } as EncryptionInfo,
};

describe("documented test vectors", () => {
  it("decrypts the stream vectors", async () => {
    const key = await DataKey.fromBytes(VECTORS.key);
    const frost = await decryptBytes(key, "20261127T101500.123Z/data", Buffer.from(VECTORS.frost, "hex"));
    assert.equal(new TextDecoder().decode(frost), "frost");
    const empty = await decryptBytes(key, "20261127T101500.123Z/state", Buffer.from(VECTORS.empty, "hex"));
    assert.equal(empty.byteLength, 0);
  });

  it("unwraps the key vectors with frost and with a decoder written from the spec (node:crypto)", async () => {
    const check = async (key: DataKey) => {
      const out = await decryptBytes(key, "20261127T101500.123Z/data", Buffer.from(VECTORS.frost, "hex"));
      assert.equal(new TextDecoder().decode(out), "frost");
    };
    await check(
      await unwrapDataKey(
        VECTORS.passphrase,
        { passphrase: "correct horse battery staple" },
        "V",
        new KeyRing(),
      ),
    );
    await check(await unwrapDataKey(VECTORS.recipient, { identity: VECTORS.identity }, "V"));
    assert.equal(await recipientOf(VECTORS.identity), (VECTORS.recipient as { recipient: string }).recipient);

    const unseal = (kek: Uint8Array, wrapped: string, aad: string) => {
      const bytes = Buffer.from(wrapped, "base64");
      const decipher = nodeCrypto.createDecipheriv("aes-256-gcm", kek, bytes.subarray(0, 12));
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(bytes.subarray(bytes.byteLength - 16));
      return Buffer.concat([decipher.update(bytes.subarray(12, bytes.byteLength - 16)), decipher.final()]);
    };
    // Passphrase: scrypt → KEK; AAD is the documented string.
    const pw = VECTORS.passphrase as PassphraseEncryption;
    const salt = Buffer.from(pw.kdf.salt, "base64");
    const kek = nodeCrypto.scryptSync("correct horse battery staple", salt, 32, { N: 1024, r: 8, p: 1 });
    const aad = `frost-key-1|passphrase|scrypt|N=1024|r=8|p=1|salt=${pw.kdf.salt}`;
    assert.deepEqual(new Uint8Array(unseal(kek, pw.wrappedKey, aad)), VECTORS.key);
    // Recipient: X25519 → HKDF-SHA256 → KEK.
    const rc = VECTORS.recipient as RecipientEncryption;
    const secret = Buffer.from(VECTORS.identity.slice(19), "base64url").subarray(0, 32);
    const recipientPublic = Buffer.from(rc.recipient.slice(18), "base64url").subarray(0, 32);
    const ephemeral = Buffer.from(rc.ephemeralPublicKey, "base64");
    const privateKey = nodeCrypto.createPrivateKey({
      key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), secret]),
      format: "der",
      type: "pkcs8",
    });
    const publicKey = nodeCrypto.createPublicKey({
      key: Buffer.concat([Buffer.from("302a300506032b656e032100", "hex"), ephemeral]),
      format: "der",
      type: "spki",
    });
    const shared = nodeCrypto.diffieHellman({ privateKey, publicKey });
    const kek2 = new Uint8Array(
      nodeCrypto.hkdfSync(
        "sha256",
        shared,
        Buffer.concat([ephemeral, recipientPublic]),
        "frost-key-1 x25519 kek",
        32,
      ),
    );
    const aad2 = `frost-key-1|recipient|x25519|${rc.recipient}|${rc.ephemeralPublicKey}`;
    assert.deepEqual(new Uint8Array(unseal(kek2, rc.wrappedKey, aad2)), VECTORS.key);
  });
});

describe("secret files", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "frost-enc-"));
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };

  it("reads the first line of a pass file without its line ending", async () => {
    assert.equal(await readPassFile(write("a", "secret pass\nsecond line\n")), "secret pass");
    assert.equal(await readPassFile(write("b", "crlf pass\r\n")), "crlf pass");
    assert.equal(await readPassFile(write("c", "  no newline ")), "  no newline ");
  });

  it("rejects an empty or unreadable pass file with a usage error naming it", async () => {
    for (const file of [write("empty", ""), write("blank-first", "\nsecret\n"), write("crlf-only", "\r\n")]) {
      await assert.rejects(readPassFile(file), (err) => {
        assert.ok(err instanceof UsageError);
        assert.ok(err.message.includes(`"${file}"`), err.message);
        assert.match(err.message, /empty/);
        return true;
      });
    }
    for (const file of [path.join(dir, "missing"), dir]) {
      await assert.rejects(
        readPassFile(file),
        (err) => err instanceof UsageError && err.message.includes(`"${file}"`),
      );
    }
  });

  it("reads identity and recipient files, rejecting malformed ones with the file name", async () => {
    const { identity, recipient } = await generateIdentity();
    assert.equal(await readIdentityFile(write("key", `# created by frost\n${identity}\n`)), identity);
    assert.equal(await readRecipientFile(write("pub", `${recipient}\n`)), recipient);
    const wrongKind = write("wrong", `${recipient}\n`);
    await assert.rejects(
      readIdentityFile(wrongKind),
      (err) => err instanceof UsageError && err.message.includes(wrongKind),
    );
    const empty = write("empty-pub", "");
    await assert.rejects(
      readRecipientFile(empty),
      (err) => err instanceof UsageError && err.message.includes(empty),
    );
    await assert.rejects(readIdentityFile(path.join(dir, "nope")), UsageError);
  });

  it("cleans up", () => {
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
