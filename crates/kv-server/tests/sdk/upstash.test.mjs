// The real @upstash/redis SDK against a real kv-server (scripts/upstash-sdk-test.sh starts it
// and sets KV_UPSTASH_URL, KV_UPSTASH_TOKEN, KV_UPSTASH_READ_ONLY_TOKEN, KV_REST_URL).
// Node's built-in test runner: node --test.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "@upstash/redis";

const url = process.env.KV_UPSTASH_URL;
const token = process.env.KV_UPSTASH_TOKEN;
const rest = process.env.KV_REST_URL;
let n = 0;
const unique = (name) => `${name}:${process.pid}:${n++}:+/=`; // keys as the SDK's tests make them

// Every combination a user may configure: base64 on (the default) and off, auto-pipelining
// on (the default) and off.
const clients = [
  ["defaults", {}],
  ["no base64", { responseEncoding: false }],
  ["no auto-pipelining", { enableAutoPipelining: false }],
  ["neither", { responseEncoding: false, enableAutoPipelining: false }],
].map(([name, options]) => [name, new Redis({ url, token, ...options })]);

for (const [name, redis] of clients) {
  test(`${name}: strings, counters and expiry`, async () => {
    const k = unique("k");
    assert.equal(await redis.set(k, "héllo wörld"), "OK");
    assert.equal(await redis.get(k), "héllo wörld");
    assert.equal(await redis.set(k, "x", { nx: true }), null);
    assert.equal(await redis.set(k, "y", { xx: true, get: true }), "héllo wörld");
    assert.equal(await redis.setnx(k, "z"), 0);
    assert.equal(await redis.type(k), "string");
    assert.equal(await redis.exists(k, unique("missing")), 1);
    const c = unique("counter");
    assert.equal(await redis.incr(c), 1);
    assert.equal(await redis.incrby(c, 41), 42);
    assert.equal(await redis.decr(c), 41);
    assert.equal(await redis.decrby(c, 1), 40);
    await assert.rejects(redis.incr(k), /ERR value is not an integer or out of range/);
    assert.equal(await redis.ttl(k), -1);
    assert.equal(await redis.expire(k, 100), 1);
    assert.equal(await redis.ttl(k), 100);
    assert.ok((await redis.pttl(k)) > 99_000);
    assert.equal(await redis.persist(k), 1);
    assert.equal(await redis.ttl(unique("missing")), -2);
    assert.equal(await redis.setex(k, 50, "v"), "OK");
    assert.equal(await redis.ttl(k), 50);
    assert.equal(await redis.psetex(k, 20_000, "v"), "OK");
    assert.equal(await redis.ttl(k), 20);
    assert.equal(await redis.set(k, "w", { px: 30_000 }), "OK");
    assert.equal(await redis.ttl(k), 30);
    assert.equal(await redis.getdel(k), "w");
    assert.equal(await redis.get(k), null);
    assert.equal(await redis.del(c, k, unique("missing")), 1);
    assert.equal(await redis.ping(), "PONG");
    assert.equal(await redis.echo("hi"), "hi");
  });

  test(`${name}: objects and numbers read back as the SDK stored them`, async () => {
    const k = unique("obj");
    await redis.set(k, { a: 1, list: [1, 2, "three"] });
    assert.deepEqual(await redis.get(k), { a: 1, list: [1, 2, "three"] });
    // The same key through the REST API is a JSON object, not a string.
    const got = await (await fetch(`${rest}/${encodeURIComponent(k)}`, {
      headers: { Authorization: `Bearer ${token}` },
    })).json();
    assert.deepEqual(got.value, { a: 1, list: [1, 2, "three"] });
    const num = unique("num");
    await redis.set(num, 42);
    assert.equal(await redis.get(num), 42);
    assert.deepEqual(await redis.mget(k, num, unique("missing")), [
      { a: 1, list: [1, 2, "three"] },
      42,
      null,
    ]);
    assert.equal(await redis.mset({ [unique("m")]: "1", [unique("m")]: { b: 2 } }), "OK");
  });

  test(`${name}: pipelines and multi-exec`, async () => {
    const k = unique("p");
    const p = redis.pipeline();
    p.set(k, "v");
    p.get(k);
    p.incr(k);
    p.ttl(k);
    // A failing command in a pipeline does not fail the others.
    await assert.rejects(p.exec(), /ERR value is not an integer/);
    assert.equal(await redis.get(k), "v");
    const q = redis.pipeline();
    q.set(k, 1);
    q.incr(k);
    q.get(k);
    assert.deepEqual(await q.exec(), ["OK", 2, 2]);
    const m = redis.multi();
    m.incr(k);
    m.incrby(k, 10);
    m.get(k);
    assert.deepEqual(await m.exec(), [3, 13, 13]);
  });

  test(`${name}: unknown commands are errors, not failures of the server`, async () => {
    await assert.rejects(redis.hset(unique("h"), { f: 1 }), /ERR unknown command 'hset'/);
    await assert.rejects(redis.lpush(unique("l"), "a"), /ERR unknown command 'lpush'/);
  });
}

test("a read-only token reads and gets an error reply for writes", async () => {
  const writer = new Redis({ url, token });
  const k = unique("ro");
  await writer.set(k, "v");
  const reader = new Redis({ url, token: process.env.KV_UPSTASH_READ_ONLY_TOKEN });
  assert.equal(await reader.get(k), "v");
  await assert.rejects(reader.set(k, "w"), /NOPERM/);
  await assert.rejects(reader.incr(k), /NOPERM/);
  assert.equal(await writer.get(k), "v");
  const wrong = new Redis({ url, token: "wrong-token" });
  await assert.rejects(wrong.get(k));
});

test("concurrent INCR from several clients loses no update", async () => {
  const k = unique("race");
  const racers = clients.map(([, redis]) => redis);
  await Promise.all(
    racers.flatMap((redis) => Array.from({ length: 50 }, () => redis.incr(k))),
  );
  assert.equal(await racers[0].get(k), racers.length * 50);
});
