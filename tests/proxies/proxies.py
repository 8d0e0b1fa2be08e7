"""keyward behind nginx and Caddy, from the templates in deploy/.

Starts the release binary on a fresh SQLite database (two tenants), a trivial
upstream (in this process) that answers with the X-Keyward-* headers it
received (and notes every path it is asked for), then each proxy on a free loopback port, and checks through it:
valid, missing, bad and foreign keys, a missing scope, revocation, throttling
per client, forged identity headers, and usage control (API.md section 9): a
key's rate limit and credits (429 with `Retry-After`, `RateLimit-Policy` and
`RateLimit` reaching the client, the refused request never reaching the
upstream), its `allowed_ips` against the address the proxy reports (403), and
the `RateLimit` headers of a successful answer.

Clients are told apart by their own source address (127.0.x.y: Linux routes
all of 127.0.0.0/8 to loopback), as they would be on a network: keyward trusts
only the proxy (127.0.0.1/32), so each client has its own throttle bucket.

Standard library only. Every process started is stopped by its pid, also on
failure or interrupt. Prints `N passed, M failed`; exits 1 on any failure.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAILURES_PER_MINUTE = 5
IDENTITY = ["X-Keyward-Tenant", "X-Keyward-User-Id", "X-Keyward-Key-Id", "X-Keyward-Scopes", "X-Keyward-Roles"]

processes = []  # (name, Popen, log path)
passed = 0
failed = 0
_next_client = [0]


def client_address():
    """A loopback source address no other check has used: its own throttle bucket."""
    _next_client[0] += 1
    n = _next_client[0]
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reply:
    def __init__(self, status, headers, body, fields=()):
        self.status = status
        self.headers = headers
        self.body = body
        self.fields = list(fields)  # every (name, value) as received, names lowercase

    def all(self, name):
        """Every value of header `name`, in order (a repeated field's lines)."""
        return [v for k, v in self.fields if k == name.lower()]

    def header(self, name):
        """The value of header `name` (None when absent); sent twice is a failure."""
        values = self.all(name)
        expect(len(values) <= 1, f"{name} sent {len(values)} times: {self!r}")
        return values[0] if values else None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def problem(self):
        """The problem-details body without its per-request traceId."""
        body = self.json()
        if isinstance(body, dict):
            body.pop("traceId", None)
        return body

    def __repr__(self):
        return f"{self.status} {self.headers} {self.body[:300]!r}"


def request(port, path, headers=(), method="GET", source=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source or client_address(), 0))
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        res = conn.getresponse()
        body = res.read().decode("utf-8", "replace")
        fields = [(k.lower(), v) for k, v in res.getheaders()]
        return Reply(res.status, dict(fields), body, fields)
    finally:
        conn.close()


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok    {name}")
    except Exception:  # noqa: BLE001 - every failure is reported and counted
        failed += 1
        print(f"FAIL  {name}")
        traceback.print_exc(file=sys.stdout)


def expect(condition, what):
    if not condition:
        raise AssertionError(what)


# --- processes -----------------------------------------------------------------


def start(name, argv, work, env=None):
    log = work / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    processes.append((name, proc, log))
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all():
    while processes:
        _, proc, _ = processes.pop()
        stop(proc)


def show_logs():
    for name, _, log in processes:
        print(f"--- {name} log ({log}) ---")
        print(log.read_text(errors="replace")[-4000:])


def wait_for_port(port, proc, name):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} does not listen on {port}")


# --- the upstream --------------------------------------------------------------


upstream_paths = []  # every path the upstream was asked for, in order


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers any request with the X-Keyward-* and RateLimit* headers it
    received, as JSON; on /own-limits with RateLimit fields of its own."""

    def answer(self):
        upstream_paths.append(self.path)
        seen = {k: v for k, v in self.headers.items() if k.lower().startswith(("x-keyward-", "ratelimit"))}
        body = json.dumps({"path": self.path, "headers": seen}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/own-limits"):  # an API with rate limits of its own
            self.send_header("RateLimit-Policy", '"api";q=100;w=60')
            self.send_header("RateLimit", '"api";r=99;t=60')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer

    def log_message(self, *args):
        pass


# --- keyward -------------------------------------------------------------------


def cli(binary, env, *args):
    out = subprocess.run([binary, *args, "--json"], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class World:
    pass


def setup_keyward(binary, work):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
    env["KEYWARD_DATABASE_URL"] = f"sqlite://{work / 'keyward.db'}"
    w = World()
    acme = cli(binary, env, "bootstrap", "--tenant", "acme", "--email", "admin@acme.test")
    w.admin_key, w.admin_id = acme["key"], acme["user_id"]
    beta = cli(binary, env, "bootstrap", "--tenant", "beta", "--email", "admin@beta.test")
    w.beta_key = beta["key"]
    w.alice_id = cli(binary, env, "user", "create", "--tenant", "acme", "--email", "alice@acme.test")["id"]
    w.port = free_port()
    env.update(
        KEYWARD_BIND=f"127.0.0.1:{w.port}",
        KEYWARD_TRUSTED_PROXIES="127.0.0.1/32",
        KEYWARD_AUTH_FAILURES_PER_MINUTE=str(FAILURES_PER_MINUTE),
        RUST_LOG="warn",
    )
    w.env = env
    proc = start("keyward", [binary, "serve"], work, env)
    wait_for_port(w.port, proc, "keyward")
    return w


def alice_key(binary, w, name):
    """A new public_api key of Alice's: (id, secret)."""
    created = cli(binary, w.env, "key", "create", "--tenant", "acme", "--user", "alice@acme.test", "--name", name)
    return created["id"], created["key"]


