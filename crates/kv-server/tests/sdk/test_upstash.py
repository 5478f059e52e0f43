"""The real upstash-redis (PyPI) SDK against a real kv-server (scripts/upstash-sdk-test.sh
starts it and sets KV_UPSTASH_URL, KV_UPSTASH_TOKEN, KV_UPSTASH_READ_ONLY_TOKEN)."""

import itertools
import os
import threading
import time

import pytest
from upstash_redis import Redis

URL = os.environ["KV_UPSTASH_URL"]
TOKEN = os.environ["KV_UPSTASH_TOKEN"]
_n = itertools.count()


def unique(name):
    return f"{name}:{os.getpid()}:{next(_n)}:+/="


@pytest.fixture(params=["base64", "plain"])
def redis(request):
    return Redis(url=URL, token=TOKEN, rest_encoding="base64" if request.param == "base64" else False)


def test_strings_counters_and_expiry(redis):
    k = unique("k")
    assert redis.set(k, "héllo") is True
    assert redis.get(k) == "héllo"
    assert redis.set(k, "x", nx=True) is False  # the SDK's reading of a nil reply
    assert redis.set(k, "y", xx=True, get=True) == "héllo"
    assert redis.exists(k, unique("missing")) == 1
    c = unique("c")
    assert redis.incr(c) == 1
    assert redis.incrby(c, 41) == 42
    assert redis.decrby(c, 2) == 40
    assert redis.expire(k, 100) is True
    assert redis.ttl(k) == 100
    assert redis.persist(k) is True
    assert redis.ttl(k) == -1
    assert redis.ttl(unique("missing")) == -2
    assert redis.getdel(k) == "y"
    assert redis.get(k) is None
    assert redis.mset({unique("m"): "1", unique("m"): "2"}) is True
    assert redis.ping() == "PONG"
    redis.set(k, "text")
    with pytest.raises(Exception, match="ERR value is not an integer"):
        redis.incr(k)
    with pytest.raises(Exception, match="ERR unknown command"):
        redis.pfadd(unique("hll"), "a")


def test_hashes_and_sets(redis):
    h = unique("h")
    assert redis.hset(h, values={"f": "1", "g": "two"}) == 2
    assert redis.hget(h, "f") == "1"
    assert redis.hgetall(h) == {"f": "1", "g": "two"}
    assert redis.hincrby(h, "f", 4) == 5
    assert redis.hdel(h, "g") == 1
    s = unique("s")
    assert redis.sadd(s, "a", "b", "a") == 2
    assert redis.sismember(s, "b") in (1, True)
    assert sorted(redis.smembers(s)) == ["a", "b"]
    with pytest.raises(Exception, match="WRONGTYPE"):
        redis.get(s)
    lst = unique("l")
    assert redis.rpush(lst, "a", "b") == 2
    assert redis.lpush(lst, "z") == 3
    assert redis.lrange(lst, 0, -1) == ["z", "a", "b"]
    assert redis.lpop(lst) == "z"


def test_sorted_sets(redis):
    z = unique("z")
    assert redis.zadd(z, {"c": 3, "a": 1, "b": 2}) == 3
    assert redis.zadd(z, {"a": 5}, ch=True) == 1
    assert redis.zscore(z, "a") == 5
    assert redis.zrank(z, "a") == 2
    assert redis.zcard(z) == 3
    assert redis.zrange(z, 0, -1) == ["b", "c", "a"]
    assert redis.zrange(z, 0, -1, withscores=True) == [("b", 2), ("c", 3), ("a", 5)]
    assert redis.zrange(z, "(2", "+inf", sortby="BYSCORE") == ["c", "a"]
    assert redis.zcount(z, 3, "+inf") == 2
    assert redis.zincrby(z, 10, "c") == 13
    assert redis.zpopmin(z) == [("b", 2)]
    assert redis.zrem(z, "a", "nope") == 1
    assert redis.type(z) == "zset"
    with pytest.raises(Exception, match="WRONGTYPE"):
        redis.get(z)


def test_pipeline_and_multi_exec(redis):
    k = unique("p")
    p = redis.pipeline()
    p.set(k, 1)
    p.incr(k)
    p.get(k)
    assert p.exec() == [True, 2, "2"]
    m = redis.multi()
    m.incrby(k, 10)
    m.get(k)
    assert m.exec() == [12, "12"]


def test_read_only_token():
    k = unique("ro")
    Redis(url=URL, token=TOKEN).set(k, "v")
    reader = Redis(url=URL, token=os.environ["KV_UPSTASH_READ_ONLY_TOKEN"])
    assert reader.get(k) == "v"
    with pytest.raises(Exception, match="NOPERM"):
        reader.set(k, "w")


