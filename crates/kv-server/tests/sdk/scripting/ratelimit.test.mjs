// The real @upstash/ratelimit and @upstash/lock (Lua scripts sent with EVALSHA, EVAL on
// NOSCRIPT) against real kv-servers: scripts/upstash-sdk-test.sh starts two and sets
// KV_UPSTASH_URL, KV_UPSTASH_URL_2 and KV_UPSTASH_TOKEN. Node's test runner: node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "@upstash/redis";
import { Ratelimit, MultiRegionRatelimit } from "@upstash/ratelimit";
import { Lock } from "@upstash/lock";

const token = process.env.KV_UPSTASH_TOKEN;
const redis = new Redis({ url: process.env.KV_UPSTASH_URL, token });
const other = new Redis({ url: process.env.KV_UPSTASH_URL_2, token });
let n = 0;
const unique = (name) => `${name}:${process.pid}:${n++}`;

/** `count` calls of `limit`, each waited for (its background sync too): who got through. */
async function calls(ratelimit, identifier, count) {
  const passed = [];
  for (let i = 0; i < count; i++) {
    const result = await ratelimit.limit(identifier);
    await result.pending;
    passed.push(result.success);
  }
  return passed;
}

const five = [true, true, true, true, true, false, false];

for (const [name, limiter] of [
  ["fixed window", Ratelimit.fixedWindow(5, "60 s")],
  ["sliding window", Ratelimit.slidingWindow(5, "60 s")],
  ["token bucket", Ratelimit.tokenBucket(1, "60 s", 5)],
  ["cached fixed window", Ratelimit.cachedFixedWindow(5, "60 s")],
]) {
  test(`${name}: 5 of 7 get through, getRemaining and resetUsedTokens`, async () => {
    const ratelimit = new Ratelimit({ redis, limiter, prefix: unique(name.replaceAll(" ", "-")) });
    assert.deepEqual(await calls(ratelimit, "user", 7), five);
    const left = await ratelimit.getRemaining("user");
    assert.equal(left.remaining, 0);
    assert.ok(left.reset > Date.now() - 1000, `reset ${left.reset}`);
    if (name !== "cached fixed window") {
      // The cached window keeps refusing from its in-memory cache until the window ends.
      await ratelimit.resetUsedTokens("user");
      assert.equal((await ratelimit.getRemaining("user")).remaining, 5);
      assert.equal((await ratelimit.limit("user")).success, true);
    }
    assert.deepEqual(await calls(ratelimit, "someone-else", 1), [true]);
  });
}

test("analytics on: the same counts, and the analytics written", async () => {
  const prefix = unique("analytics");
  const ratelimit = new Ratelimit({ redis, limiter: Ratelimit.fixedWindow(3, "60 s"), prefix, analytics: true });
  assert.deepEqual(await calls(ratelimit, "user", 5), [true, true, true, false, false]);
  const written = await redis.keys("*");
  assert.ok(written.some((key) => key.includes("analytics")), `keys: ${written.slice(0, 20)}`);
});

test("multi-region over two kv-servers: 5 of 7 in all", async () => {
  for (const [name, limiter] of [
    ["fixed", MultiRegionRatelimit.fixedWindow(5, "60 s")],
    ["sliding", MultiRegionRatelimit.slidingWindow(5, "60 s")],
  ]) {
    const ratelimit = new MultiRegionRatelimit({ redis: [redis, other], limiter, prefix: unique(`mr-${name}`) });
    assert.deepEqual(await calls(ratelimit, "user", 7), five, name);
    assert.equal((await ratelimit.getRemaining("user")).remaining, 0, name);
  }
});

test("a lock: one holder at a time; release, extend and status", async () => {
  const id = unique("lock");
  const first = new Lock({ id, redis, lease: 10000 });
  const second = new Lock({ id, redis, lease: 10000, retry: { attempts: 1, delay: 10 } });
  assert.equal(await first.acquire(), true);
  assert.equal(await second.acquire(), false, "the second contender waits");
  assert.equal(await first.getStatus(), "ACQUIRED");
  assert.equal(await first.extend(5000), true);
  assert.equal(await second.release(), false, "only the holder releases");
  assert.equal(await first.release(), true);
  assert.equal(await first.getStatus(), "FREE");
  assert.equal(await second.acquire(), true);
  assert.equal(await second.release(), true);
});

test("two contenders racing for one lock: exactly one wins", async () => {
  const id = unique("race");
  const locks = Array.from({ length: 2 }, () => new Lock({ id, redis, lease: 10000, retry: { attempts: 1, delay: 10 } }));
  const won = await Promise.all(locks.map((lock) => lock.acquire()));
  assert.equal(won.filter(Boolean).length, 1, `won: ${won}`);
});
