"""The real upstash-redis (PyPI) SDK against a real kv-server (scripts/upstash-sdk-test.sh
starts it and sets KV_UPSTASH_URL, KV_UPSTASH_TOKEN, KV_UPSTASH_READ_ONLY_TOKEN)."""

import itertools
import os
import threading

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
        redis.hset(unique("h"), "f", "v")


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
