#!/usr/bin/env python3
"""Measures kv-server's change feed (GET /_watch) from outside, with the standard library only.

  watch_probe.py latency WRITE_BASE WATCH_BASE COUNT INTERVAL_MS
      Opens one SSE watcher on prefix probe/ at WATCH_BASE, then writes COUNT keys probe/<i>
      through WRITE_BASE, one every INTERVAL_MS. For each write: the time until its response
      (the anchor: what a client waits for the write itself) and until its event reached the
      watcher. Prints one JSON line of percentiles (ms).

  watch_probe.py idle BASE COUNT SERVER_PID
      Opens COUNT idle SSE watchers (each on a key of its own) and waits until every one got
      `event: ready`; reads the server's RSS before, with them open, and after they close.
      Checks that a write to one watched key reaches that watcher. Prints one JSON line.
"""
import asyncio
import http.client
import json
import sys
import threading
import time
import urllib.parse
import urllib.request


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def post(base, key, value):
    req = urllib.request.Request(f"{base}/{urllib.parse.quote(key, safe='')}",
                                 data=json.dumps({"value": value}).encode(), method="POST")
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())["version"]


def latency(write_base, watch_base, count, interval_ms):
    host = urllib.parse.urlparse(watch_base)
    received = {}
    ready = threading.Event()

    def watcher():
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        conn.request("GET", "/_watch?prefix=probe%2F&values=false",
                     headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        event = None
        while len(received) < count:
            line = resp.fp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "ready":
                    ready.set()
                elif event is None:
                    data = json.loads(line[6:])
                    received.setdefault(data["key"], time.perf_counter())
            elif line == "":
                event = None

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    if not ready.wait(10):
        sys.exit("the watcher got no `ready`")
    sent, acked = {}, {}
    for i in range(count):
        key = f"probe/{i}"
        sent[key] = time.perf_counter()
        post(write_base, key, i)
        acked[key] = time.perf_counter()
        time.sleep(interval_ms / 1000)
    thread.join(10)
    event_ms = [(received[k] - sent[k]) * 1000 for k in sent if k in received]
    ack_ms = [(acked[k] - sent[k]) * 1000 for k in sent]
    print(json.dumps({
        "writes": count, "events": len(event_ms),
        "event_p50_ms": round(percentile(event_ms, 50), 2),
        "event_p99_ms": round(percentile(event_ms, 99), 2),
        "write_p50_ms": round(percentile(ack_ms, 50), 2),
        "write_p99_ms": round(percentile(ack_ms, 99), 2),
    }))


async def open_watcher(host, port, key, ready_count, stop):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write((f"GET /_watch?key={key} HTTP/1.1\r\nHost: {host}\r\n"
                  "Accept: text/event-stream\r\n\r\n").encode())
    await writer.drain()
    got = b""
    while b"event: ready" not in got:
        chunk = await reader.read(4096)
        if not chunk:
            raise RuntimeError(f"watcher {key}: closed before ready: {got[:200]!r}")
        got += chunk
    ready_count[0] += 1
    events = b""
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(reader.read(4096), 0.5)
        except asyncio.TimeoutError:
            continue
        if not chunk:
            break
        events += chunk
    writer.close()
    return events


async def idle(base, count, pid):
    url = urllib.parse.urlparse(base)
    rss_before = rss_kib(pid)
    stop = asyncio.Event()
    ready_count = [0]
    started = time.perf_counter()
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(
            open_watcher(url.hostname, url.port, f"idle%2F{i}", ready_count, stop)))
        if i % 200 == 199:
            await asyncio.sleep(0)
    while ready_count[0] < count:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()
        await asyncio.sleep(0.05)
    opened_s = time.perf_counter() - started
    await asyncio.sleep(1)
    rss_open = rss_kib(pid)
    with urllib.request.urlopen(f"{base}/_metrics") as resp:
        metrics = resp.read().decode()
    watchers = next((int(l.split()[1]) for l in metrics.splitlines()
                     if l.startswith("kv_watchers ")), None)
    # One write to a watched key: its watcher (and only it) gets the event.
    version = await asyncio.to_thread(post, base, "idle/7", "woken")
    await asyncio.sleep(0.5)
    stop.set()
    results = await asyncio.gather(*tasks)
    got_event = [i for i, r in enumerate(results) if f"id: {version}".encode() in r]
    await asyncio.sleep(1)
    rss_closed = rss_kib(pid)
    print(json.dumps({
        "watchers": count, "kv_watchers": watchers, "opened_s": round(opened_s, 2),
        "rss_before_kib": rss_before, "rss_open_kib": rss_open, "rss_closed_kib": rss_closed,
        "per_watcher_kib": round((rss_open - rss_before) / count, 2),
        "woken": got_event,
    }))


def main():
    mode = sys.argv[1]
    if mode == "latency":
        latency(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    elif mode == "idle":
        asyncio.run(idle(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