def test_concurrent_incr_loses_no_update():
    k = unique("race")

    def bump():
        client = Redis(url=URL, token=TOKEN)
        for _ in range(25):
            client.incr(k)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Redis(url=URL, token=TOKEN).get(k) == "100"


def test_byte_commands_getex_incrbyfloat_msetnx(redis):
    k = unique("bytes")
    assert redis.append(k, "Hello") == 5
    assert redis.append(k, " World") == 11
    assert redis.getrange(k, 0, 4) == "Hello"
    assert redis.getrange(k, -5, -1) == "World"
    assert redis.setrange(k, 6, "Redis") == 11
    assert redis.get(k) == "Hello Redis"
    u = unique("utf8")
    redis.set(u, "héllo")
    with pytest.raises(Exception, match="split a UTF-8 character"):
        redis.setrange(u, 2, "x")
    assert redis.get(u) == "héllo"

    g = unique("getex")
    redis.set(g, "v")
    assert redis.getex(g, ex=100) == "v"
    assert redis.ttl(g) == 100
    assert redis.getex(g, px=50_000) == "v"
    assert redis.ttl(g) == 50
    in_a_minute = int(time.time()) + 60
    assert redis.getex(g, exat=in_a_minute) == "v"
    assert redis.ttl(g) >= 58
    assert redis.getex(g, pxat=in_a_minute * 1000 + 30_000) == "v"
    assert redis.ttl(g) > 60
    assert redis.getex(g, persist=True) == "v"
    assert redis.ttl(g) == -1

    f = unique("float")
    assert redis.incrbyfloat(f, 0.1) == 0.1
    assert redis.incrbyfloat(f, 0.2) == 0.3
    assert redis.get(f) == "0.3"
    with pytest.raises(Exception, match="ERR value is not a valid float"):
        redis.incrbyfloat(k, 1)

    m1, m2 = unique("msetnx"), unique("msetnx")
    assert redis.msetnx({m1: "a", m2: "b"}) is True
    assert redis.msetnx({unique("msetnx"): "c", m1: "x"}) is False
    assert redis.get(m1) == "a"


def test_generic_key_commands(redis):
    a, b, c = unique("a"), unique("b"), unique("c")
    redis.set(a, "1", ex=100)
    redis.set(b, "2")
    assert redis.touch(a, b, unique("missing")) == 2
    assert redis.rename(a, c) is True
    assert redis.exists(a) == 0
    assert redis.ttl(c) == 100
    with pytest.raises(Exception, match="ERR no such key"):
        redis.rename(unique("missing"), a)
    assert redis.renamenx(c, b) is False
    assert redis.renamenx(c, a) is True
    assert redis.copy(a, c) is True
    assert redis.ttl(c) == 100
    assert redis.copy(a, b) is False
    assert redis.copy(a, b, replace=True) is True
    assert redis.get(b) == "1"
    assert redis.copy(a, a) is False
    secs, micros = redis.time()
    assert abs(secs - time.time()) < 60 and 0 <= micros < 1_000_000

    e = unique("expire")
    redis.set(e, "v")
    assert redis.expire(e, 100, xx=True) is False
    assert redis.expire(e, 100, gt=True) is False
    assert redis.expire(e, 100, lt=True) is True
    assert redis.expire(e, 200, nx=True) is False
    assert redis.expire(e, 200, gt=True) is True
    assert redis.pexpire(e, 150_000, lt=True) is True
    assert redis.ttl(e) == 150
    later = int(time.time()) + 1000
    assert redis.expireat(e, later, gt=True) is True
    assert redis.pexpireat(e, later * 1000 + 5000, lt=True) is False


def test_keys_scan_randomkey(redis):
    prefix = unique("scan")
    keys = [f"{prefix}:{i:02}" for i in range(23)]
    redis.mset({key: "v" for key in keys})
    assert sorted(redis.keys(f"{prefix}:*")) == keys
    seen, cursor, pages = [], 0, 0
    while True:
        cursor, page = redis.scan(cursor, match=f"{prefix}:*", count=10)
        assert len(page) <= 10
        seen += page
        pages += 1
        if cursor == 0 or pages == 10:
            break
    assert seen == keys
    assert pages == 3
    # A small keyspace comes back in one page, with cursor 0.
    assert redis.scan(0, match=f"{prefix}:0*", count=100, type="string") == (0, keys[:10])
    random = redis.randomkey()
    assert isinstance(random, str) and redis.exists(random) == 1
