/**
 * SkipPlan keeps the ranges a reader will read past, in stream order, and says which one holds a piece
 * wholly; skippedChunk markers stand for a count of bytes and are told apart from data.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { skippedBytes, skippedChunk, SkipPlan } from "../../base/skip.ts";

const MiB = 1 << 20;

describe("SkipPlan", () => {
  it("says which range holds a piece wholly, the same for pieces of one range", () => {
    const plan = new SkipPlan();
    plan.add(100, 3 * MiB);
    plan.add(4 * MiB, 2 * MiB);
    assert.equal(plan.covers(0, MiB), -1); // starts before the first range
    const first = plan.covers(100, MiB);
    assert.ok(first >= 0);
    assert.equal(plan.covers(MiB, 2 * MiB), first);
    assert.equal(plan.covers(2 * MiB, 3 * MiB + 101), -1); // runs past its end
    const second = plan.covers(4 * MiB, 6 * MiB);
    assert.ok(second >= 0 && second !== first);
    assert.equal(plan.covers(6 * MiB, 7 * MiB), -1);
  });

  it("ignores ranges too short to hold a frame, and refuses ranges out of order", () => {
    const plan = new SkipPlan();
    plan.add(0, 1000);
    assert.equal(plan.covers(0, 512), -1);
    plan.add(10 * MiB, MiB);
    assert.throws(() => plan.add(5 * MiB, MiB), RangeError);
  });

  it("forgets the ranges pieces have passed, however many", () => {
    const plan = new SkipPlan();
    for (let k = 0; k < 1000; k++) {
      plan.add(k * 2 * MiB, MiB);
      assert.ok(plan.covers(k * 2 * MiB, k * 2 * MiB + MiB) >= 0);
      assert.equal(plan.covers(k * 2 * MiB + MiB, k * 2 * MiB + MiB + 1), -1);
    }
  });
});

describe("skippedChunk", () => {
  it("stands for its bytes; data and empty chunks stand for none", () => {
    assert.equal(skippedBytes(skippedChunk(12345)), 12345);
    assert.equal(skippedChunk(7).byteLength, 0);
    assert.equal(skippedBytes(new Uint8Array(0)), 0);
    assert.equal(skippedBytes(new Uint8Array(10)), 0);
  });
});