def as_admin(w, method, path, body):
    """Acme's Administrator calls keyward directly: (status, JSON answer)."""
    headers = {"tenant": "acme", "x-key": w.admin_key, "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body), headers=headers)
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def limited_key(w, name, user_id=None, **limits):
    """A new public_api key (Alice's unless `user_id`) with usage control
    (`ratelimits`, `credits`, `allowed_ips`), made by the Administrator:
    (id, secret)."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    body = {"name": name, "user_id": user_id or w.alice_id, "expiration_date": today, **limits}
    status, created = as_admin(w, "POST", "/v1/user-api-keys", body)
    expect(status == 201, (status, created))
    for field, value in limits.items():
        expect(field not in ("ratelimits", "allowed_ips") or created.get(field) == value, (field, created))
    return created["id"], created["key"]


def away_from_a_boundary(duration_ms, margin_s=10):
    """Waits, if need be, until the current fixed window (aligned to the epoch)
    has at least `margin_s` left, so that a check's requests share one window."""
    left_ms = duration_ms - int(time.time() * 1000) % duration_ms
    if left_ms < margin_s * 1000:
        time.sleep(left_ms / 1000 + 0.1)


def never_issued(prefix="kw"):
    """A well-formed secret (valid checksum) that no tenant has."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    body = prefix + "_" + "".join(alphabet[b % 62] for b in os.urandom(32))
    crc, digits = zlib.crc32(body.encode()), ""
    for _ in range(6):
        crc, digit = divmod(crc, 62)
        digits = alphabet[digit] + digits
    return body + digits


# --- the proxies ---------------------------------------------------------------


def render(template, **values):
    text = (ROOT / template).read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    expect("{{" not in text, f"{template}: a placeholder is left")
    return text


def start_nginx(work, keyward_port, upstream_port):
    port = free_port()
    conf = work / "nginx"
    conf.mkdir()
    (conf / "keyward-auth.conf").write_text(
        render(
            "deploy/nginx/keyward-auth.conf",
            LISTEN=f"127.0.0.1:{port}",
            KEYWARD=f"127.0.0.1:{keyward_port}",
            UPSTREAM=f"127.0.0.1:{upstream_port}",
        )
    )
    temp = "".join(f"    {kind}_temp_path {conf}/{kind}_temp;\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    (conf / "nginx.conf").write_text(
        f"""{user}worker_processes 1;
pid {conf}/nginx.pid;
error_log {conf}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {conf}/access.log;
{temp}    include {conf}/keyward-auth.conf;
}}
"""
    )
    argv = ["nginx", "-p", str(conf), "-c", str(conf / "nginx.conf"), "-e", str(conf / "error.log"), "-g", "daemon off;"]
    proc = start("nginx", argv, work)
    wait_for_port(port, proc, "nginx")
    return port, proc


def start_caddy(work, keyward_port, upstream_port):
    port = free_port()
    conf = work / "caddy"
    conf.mkdir()
    caddyfile = conf / "Caddyfile"
    caddyfile.write_text(
        render(
            "deploy/caddy/Caddyfile",
            LISTEN=f"http://127.0.0.1:{port}",
            KEYWARD=f"127.0.0.1:{keyward_port}",
            UPSTREAM=f"127.0.0.1:{upstream_port}",
        )
    )
    env = dict(os.environ, HOME=str(conf), XDG_DATA_HOME=str(conf / "data"), XDG_CONFIG_HOME=str(conf / "config"))
    argv = ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    proc = start("caddy", argv, work, env)
    wait_for_port(port, proc, "caddy")
    return port, proc


# --- the checks ----------------------------------------------------------------


def through(proxy, binary, w, port):
    direct = w.port
    key = lambda secret, tenant="acme": [("tenant", tenant), ("x-key", secret)]  # noqa: E731
    alice_id, alice_secret = alice_key(binary, w, f"{proxy} key")

    def valid_key_reaches_the_upstream():
        reply = request(port, "/orders/42?x=1", key(alice_secret))
        expect(reply.status == 200, reply)
        seen = reply.json()["headers"]
        expect(seen.get("X-Keyward-User-Id") == w.alice_id, seen)
        expect(seen.get("X-Keyward-Tenant") == "acme", seen)
        expect(seen.get("X-Keyward-Key-Id") == alice_id, seen)
        expect(seen.get("X-Keyward-Scopes") == "public_api", seen)
        expect(seen.get("X-Keyward-Roles") == "Default users", seen)
        expect(reply.json()["path"] == "/orders/42?x=1", reply)
        bearer = request(port, "/", [("tenant", "acme"), ("Authorization", f"Bearer {alice_secret}")], method="POST")
        expect(bearer.status == 200, bearer)

    def forged_identity_never_reaches_the_upstream():
        forged = [(name, "forged") for name in IDENTITY]
        reply = request(port, "/", key(alice_secret) + forged + [("X-Keyward-Other", "forged")])
        expect(reply.status == 200, reply)
        seen = reply.json()["headers"]
        expect(seen.get("X-Keyward-User-Id") == w.alice_id, seen)
        expect("forged" not in json.dumps({k: v for k, v in seen.items() if k in IDENTITY}), seen)
        if proxy == "caddy":  # nginx can only replace the headers it sets
            expect("X-Keyward-Other" not in seen, seen)

    def refused_like_keyward(headers, field, message):
        via = request(port, "/", headers)
        straight = request(direct, "/v1/auth", headers)
        expect(via.status == 401, via)
        expect(via.problem() == straight.problem(), (via, straight))
        expect(via.problem()["errors"] == {field: [message]}, via)
        expect(via.header("www-authenticate") == 'Bearer realm="keyward"', via)
        expect(via.header("content-type") == "application/problem+json", via)
        return via

    def no_key():
        refused_like_keyward([("tenant", "acme")], "x-key", "API key missing")

    def bad_key():
        refused_like_keyward(key("kw_notakey"), "x-key", "Invalid API key")
        refused_like_keyward(key(alice_secret, "nope"), "tenant", "Unknown tenant specified")

    def another_tenants_key():
        foreign = refused_like_keyward(key(w.beta_key), "x-key", "Invalid API key")
        unknown = request(port, "/", key(never_issued()))
        expect(unknown.status == 401 and unknown.problem() == foreign.problem(), (unknown, foreign))

    def missing_scope_is_403():
        reply = request(port, "/admin/users", key(alice_secret))
        expect(reply.status == 403, reply)
        expect(reply.problem()["title"] == "The calling key lacks the user_management scope", reply)
        expect(reply.header("content-type") == "application/problem+json", reply)
        admin = request(port, "/admin/users", key(w.admin_key))
        expect(admin.status == 200, admin)
        expect(admin.json()["headers"].get("X-Keyward-User-Id") == w.admin_id, admin)

    def revoked_key_is_refused_on_the_next_request():
        doomed_id, doomed = alice_key(binary, w, f"{proxy} doomed")
        expect(request(port, "/", key(doomed)).status == 200, "before")
        revoked = request(direct, f"/v1/user-api-keys/{doomed_id}", key(w.admin_key), method="DELETE")
        expect(revoked.status == 200, revoked)
        after = request(port, "/", key(doomed))
        expect(after.status == 401 and after.problem()["errors"] == {"x-key": ["Invalid API key"]}, after)

    def a_throttled_client_alone_gets_429():
        attacker, neighbour = client_address(), client_address()
        statuses = []
        for _ in range(2 * FAILURES_PER_MINUTE):
            statuses.append(request(port, "/", key("kw_guess"), source=attacker).status)
            if statuses[-1] == 429:
                break
        expect(statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses)
        refused = request(port, "/", key(alice_secret), source=attacker)
        expect(refused.status == 429, refused)
        expect((refused.header("retry-after") or "").isdigit(), refused)
        expect(refused.problem()["title"] == "Too many failed authentications", refused)
        # Claiming another address changes nothing: the proxy appends the real one.
        spoofed = request(port, "/", key(alice_secret) + [("X-Forwarded-For", "203.0.113.9")], source=attacker)
        expect(spoofed.status == 429, spoofed)
        expect(request(port, "/", key(alice_secret), source=neighbour).status == 200, "the neighbour is locked out too")

    # --- usage control (API.md section 9) ---

    def upstream_saw(path):
        return path in upstream_paths

    def no_ratelimit_headers_without_limits():
        reply = request(port, "/unlimited", key(alice_secret))
        expect(reply.status == 200, reply)
        expect(reply.header("ratelimit") is None and reply.header("ratelimit-policy") is None, reply)

    def rate_limited_key_gets_429_with_its_headers():
        hour = 3_600_000
        limits = {"ratelimits": [{"name": "burst", "limit": 3, "duration_ms": hour}]}
        _, secret = limited_key(w, f"{proxy} burst", **limits)
        away_from_a_boundary(hour)
        for n in (1, 2, 3):
            ok = request(port, f"/burst/{proxy}/{n}", key(secret))
            expect(ok.status == 200, ok)
            expect(ok.json()["path"] == f"/burst/{proxy}/{n}", ok)
            # keyward's headers of this verification, passed to the client
            expect(ok.header("ratelimit-policy") == '"burst";q=3;w=3600', ok)
            remaining, _, reset = (ok.header("ratelimit") or "").partition(";t=")
            expect(remaining == f'"burst";r={3 - n}' and reset.isdigit() and 1 <= int(reset) <= 3600, ok)
        path = f"/burst/{proxy}/4"
        refused = request(port, path, key(secret))
        expect(refused.status == 429, refused)
        expect(refused.header("content-type") == "application/problem+json", refused)
        expect(refused.problem()["title"] == "Rate limit burst exceeded", refused)
        retry = refused.header("retry-after") or ""
        expect(retry.isdigit() and 1 <= int(retry) <= 3600, refused)
        expect(refused.header("ratelimit-policy") == '"burst";q=3;w=3600', refused)
        expect(refused.header("ratelimit") == f'"burst";r=0;t={retry}', refused)
        expect(not upstream_saw(path), f"the upstream saw {path}")
        # exactly keyward's own answer (a refusal consumes nothing, so asking again is the same)
        straight = request(direct, "/v1/auth", key(secret))
        expect(straight.status == 429 and refused.problem() == straight.problem(), (refused, straight))

    def the_apis_own_ratelimit_headers_travel_beside_keywards():
        _, secret = limited_key(w, f"{proxy} shared", ratelimits=[{"name": "day", "limit": 1000, "duration_ms": 86_400_000}])
        # RateLimit headers a client sends never come back in its answer
        forged = [("RateLimit-Policy", '"forged";q=1;w=1'), ("RateLimit", '"forged";r=1;t=1')]
        reply = request(port, "/own-limits", key(secret) + forged)
        expect(reply.status == 200, reply)
        api_saw = {k: v for k, v in reply.json()["headers"].items() if k.lower().startswith("ratelimit")}
        # keyward's are for the client, not the API (Caddy carries them on the
        # request and removes them; nginx passes a client's headers as they are)
        expect(api_saw == ({} if proxy == "caddy" else dict(forged)), reply)
        policies = reply.all("ratelimit-policy")
        expect(sorted(policies) == ['"api";q=100;w=60', '"day";q=1000;w=86400'], reply)
        expect(sorted(v.partition(";")[0] for v in reply.all("ratelimit")) == ['"api"', '"day"'], reply)

    def a_users_rate_limit_is_shared_by_its_keys():
        hour = 3_600_000
        bob = cli(binary, w.env, "user", "create", "--tenant", "acme", "--email", f"bob-{proxy}@acme.test")["id"]
        status, user = as_admin(w, "PATCH", f"/v1/users/{bob}", {"ratelimits": [{"name": "team", "limit": 2, "duration_ms": hour}]})
        expect(status == 200, (status, user))
        _, first = limited_key(w, f"{proxy} team 1", user_id=bob)
        _, second = limited_key(w, f"{proxy} team 2", user_id=bob)
        away_from_a_boundary(hour)
        for secret, left in [(first, 1), (second, 0)]:
            ok = request(port, f"/team/{proxy}/{left}", key(secret))
            expect(ok.status == 200, ok)
            expect(ok.header("ratelimit-policy") == '"team";q=2;w=3600', ok)
            expect((ok.header("ratelimit") or "").startswith(f'"team";r={left};t='), ok)
        path = f"/team/{proxy}/over"
        refused = request(port, path, key(first))
        expect(refused.status == 429 and refused.problem()["title"] == "Rate limit team exceeded", refused)
        expect((refused.header("retry-after") or "").isdigit(), refused)
        expect((refused.header("ratelimit") or "").startswith('"team";r=0;t='), refused)
        expect(not upstream_saw(path), f"the upstream saw {path}")

    def exhausted_credits_get_429():
        # one credit, never refilled: no Retry-After
        _, once = limited_key(w, f"{proxy} once", credits={"remaining": 1, "refill": None})
        expect(request(port, f"/credits/{proxy}/1", key(once)).status == 200, "the one credit")
        path = f"/credits/{proxy}/2"
        refused = request(port, path, key(once))
        expect(refused.status == 429, refused)
        expect(refused.problem()["title"] == "Usage credits exhausted", refused)
        expect(refused.header("retry-after") is None, refused)
        expect(refused.header("ratelimit") is None and refused.header("ratelimit-policy") is None, refused)
        expect(not upstream_saw(path), f"the upstream saw {path}")
        # none left, refilled daily: Retry-After says until the next 00:00Z
        daily = {"remaining": 0, "refill": {"interval": "daily", "amount": 10}}
        _, broke = limited_key(w, f"{proxy} broke", credits=daily)
        path = f"/credits/{proxy}/daily"
        refused = request(port, path, key(broke))
        expect(refused.status == 429, refused)
        expect(refused.problem()["title"] == "Usage credits exhausted", refused)
        retry = refused.header("retry-after") or ""
        expect(retry.isdigit() and 1 <= int(retry) <= 86400, refused)
        expect(not upstream_saw(path), f"the upstream saw {path}")

    def address_not_allowed_is_403():
        home = f"127.0.77.{7 if proxy == 'nginx' else 8}"
        _, secret = limited_key(w, f"{proxy} fenced", allowed_ips=[f"{home}/32"])
        inside = request(port, f"/fenced/{proxy}/home", key(secret), source=home)
        expect(inside.status == 200, inside)
        expect(inside.json()["headers"].get("X-Keyward-User-Id") == w.alice_id, inside)
        for path, extra in [(f"/fenced/{proxy}/away", []), (f"/fenced/{proxy}/spoofed", [("X-Forwarded-For", home)])]:
            # the proxy appends the address the request came from: claiming `home` changes nothing
            refused = request(port, path, key(secret) + extra)
            expect(refused.status == 403, refused)
            expect(refused.header("content-type") == "application/problem+json", refused)
            expect(refused.problem()["title"] == "Key not allowed from this address", refused)
            expect(not upstream_saw(path), f"the upstream saw {path}")
        straight = request(direct, "/v1/auth", key(secret))
        expect(straight.status == 403 and refused.problem() == straight.problem(), (refused, straight))

    for fn in [
        valid_key_reaches_the_upstream,
        forged_identity_never_reaches_the_upstream,
        no_key,
        bad_key,
        another_tenants_key,
        missing_scope_is_403,
        revoked_key_is_refused_on_the_next_request,
        a_throttled_client_alone_gets_429,
        no_ratelimit_headers_without_limits,
        rate_limited_key_gets_429_with_its_headers,
        the_apis_own_ratelimit_headers_travel_beside_keywards,
        a_users_rate_limit_is_shared_by_its_keys,
        exhausted_credits_get_429,
        address_not_allowed_is_403,
    ]:
        check(f"{proxy}: {fn.__name__.replace('_', ' ')}", fn)


def quiet_log(path):
    """nginx logged no error or warning: a refusal (401, 403, 429) is an
    answer, not an "auth request unexpected status" error."""
    noisy = [line for line in path.read_text().splitlines() if "[error]" in line or "[warn]" in line]
    expect(not noisy, "\n".join(noisy[:5]))


def main():
    global failed
    binary = str(Path(sys.argv[1]).resolve())
    work = Path(tempfile.mkdtemp(prefix="keyward-proxies-"))
    # Ended from outside (CI's timeout, Ctrl-C): still stop what was started.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    upstream_port = upstream.server_address[1]
    ok = False
    try:
        w = setup_keyward(binary, work)
        for proxy, launch in [("nginx", start_nginx), ("caddy", start_caddy)]:
            if shutil.which(proxy) is None:
                check(f"{proxy} is installed", lambda: expect(False, f"{proxy} not on PATH"))
                continue
            port, proc = launch(work, w.port, upstream_port)
            try:
                through(proxy, binary, w, port)
                if proxy == "nginx":
                    check("nginx: refusals are no errors in its log", lambda: quiet_log(work / "nginx" / "error.log"))
            finally:
                stop(proc)
        ok = failed == 0
    except Exception:  # noqa: BLE001
        failed += 1
        traceback.print_exc(file=sys.stdout)
    finally:
        if not ok:
            show_logs()
        stop_all()
        upstream.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
