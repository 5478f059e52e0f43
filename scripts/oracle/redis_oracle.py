#!/usr/bin/env python3
"""Runs the same Redis commands against a real redis-server and kvstore's /_upstash and fails on
any difference in the replies (values, integers, nils, arrays and error texts), command by
command: Redis itself is the oracle for kvstore's Redis semantics.

  scripts/oracle/redis_oracle.py KV_SERVER_BIN [COMMANDS_FILE]

Starts both servers on free loopback ports over throwaway data (redis-server from Debian's
package, without persistence; kv-server over a temp SQLite file), stops both by the PIDs it
started. The commands file holds one JSON array a line (`#` comments); a line starting with
`unordered ` compares its array reply as a multiset (SMEMBERS, SINTER, … are unordered in
Redis, in byte order in kvstore); `random ` compares only the reply's shape (its type and
length: SPOP, SRANDMEMBER, HRANDFIELD pick at random).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Resp:
    """A minimal RESP2 client: replies as ("ok", value) or ("err", text)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(65536)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:].decode()
        if kind == b"+":
            return ("ok", rest)
        if kind == b"-":
            return ("err", rest)
        if kind == b":":
            return ("ok", int(rest))
        if kind == b"$":
            n = int(rest)
            return ("ok", None if n < 0 else self._exact(n).decode())
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return ("ok", None)
            items = [self._reply() for _ in range(n)]
            return ("ok", [value for _, value in items])
        raise ValueError(f"unexpected reply {line!r}")

    def call(self, args):
        out = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = str(arg).encode()
            out += f"${len(data)}\r\n".encode() + data + b"\r\n"
        self.sock.sendall(out)
        return self._reply()


def kv_call(base, args):
    req = urllib.request.Request(
        base + "/_upstash", data=json.dumps(args).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req) as resp:
            return ("ok", json.loads(resp.read())["result"])
    except urllib.error.HTTPError as err:
        return ("err", json.loads(err.read())["error"])


def wait_for(check, what):
    for _ in range(200):
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"oracle: {what} did not start")


def unordered(value):
    """An array reply as a multiset; a scan's [cursor, items] as its cursor and a multiset."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], list):
        return ("ok", value[0], sorted(map(json.dumps, value[1])))
    return ("ok", sorted(map(json.dumps, value or [])))


def shape(reply):
    kind, value = reply
    return (kind, type(value).__name__, len(value) if isinstance(value, list) else None)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    kv_bin = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    commands = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "commands.txt")
    tmp = tempfile.mkdtemp(prefix="kv-oracle-")
    redis_port, kv_port = free_port(), free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    kv_proc = subprocess.Popen(
        [kv_bin, "--bind", f"127.0.0.1:{kv_port}", "--database-url",
         os.path.join(tmp, "kv.sqlite3")],
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("KV_") and k != "DATABASE_URL"},
    )
    try:
        base = f"http://127.0.0.1:{kv_port}"
        wait_for(lambda: urllib.request.urlopen(base + "/_health/live").status == 200, "kv-server")
        wait_for(lambda: Resp(redis_port).call(["PING"]) == ("ok", "PONG"), "redis-server")
        redis = Resp(redis_port)
        lines = [l for l in open(commands, encoding="utf-8").read().splitlines()
                 if l.strip() and not l.lstrip().startswith("#")]
        differ = 0
        for line in lines:
            mode, _, text = line.partition(" ") if line.split(" ", 1)[0] in ("unordered", "random") else ("", "", line)
            args = json.loads(text)
            ours, theirs = kv_call(base, args), redis.call(args)
            if mode == "unordered" and ours[0] == theirs[0] == "ok":
                ours, theirs = unordered(ours[1]), unordered(theirs[1])
            if mode == "random":
                ours, theirs = shape(ours), shape(theirs)
            if ours != theirs:
                differ += 1
                print(f"oracle: {text}\n  kvstore: {ours}\n  redis:   {theirs}")
        print(f"oracle: {len(lines)} commands, {differ} differ from Redis")
        sys.exit(1 if differ else 0)
    finally:
        kv_proc.terminate()
        redis_proc.terminate()
        kv_proc.wait()
        redis_proc.wait()


if __name__ == "__main__":
    main()
