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

  test(`${name}: byte commands, GETEX, INCRBYFLOAT, MSETNX`, async () => {
    const k = unique("bytes");
    assert.equal(await redis.append(k, "Hello"), 5);
    assert.equal(await redis.append(k, " World"), 11);
    assert.equal(await redis.getrange(k, 0, 4), "Hello");
    assert.equal(await redis.getrange(k, -5, -1), "World");
    assert.equal(await redis.setrange(k, 6, "Redis"), 11);
    assert.equal(await redis.get(k), "Hello Redis");
    assert.equal(await redis.strlen(k), 11);
    const u = unique("utf8");
    await redis.set(u, "héllo");
    await assert.rejects(redis.setrange(u, 2, "x"), /split a UTF-8 character/);
    assert.equal(await redis.get(u), "héllo");

    const g = unique("getex");
    await redis.set(g, "v");
    assert.equal(await redis.getex(g, { ex: 100 }), "v");
    assert.equal(await redis.ttl(g), 100);
    assert.equal(await redis.getex(g, { px: 50_000 }), "v");
    assert.equal(await redis.ttl(g), 50);
    const inAMinute = Math.floor(Date.now() / 1000) + 60;
    assert.equal(await redis.getex(g, { exat: inAMinute }), "v");
    assert.ok((await redis.ttl(g)) >= 58);
    assert.equal(await redis.getex(g, { pxat: inAMinute * 1000 + 30_000 }), "v");
    assert.ok((await redis.ttl(g)) > 60);
    assert.equal(await redis.getex(g, { persist: true }), "v");
    assert.equal(await redis.ttl(g), -1);
    assert.equal(await redis.getex(unique("missing")), null);

    const f = unique("float");
    assert.equal(await redis.incrbyfloat(f, 0.1), 0.1);
    assert.equal(await redis.incrbyfloat(f, 0.2), 0.3);
    const f2 = unique("float");
    await redis.set(f2, 1);
    assert.equal(await redis.incrbyfloat(f2, 1.5), 2.5);
    assert.equal(await redis.incrbyfloat(f2, 5), 7.5);
    const rest2 = await (await fetch(`${rest}/${encodeURIComponent(f2)}`, {
      headers: { Authorization: `Bearer ${token}` },
    })).json();
    assert.equal(rest2.value, 7.5, "a number for the REST API");
    await assert.rejects(redis.incrbyfloat(k, 1), /ERR value is not a valid float/);

    const [m1, m2] = [unique("msetnx"), unique("msetnx")];
    assert.equal(await redis.msetnx({ [m1]: "a", [m2]: { b: 2 } }), 1);
    assert.deepEqual(await redis.get(m2), { b: 2 });
    assert.equal(await redis.msetnx({ [unique("msetnx")]: "c", [m1]: "x" }), 0);
    assert.equal(await redis.get(m1), "a");
  });

  test(`${name}: generic key commands`, async () => {
    const [a, b, c] = [unique("a"), unique("b"), unique("c")];
    await redis.set(a, "1", { ex: 100 });
    await redis.set(b, "2");
    assert.equal(await redis.touch(a, b, unique("missing")), 2);
    assert.equal(await redis.rename(a, c), "OK");
    assert.equal(await redis.exists(a), 0);
    assert.equal(await redis.ttl(c), 100);
    await assert.rejects(redis.rename(unique("missing"), a), /ERR no such key/);
    assert.equal(await redis.renamenx(c, b), 0);
    assert.equal(await redis.renamenx(c, a), 1);
    assert.equal(await redis.copy(a, c), "COPIED");
    assert.equal(await redis.ttl(c), 100);
    assert.equal(await redis.copy(a, b), "NOT_COPIED");
    assert.equal(await redis.copy(a, b, { replace: true }), "COPIED");
    assert.equal(await redis.get(b), 1);
    assert.equal(await redis.copy(a, a), "NOT_COPIED");
    const [secs, micros] = await redis.time();
    assert.ok(Math.abs(secs - Date.now() / 1000) < 60 && micros < 1_000_000);

    const e = unique("expire");
    await redis.set(e, "v");
    assert.equal(await redis.expire(e, 100, "XX"), 0);
    assert.equal(await redis.expire(e, 100, "GT"), 0, "no expiry is infinite");
    assert.equal(await redis.expire(e, 100, "LT"), 1);
    assert.equal(await redis.expire(e, 200, "NX"), 0);
    assert.equal(await redis.expire(e, 200, "gt"), 1);
    assert.equal(await redis.pexpire(e, 150_000, "lt"), 1);
    assert.equal(await redis.ttl(e), 150);
    const later = Math.floor(Date.now() / 1000) + 1000;
    assert.equal(await redis.expireat(e, later, "GT"), 1);
    assert.equal(await redis.pexpireat(e, later * 1000 + 5000, "LT"), 0);
    assert.equal(await redis.expireat(e, later), 1);
    // Two options the SDK cannot send together, as a client sending them gets them back.
    const refused = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
      body: JSON.stringify(["expire", e, 10, "NX", "XX"]),
    });
    assert.equal(refused.status, 400);
    assert.deepEqual(await refused.json(), {
      error: "ERR NX and XX, GT or LT options at the same time are not compatible",
    });
  });

  test(`${name}: KEYS, SCAN and RANDOMKEY`, async () => {
    const prefix = unique("scan");
    const keys = Array.from({ length: 23 }, (_, i) => `${prefix}:${String(i).padStart(2, "0")}`);
    await redis.mset(Object.fromEntries(keys.map((key) => [key, "v"])));
    assert.deepEqual((await redis.keys(`${prefix}:*`)).sort(), keys);
    assert.deepEqual(await redis.keys(`${prefix}:1?`), keys.slice(10, 20));
    const seen = [];
    let cursor = "0";
    let pages = 0;
    do {
      const [next, page] = await redis.scan(cursor, { match: `${prefix}:*`, count: 10 });
      assert.equal(typeof next, "string");
      assert.ok(page.length <= 10);
      seen.push(...page);
      cursor = next;
      pages += 1;
    } while (cursor !== "0" && pages < 10);
    assert.deepEqual(seen, keys);
    assert.equal(pages, 3);
    assert.deepEqual(await redis.scan(0, { match: `${prefix}:0*`, count: 100, type: "string" }), [
      "0",
      keys.slice(0, 10),
    ]);
    assert.deepEqual(await redis.scan("0", { match: `${prefix}:*`, count: 100, type: "hash" }), [
      "0",
      [],
    ]);
    const random = await redis.randomkey();
    assert.equal(typeof random, "string");
    assert.equal(await redis.exists(random), 1);
  });

  test(`${name}: hashes and sets`, async () => {
    const h = unique("h");
    assert.equal(await redis.hset(h, { f: 1, g: "two" }), 2);
    assert.equal(await redis.hget(h, "f"), 1);
    assert.deepEqual(await redis.hgetall(h), { f: 1, g: "two" });
    assert.equal(await redis.hincrby(h, "f", 4), 5);
    assert.equal(await redis.hlen(h), 2);
    assert.equal(await redis.hdel(h, "g"), 1);
    assert.equal(await redis.type(h), "hash");
    const s = unique("s");
    assert.equal(await redis.sadd(s, "a", "b", "a"), 2);
    assert.equal(await redis.sismember(s, "b"), 1);
    assert.deepEqual((await redis.smembers(s)).sort(), ["a", "b"]);
    assert.equal(await redis.scard(s), 2);
    await assert.rejects(redis.get(s), /WRONGTYPE/);
    const l = unique("l");
    assert.equal(await redis.rpush(l, "a", "b"), 2);
    assert.equal(await redis.lpush(l, "z"), 3);
    assert.deepEqual(await redis.lrange(l, 0, -1), ["z", "a", "b"]);
    assert.equal(await redis.lpop(l), "z");
    assert.equal(await redis.llen(l), 2);
  });

  test(`${name}: sorted sets`, async () => {
    const z = unique("z");
    assert.equal(await redis.zadd(z, { score: 3, member: "c" }, { score: 1, member: "a" }, { score: 2, member: "b" }), 3);
    assert.equal(await redis.zadd(z, { ch: true }, { score: 5, member: "a" }), 1);
    assert.equal(await redis.zadd(z, { incr: true }, { score: 0.5, member: "b" }), 2.5);
    assert.equal(await redis.zscore(z, "a"), 5);
    assert.equal(await redis.zrank(z, "a"), 2);
    assert.equal(await redis.zrevrank(z, "a"), 0);
    assert.equal(await redis.zcard(z), 3);
    assert.deepEqual(await redis.zrange(z, 0, -1), ["b", "c", "a"]);
    assert.deepEqual(await redis.zrange(z, 0, -1, { withScores: true }), ["b", 2.5, "c", 3, "a", 5]);
    assert.deepEqual(await redis.zrange(z, "(2.5", "+inf", { byScore: true }), ["c", "a"]);
    assert.deepEqual(await redis.zrange(z, 10, 0, { byScore: true, rev: true, offset: 0, count: 1 }), ["a"]);
    assert.equal(await redis.zcount(z, 3, "+inf"), 2);
    assert.equal(await redis.zincrby(z, 10, "c"), 13);
    assert.deepEqual(await redis.zpopmax(z), ["c", 13]);
    assert.deepEqual(await redis.zmscore(z, ["a", "nope"]), [5, null]);
    assert.equal(await redis.zrem(z, "a", "nope"), 1);
    assert.equal(await redis.type(z), "zset");
    const other = unique("z");
    await redis.zadd(other, { score: 1, member: "b" }, { score: 7, member: "x" });
    assert.equal(await redis.zunionstore(unique("u"), 2, [z, other]), 2);
    assert.deepEqual(await redis.zunion(2, [z, other], { withScores: true }), ["b", 3.5, "x", 7]);
    assert.equal(await redis.zinterstore(unique("i"), 2, [z, other]), 1);
    await assert.rejects(redis.get(z), /WRONGTYPE/);
  });

  test(`${name}: unknown commands are errors, not failures of the server`, async () => {
    await assert.rejects(redis.pfadd(unique("hll"), "a"), /ERR unknown command 'pfadd'/);
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
  await assert.rejects(reader.incrbyfloat(k, 1), /NOPERM/);
  await assert.rejects(reader.rename(k, unique("ro")), /NOPERM/);
  assert.equal(await reader.getrange(k, 0, 0), "v");
  assert.equal(await reader.touch(k), 1);
  const [, page] = await reader.scan(0, { match: k, count: 10 });
  assert.deepEqual(page, [k]);
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
