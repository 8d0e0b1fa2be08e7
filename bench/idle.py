#!/usr/bin/env python3
"""What an idle keyward instance costs as the tenants grow, and how fresh a
second instance stays while writes land on random tenants (issue 18).

Run by `bash bench/run` (BENCH_PATHS includes `idle`, the default), or alone:

    python3 bench/idle.py target/release/keyward

For each backend and tenant count it seeds a fresh database (N tenants in bulk
SQL, plus one tenant `probe` made through the CLI), starts two instances (A
and B) the way a service runs (a session of their own), and:

- idle: with nothing to do, both instances' CPU (utime + stime from /proc)
  and the database's (on PostgreSQL: every backend serving this database,
  the change watches included) over BENCH_IDLE_SECONDS, per instance;
- freshness (at the largest count): a writer changes BENCH_IDLE_WRITES random
  tenants a second in SQL (an operator's writes, seen through the signal like
  any other); meanwhile, in each of BENCH_IDLE_ROUNDS rounds, a new key is made
  through the CLI, verified through B until B caches it, revoked through A,
  and B is asked every millisecond until it refuses: the delay from A's answer
  to B's first refusal, and any acceptance by B after that refusal, which must
  never happen.

Knobs: BENCH_BACKENDS, BENCH_PG (as bench/run), BENCH_IDLE_TENANTS="1 10000
100000", BENCH_IDLE_SECONDS=10, BENCH_IDLE_WRITES=200, BENCH_IDLE_ROUNDS=30.
Targets: an idle instance costs under 2 % of a core with its database share
included, at every count; B refuses within 100 ms, and never accepts again.
"""

import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

KEYWARD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/keyward")
BACKENDS = os.environ.get("BENCH_BACKENDS", "sqlite postgres").split()
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").split("?")[0]
COUNTS = [int(n) for n in os.environ.get("BENCH_IDLE_TENANTS", "1 10000 100000").split()]
SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "10"))
WRITES = int(os.environ.get("BENCH_IDLE_WRITES", "200"))
ROUNDS = int(os.environ.get("BENCH_IDLE_ROUNDS", "30"))
TICK = os.sysconf("SC_CLK_TCK")
missed = []


def log(text):
    print(f"== {text}", file=sys.stderr, flush=True)


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(url, *args):
    env = dict(os.environ, KEYWARD_DATABASE_URL=url, RUST_LOG="warn")
    out = subprocess.run([KEYWARD, *args, "--json"], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def psql(db, sql, *extra):
    return subprocess.run(
        ["psql", "-qAt", "-v", "ON_ERROR_STOP=1", f"{PG}/{db}", *extra, "-c", sql],
        check=True, capture_output=True, text=True,
    ).stdout


class Instance:
    def __init__(self, url, workdir, name):
        self.port = free_port()
        env = dict(os.environ, KEYWARD_DATABASE_URL=url, KEYWARD_BIND=f"127.0.0.1:{self.port}",
                   RUST_LOG="warn", KEYWARD_AUTH_FAILURES_PER_MINUTE="0")
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen([KEYWARD, "serve"], env=env, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        deadline = time.time() + 30
        while True:
            try:
                if self.get("/readiness")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"bench: {name} did not start (see {self.log.name})")
            time.sleep(0.05)

    def get(self, path, headers=None):
        """GET on a kept-alive connection; one made afresh when the server
        closed the idle one (its keep-alive timeout)."""
        for attempt in (1, 2):
            conn = getattr(self, "conn", None)
            if conn is None:
                conn = self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", path, headers=headers or {})
                reply = conn.getresponse()
                reply.read()
                return reply.status, reply
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    raise

    def request(self, method, path, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request(method, path, headers=headers)
        reply = conn.getresponse()
        body = reply.read()
        conn.close()
        return reply.status, body

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def seed(backend, count, workdir):
    """A fresh database with `count` tenants (in bulk) and the probe tenant."""
    if backend == "sqlite":
        path = os.path.join(workdir, f"idle-{count}.db")
        url = f"sqlite://{path}"
        cli(url, "migrate")
        db = sqlite3.connect(path)
        db.execute(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) "
            "INSERT INTO tenants (id, name, max_key_lifetime_days, created_at) "
            "SELECT 'bench-' || n, 'bench-' || n, 365, '2026-01-01 00:00:00' FROM s", (count,))
        db.commit()
        db.close()
        return url, None
    name = f"keyward_bench_idle_{count}_{os.getpid()}"
    psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql("postgres", f"CREATE DATABASE {name}")
    url = f"{PG}/{name}"
    cli(url, "migrate")
    psql(name, "INSERT INTO tenants (id, name, max_key_lifetime_days, created_at) "
               f"SELECT 'bench-' || n, 'bench-' || n, 365, now() FROM generate_series(1, {count}) n")
    psql(name, "VACUUM (ANALYZE)")
    return url, name


def database_pids(db):
    if db is None:
        return []
    out = psql("postgres", f"SELECT pid FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()")
    return [int(p) for p in out.split()]


def idle(backend, count, instances, db):
    time.sleep(2)  # start-up, the first polls, the pools' connections
    pids = [i.proc.pid for i in instances]
    backends = database_pids(db)
    start = time.time()
    before = [cpu_seconds(p) for p in pids], [cpu_seconds(p) for p in backends]
    time.sleep(SECONDS)
    wall = time.time() - start
    after = [cpu_seconds(p) for p in pids], [cpu_seconds(p) for p in backends]
    keyward = sum(after[0]) - sum(before[0])
    database = sum(after[1]) - sum(before[1])
    per_instance = (keyward + database) / len(instances) / wall * 100
    verdict = "ok" if per_instance < 2 else "MISSED (target < 2 %)"
    if per_instance >= 2:
        missed.append(f"idle-{backend}-{count}")
    print(f"idle       {backend:9} tenants={count:<7} per instance: keyward {keyward / len(instances) / wall * 100:.2f} %"
          f" + database {database / len(instances) / wall * 100:.2f} % = {per_instance:.2f} % of a core; {verdict}", flush=True)


def writer(backend, url, db, count, stop):
    """BENCH_IDLE_WRITES changes a second, each to a random tenant, in SQL."""
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite://"), timeout=5)
        write = lambda sql: (conn.execute(sql), conn.commit())
    else:
        proc = subprocess.Popen(["psql", "-qAt", f"{PG}/{db}"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        def write(sql):
            proc.stdin.write(sql + ";\n")
            proc.stdin.flush()
    next_at = time.time()
    while not stop.is_set():
        n = random.randint(1, count)
        write(f"UPDATE tenants SET max_key_lifetime_days = {random.randint(300, 400)} WHERE id = 'bench-{n}'")
        next_at += 1 / WRITES
        time.sleep(max(0, next_at - time.time()))
    if backend != "sqlite":
        proc.stdin.close()
        proc.wait()


def freshness(backend, count, url, db, a, b, probe):
    stop = threading.Event()
    thread = threading.Thread(target=writer, args=(backend, url, db, count, stop), daemon=True)
    thread.start()
    delays, reaccepted = [], 0
    try:
        for round_ in range(ROUNDS):
            key = cli(url, "key", "create", "--tenant", "probe", "--user", probe["user_id"], "--name", f"round{round_}")
            headers = {"tenant": "probe", "x-key": key["key"]}
            for _ in range(3):  # B reads it, then answers from its cache
                assert b.get("/v1/auth", headers)[0] == 200
            admin = {"tenant": "probe", "x-key": probe["key"]}
            status, body = a.request("DELETE", f"/v1/user-api-keys/{key['id']}", admin)
            assert status == 200, body
            revoked = time.time()
            refused = None
            while time.time() - revoked < 0.5:
                ok = b.get("/v1/auth", headers)[0] == 200
                if refused is None and not ok:
                    refused = time.time() - revoked
                elif refused is not None and ok:
                    reaccepted += 1
                if refused is not None and time.time() - revoked > refused + 0.2:
                    break
                time.sleep(0.001)
            delays.append(refused if refused is not None else float("inf"))
    finally:
        stop.set()
        thread.join()
    delays.sort()
    ms = lambda s: f"{s * 1000:.1f} ms"
    worst = delays[-1]
    verdict = "ok" if worst < 0.1 and reaccepted == 0 else "MISSED (target < 100 ms, never accepted again)"
    if verdict != "ok":
        missed.append(f"freshness-{backend}")
    print(f"freshness  {backend:9} tenants={count:<7} {WRITES} writes/s: {len(delays)} revocations through A, "
          f"refused by B after median {ms(delays[len(delays) // 2])}, p95 {ms(delays[int(len(delays) * 0.95) - 1])}, "
          f"max {ms(worst)}; accepted again after a refusal: {reaccepted}; {verdict}", flush=True)


def main():
    with tempfile.TemporaryDirectory(prefix="keyward-idle-") as workdir:
        for backend in BACKENDS:
            for count in COUNTS:
                log(f"{backend}: {count} tenants")
                url, db = seed(backend, count, workdir)
                probe = cli(url, "bootstrap", "--tenant", "probe", "--email", "probe@bench.test")
                instances = [Instance(url, workdir, f"{backend}-{count}-{name}") for name in "ab"]
                try:
                    idle(backend, count, instances, db)
                    if count == COUNTS[-1]:
                        freshness(backend, count, url, db, *instances, probe)
                finally:
                    for instance in instances:
                        instance.stop()
                    if db:
                        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    if missed:
        print(f"idle/freshness targets missed: {' '.join(missed)}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
