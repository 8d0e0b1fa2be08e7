//! Usage control is exact across instances (API.md section 9, issue 19):
//! real `keyward serve` processes on one database share a key's rate limit
//! and credits, one of them killed with SIGKILL; and, in process, a refused
//! verification consumes nothing, refills come on time with a set clock.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::test::TestRequest;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;
use keyward::keys::Scope;

const AUTH: &str = "/v1/auth";
const KEYS: &str = "/v1/user-api-keys";

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A response of the binary: status, the headers (lower-case names), the
/// body as JSON (or `Null`).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One kept-alive HTTP/1.1 connection to an instance.
struct Client {
    port: u16,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(port: u16) -> Self {
        Self { port, conn: None }
    }

    /// `None` when the instance does not answer (it was killed).
    fn call(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> Option<Answer> {
        // A kept-alive connection the server closed meanwhile: one more try
        // on a new one.
        for _ in 0..2 {
            if self.conn.is_none() {
                let stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                self.conn = Some(BufReader::new(stream));
            }
            match self.exchange(method, path, key, body) {
                Some(answer) => return Some(answer),
                None => self.conn = None,
            }
        }
        None
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> Option<Answer> {
        let conn = self.conn.as_mut()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\ntenant: acme\r\nx-key: {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.get_mut().write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        if conn.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':')?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut bytes = vec![0; length];
        conn.read_exact(&mut bytes).ok()?;
        let closes = headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
        if closes {
            self.conn = None;
        }
        Some(Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }
}

/// Three instances and a key made through the first with `limits` (the
/// binary runs on the wall clock: the key works today). Returns the
/// instances, the key's id and its secret, and the administrator's secret.
fn instances(
    n: usize,
    app: &TestApp,
    dir: &std::path::Path,
    limits: Value,
) -> (Vec<Instance>, String, String, String) {
    let w = World::new(app);
    let real_today = Utc::now().date_naive();
    let admin = app
        .key_until(
            &w.acme,
            &w.admin,
            &Scope::ALL,
            real_today + chrono::Days::new(30),
        )
        .1;
    let instances: Vec<Instance> = (0..n).map(|_| Instance::start(app, dir, &[])).collect();
    let mut body = json!({
        "name": "shared",
        "user_id": w.alice.id,
        "expiration_date": (real_today + chrono::Days::new(30)).to_string(),
    });
    for (field, value) in limits.as_object().unwrap() {
        body[field] = value.clone();
    }
    let made = Client::new(instances[0].port)
        .call("POST", KEYS, &admin, Some(&body))
        .unwrap();
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let secret = made.body["key"].as_str().unwrap().to_owned();
    (instances, id, secret, admin)
}

/// What one load thread saw: the verifications admitted, by the end of
/// their window (the server's `reset`), and what else.
#[derive(Debug, Default)]
struct Seen {
    admitted: BTreeMap<i64, usize>,
    refused: usize,
    /// When its first request was sent and its last one answered (wall ms).
    first_ms: i64,
    last_ms: i64,
}

const LIMIT: usize = 200;
const WINDOW_MS: i64 = 2000;

both_backends! {
    async fn three_instances_share_a_rate_limit_exactly(app: &TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let (instances, _, secret, _) = instances(3, app, dir.path(), json!({
            "ratelimits": [{"name": "burst", "limit": LIMIT, "duration_ms": WINDOW_MS}],
        }));
        // Load from just after a window starts to past three more windows:
        // three threads per instance, each about 100 verifications a second
        // (900/s against a limit of 100/s).
        let now = wall_ms();
        let first_window = (now / WINDOW_MS + 1) * WINDOW_MS;
        let start_at = first_window - 200;
        let stop_at = first_window + 3 * WINDOW_MS + 200;
        std::thread::sleep(Duration::from_millis((start_at - now).max(0) as u64));
        let threads: Vec<_> = instances
            .iter()
            .flat_map(|i| std::iter::repeat_n(i.port, 3))
            .map(|port| {
                let secret = secret.clone();
                std::thread::spawn(move || {
                    let mut client = Client::new(port);
                    let mut seen = Seen { first_ms: wall_ms(), ..Seen::default() };
                    while wall_ms() < stop_at {
                        let answer = client.call("GET", AUTH, &secret, None).expect("the instance answers");
                        match answer.status {
                            200 => {
                                let reset = answer.body["ratelimits"][0]["reset"].as_str().unwrap();
                                let reset = chrono::DateTime::parse_from_rfc3339(reset).unwrap().timestamp_millis();
                                *seen.admitted.entry(reset).or_default() += 1;
                            }
                            429 => {
                                assert_eq!(answer.body["title"], json!("Rate limit burst exceeded"), "{}", answer.body);
                                let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
                                assert!((1..=2).contains(&retry), "Retry-After {retry}");
                                seen.refused += 1;
                            }
                            _ => panic!("{} {}", answer.status, answer.body),
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    seen.last_ms = wall_ms();
                    seen
                })
            })
            .collect();
        let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let mut admitted = BTreeMap::<i64, usize>::new();
        for s in &seen {
            for (end, n) in &s.admitted {
                *admitted.entry(*end).or_default() += n;
            }
        }
        let refused: usize = seen.iter().map(|s| s.refused).sum();
        let loaded_from = seen.iter().map(|s| s.first_ms).max().unwrap();
        let loaded_to = seen.iter().map(|s| s.last_ms).min().unwrap();
        eprintln!("admitted per window (by its end): {admitted:?}; refused {refused}");
        for (end, n) in &admitted {
            assert_eq!(end % WINDOW_MS, 0, "a window aligned to the epoch");
            assert!(*n <= LIMIT, "the window ending at {end} admitted {n} > {LIMIT}");
        }
        let complete: Vec<i64> = admitted
            .keys()
            .copied()
            .filter(|end| end - WINDOW_MS >= loaded_from && *end <= loaded_to)
            .collect();
        assert!(complete.len() >= 3, "three complete windows under load: {complete:?} ({loaded_from}..{loaded_to})");
        for end in complete {
            let n = admitted[&end];
            assert!(n >= LIMIT * 9 / 10, "the window ending at {end} admitted only {n} < 90 % of {LIMIT}");
        }
        // The load was above the limit: every instance was refused some.
        assert!(refused > admitted.values().sum::<usize>(), "the load stayed above the limit");
    }

    async fn credits_spent_through_three_instances_one_killed(app: &TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let (mut instances, id, secret, admin) = instances(3, app, dir.path(), json!({
            "credits": {"remaining": CREDITS, "refill": null},
        }));
        let load = CreditLoad::start(&instances, &secret);
        // Killed mid-way, while it serves from what it reserved.
        load.wait_for(CREDITS * 2 / 5);
        load.stopped.store(true, Ordering::SeqCst);
        instances[2].kill_9();
        let at_kill = load.spent();
        let (spent, by_third) = load.join();
        assert!(by_third > 0, "the killed instance served before it died");
        // Whatever the survivors still hold unused comes back after a second
        // idle; then they drain the balance to its end.
        std::thread::sleep(Duration::from_millis(1500));
        let drained = drain(&instances[..2], &secret);
        let total = spent + drained;
        let lost = CREDITS as i64 - total as i64;
        // What the killed instance can have held. It reserves only when it
        // holds less than the cost at hand (so less than MAX_COST), and a
        // reservation takes the cost or at most a twentieth of what is left
        // (`store::CREDIT_SHARE`), at most 1000 / 20. What it had spent but
        // not answered came out of what it held.
        let share = (CREDITS / keyward::limiter::store::CREDIT_SHARE as usize) as i64;
        let bound = (MAX_COST as i64).max(MAX_COST as i64 - 1 + share);
        eprintln!("spent {total} (at the kill {at_kill}, by the killed instance {by_third}, drained after {drained}); lost {lost} (bound {bound})");
        assert!(lost >= 0, "{total} spent out of {CREDITS} credits");
        assert!(lost <= bound, "lost {lost} credits, more than the {bound} a killed instance may hold");
        // The survivors hold nothing and the balance is spent: the key object says 0.
        let key = Client::new(instances[0].port).call("GET", &format!("{KEYS}/{id}"), &admin, None).unwrap();
        assert_eq!(key.status, 200, "{}", key.body);
        assert_eq!(key.body["credits"]["remaining"], json!(0), "{}", key.body);
    }

    async fn credits_are_given_back_at_shutdown_and_when_idle(app: &TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let (mut instances, id, secret, admin) = instances(3, app, dir.path(), json!({
            "credits": {"remaining": CREDITS, "refill": null},
        }));
        let load = CreditLoad::start(&instances, &secret);
        // The load stops mid-way with every instance holding leases; then
        // one instance stops (SIGTERM): it gives its back at shutdown, the
        // survivors theirs after a second unused.
        load.wait_for(CREDITS * 3 / 10);
        load.done.store(true, Ordering::SeqCst);
        load.third_done.store(true, Ordering::SeqCst);
        let (spent, by_third) = load.join();
        assert!(by_third > 0, "the stopped instance served before it stopped");
        assert!(spent < CREDITS, "stopped before the end: {spent}");
        instances[2].terminate();
        std::thread::sleep(Duration::from_millis(2000));
        let key = Client::new(instances[0].port).call("GET", &format!("{KEYS}/{id}"), &admin, None).unwrap();
        assert_eq!(key.status, 200, "{}", key.body);
        assert_eq!(key.body["credits"]["remaining"], json!(CREDITS - spent), "nothing held: {}", key.body);
        // Not one credit lost.
        let drained = drain(&instances[..1], &secret);
        assert_eq!(spent + drained, CREDITS, "spent {spent}, then drained {drained}");
    }

    async fn an_instance_stopped_gives_back_what_it_held(app: &TestApp) {
        let dir = tempfile::tempdir().unwrap();
        let (mut instances, id, secret, _) = instances(1, app, dir.path(), json!({
            "credits": {"remaining": CREDITS, "refill": null},
        }));
        // One client at a time: each verification reserves exactly its cost,
        // so the database is exact.
        let mut client = Client::new(instances[0].port);
        for left in [999, 998, 997] {
            let answer = client.call("GET", AUTH, &secret, None).unwrap();
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(answer.body["credits"]["key"], json!(left));
        }
        let stored = || {
            let balances = keyward::limiter::store::balances(&mut app.conn(), &app_tenant(app), &[id.as_str()]).unwrap();
            balances[&id].remaining
        };
        assert_eq!(stored(), CREDITS as i64 - 3, "a lone client is counted exactly");
        // Clients at once queue behind reservations: the instance reserves
        // ahead (a lease, more than it needs). Bursts until it holds one.
        let port = instances[0].port;
        let mut used = 3i64;
        let mut held = 0;
        for _ in 0..5 {
            let bursts: Vec<_> = (0..8).map(|_| {
                let secret = secret.clone();
                std::thread::spawn(move || {
                    let mut c = Client::new(port);
                    (0..25).filter(|_| c.call("GET", AUTH, &secret, None).unwrap().status == 200).count()
                })
            }).collect();
            used += bursts.into_iter().map(|b| b.join().unwrap() as i64).sum::<i64>();
            held = CREDITS as i64 - used - stored();
            if held > 0 {
                break;
            }
        }
        assert!(held > 0, "the instance holds a lease");
        // A verification of cost 0 uses the lease: it is not idle when the
        // instance stops (well under the second after which it would be).
        assert_eq!(client.call("GET", &format!("{AUTH}?cost=0"), &secret, None).unwrap().status, 200);
        drop(client);
        instances[0].terminate();
        assert_eq!(stored(), CREDITS as i64 - used, "{held} held, given back at shutdown");
    }
}

const CREDITS: usize = 1000;
/// The load's costs go 1, 2, .. MAX_COST, 1, ..
const MAX_COST: usize = 5;

/// Three client threads per instance spending credits, each about 100
/// verifications a second, until refused, told to stop, or (on the third
/// instance, once `stopped`) unanswered.
struct CreditLoad {
    spent: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    /// The third instance's clients stop.
    third_done: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<usize>>,
}

impl CreditLoad {
    fn start(instances: &[Instance], secret: &str) -> Self {
        let spent = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let third_done = Arc::new(AtomicBool::new(false));
        let threads = instances
            .iter()
            .enumerate()
            .flat_map(|(n, i)| std::iter::repeat_n((n, i.port), 3))
            .enumerate()
            .map(|(t, (n, port))| {
                let (secret, spent, stopped) =
                    (secret.to_owned(), Arc::clone(&spent), Arc::clone(&stopped));
                let all_done = Arc::clone(&done);
                let done = Arc::clone(if n == 2 { &third_done } else { &done });
                std::thread::spawn(move || {
                    let mut client = Client::new(port);
                    let mut mine = 0;
                    for i in t.. {
                        if done.load(Ordering::SeqCst) || all_done.load(Ordering::SeqCst) {
                            break;
                        }
                        let cost = 1 + i % MAX_COST;
                        let Some(answer) =
                            client.call("GET", &format!("{AUTH}?cost={cost}"), &secret, None)
                        else {
                            assert!(
                                n == 2 && stopped.load(Ordering::SeqCst),
                                "instance {n} stopped answering"
                            );
                            break;
                        };
                        match answer.status {
                            200 => {
                                mine += cost;
                                spent.fetch_add(cost, Ordering::SeqCst);
                                let left = answer.body["credits"]["key"].as_i64().unwrap();
                                assert!((0..CREDITS as i64).contains(&left), "{}", answer.body);
                            }
                            429 => {
                                assert_eq!(
                                    answer.body["title"],
                                    json!("Usage credits exhausted"),
                                    "{}",
                                    answer.body
                                );
                                assert!(
                                    answer.header("retry-after").is_none(),
                                    "no refill, no Retry-After"
                                );
                                break;
                            }
                            _ => panic!("{} {}", answer.status, answer.body),
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    mine
                })
            })
            .collect();
        Self {
            spent,
            stopped,
            done,
            third_done,
            threads,
        }
    }

    fn spent(&self) -> usize {
        self.spent.load(Ordering::SeqCst)
    }

    fn wait_for(&self, spent: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.spent() < spent {
            assert!(Instant::now() < deadline, "the load never spent {spent}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// What was spent in all, and through the third instance.
    fn join(self) -> (usize, usize) {
        let per_thread: Vec<usize> = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        (per_thread.iter().sum(), per_thread[6..].iter().sum())
    }
}

/// Spends one credit at a time through each of `instances` until refused;
/// returns how many.
fn drain(instances: &[Instance], secret: &str) -> usize {
    let mut drained = 0;
    for instance in instances {
        let mut client = Client::new(instance.port);
        loop {
            let answer = client.call("GET", AUTH, secret, None).unwrap();
            if answer.status == 429 {
                break;
            }
            assert_eq!(answer.status, 200, "{}", answer.body);
            drained += 1;
        }
    }
    drained
}

/// acme's id.
fn app_tenant(app: &TestApp) -> String {
    keyward::tenants::get_by_name(&mut app.conn(), "acme")
        .unwrap()
        .id
}

/// Gives `user` of acme its own limits, straight in the database (shared by
/// all its keys); its balance is set as of now.
fn set_user_limits(
    app: &TestApp,
    tenant_id: &str,
    user_id: &str,
    ratelimits: Value,
    credits: Option<u64>,
) {
    use diesel::prelude::*;
    use keyward::limits::{Credits, Limits};
    use keyward::schema::users;
    let now_ms = app.now().timestamp_millis();
    let limits = Limits {
        ratelimits: serde_json::from_value(ratelimits).unwrap(),
        credits: credits.map(|_| Credits {
            refill: None,
            set_at: now_ms,
        }),
    };
    diesel::update(users::table.filter(users::id.eq(user_id)))
        .set((
            users::ratelimits.eq(limits.encode_ratelimits()),
            users::credits.eq(limits.encode_credits()),
        ))
        .execute(&mut *app.conn())
        .unwrap();
    if let Some(remaining) = credits {
        keyward::limiter::store::set_balance(
            &mut app.conn(),
            tenant_id,
            user_id,
            remaining,
            now_ms,
        )
        .unwrap();
    }
}

/// A key of alice's made by the administrator with `limits`; (id, secret).
async fn limited_key(app: &TestApp, w: &World, admin: &str, limits: Value) -> (String, String) {
    let mut body = json!({"name": "limited", "user_id": w.alice.id, "expiration_date": (today() + chrono::Days::new(300)).to_string()});
    for (field, value) in limits.as_object().unwrap() {
        body[field] = value.clone();
    }
    let made = app.post(KEYS, "acme", admin, body).await;
    assert_eq!(made.status, 201, "{}", made.text);
    (
        made.body["id"].as_str().unwrap().to_owned(),
        made.body["key"].as_str().unwrap().to_owned(),
    )
}

async fn spend(app: &TestApp, key: &str, cost: u32) -> Reply {
    app.get(&format!("{AUTH}?cost={cost}"), "acme", key).await
}

/// A passing verification and what it leaves: each rate limit's
/// `(name, scope, remaining)` in the answer's order, and the credits.
fn assert_left(reply: &Reply, ratelimits: &[(&str, &str, u64)], key: Value, user: Value) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let got: Vec<(String, String, u64)> = reply.body["ratelimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["scope"].as_str().unwrap().to_owned(),
                r["remaining"].as_u64().unwrap(),
            )
        })
        .collect();
    let wanted: Vec<(String, String, u64)> = ratelimits
        .iter()
        .map(|(n, s, r)| (n.to_string(), s.to_string(), *r))
        .collect();
    assert_eq!(got, wanted, "{}", reply.text);
    assert_eq!(
        reply.body["credits"],
        json!({"key": key, "user": user}),
        "{}",
        reply.text
    );
}

fn assert_throttled(reply: &Reply, title: &str, retry_after: Option<&str>) {
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.body["title"], json!(title), "{}", reply.text);
    assert_eq!(reply.header("retry-after"), retry_after, "{}", reply.text);
}

/// The key object's balance, after this instance gave back what it holds.
async fn remaining(app: &TestApp, admin: &str, id: &str) -> Value {
    app.state
        .clone()
        .into_inner()
        .give_back_leases(0)
        .await
        .unwrap();
    let key = app.get(&format!("{KEYS}/{id}"), "acme", admin).await;
    assert_eq!(key.status, 200, "{}", key.text);
    key.body["credits"]["remaining"].clone()
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
}

both_backends! {
    async fn a_refused_verification_consumes_nothing_from_the_other_limits(app: &TestApp) {
        let w = World::new(app);
        let admin = app.key_until(&w.acme, &w.admin, &Scope::ALL, today() + chrono::Days::new(300)).1;
        app.clock.set(at(2026, 6, 15, 12, 0, 10));
        set_user_limits(app, &w.acme.id, &w.alice.id,
            json!([{"name": "user-minute", "limit": 20, "duration_ms": 60000}]), Some(50));
        let (one, one_secret) = limited_key(app, &w, &admin, json!({
            "ratelimits": [{"name": "minute", "limit": 10, "duration_ms": 60000},
                {"name": "hour", "limit": 100, "duration_ms": 3600000}],
            "credits": {"remaining": 5, "refill": null},
        })).await;
        let (two, two_secret) = limited_key(app, &w, &admin, json!({
            "ratelimits": [{"name": "tight", "limit": 3, "duration_ms": 60000}],
            "credits": {"remaining": 100, "refill": null},
        })).await;
        let plain = &w.alice_key.1;

        // The key's credits refuse: its windows and the user's keep what they had.
        assert_left(&spend(app, &one_secret, 4).await,
            &[("minute", "key", 6), ("hour", "key", 96), ("user-minute", "user", 16)], json!(1), json!(46));
        assert_throttled(&spend(app, &one_secret, 2).await, "Usage credits exhausted", None);
        assert_left(&spend(app, &one_secret, 1).await,
            &[("minute", "key", 5), ("hour", "key", 95), ("user-minute", "user", 15)], json!(0), json!(45));

        // The key's window refuses: its credits and the user's keep what they had.
        assert_left(&spend(app, &two_secret, 3).await,
            &[("tight", "key", 0), ("user-minute", "user", 12)], json!(97), json!(42));
        let refused = spend(app, &two_secret, 1).await;
        assert_throttled(&refused, "Rate limit tight exceeded", Some("50"));
        assert_eq!(refused.header("ratelimit-policy"), Some("\"tight\";q=3;w=60"));
        assert_eq!(refused.header("ratelimit"), Some("\"tight\";r=0;t=50"));
        assert_throttled(&spend(app, &two_secret, 1).await, "Rate limit tight exceeded", Some("50"));
        assert_left(&spend(app, plain, 1).await, &[("user-minute", "user", 11)], Value::Null, json!(41));

        // The user's window refuses: the key's window and credits keep what they had.
        app.clock.set(at(2026, 6, 15, 12, 1, 5));
        assert_left(&spend(app, plain, 19).await, &[("user-minute", "user", 1)], Value::Null, json!(22));
        assert_throttled(&spend(app, &two_secret, 2).await, "Rate limit user-minute exceeded", Some("55"));
        assert_left(&spend(app, &two_secret, 1).await,
            &[("tight", "key", 2), ("user-minute", "user", 0)], json!(96), json!(21));

        // The user's credits refuse: the key's keep what they had.
        app.clock.set(at(2026, 6, 15, 12, 2, 0));
        set_user_limits(app, &w.acme.id, &w.alice.id, json!([]), Some(2));
        app.state.auth_cache.clear();
        assert_throttled(&spend(app, &two_secret, 3).await, "Usage credits exhausted", None);
        assert_left(&spend(app, &two_secret, 2).await, &[("tight", "key", 1)], json!(94), json!(0));

        // The database agrees, once the instance gave back what it held.
        assert_eq!(remaining(app, &admin, &one).await, json!(0));
        assert_eq!(remaining(app, &admin, &two).await, json!(94));
    }

    async fn credits_refill_on_time_with_no_verification_then(app: &TestApp) {
        let w = World::new(app);
        let admin = app.key_until(&w.acme, &w.admin, &Scope::ALL, today() + chrono::Days::new(300)).1;
        app.clock.set(at(2026, 6, 15, 12, 0, 10));
        let (daily, daily_secret) = limited_key(app, &w, &admin, json!({
            "credits": {"remaining": 3, "refill": {"interval": "daily", "amount": 10}},
        })).await;
        let (monthly, monthly_secret) = limited_key(app, &w, &admin, json!({
            "credits": {"remaining": 1000, "refill": {"interval": "monthly", "amount": 500, "day": 1}},
        })).await;
        assert_eq!(remaining(app, &admin, &daily).await, json!(3));
        assert_left(&spend(app, &daily_secret, 3).await, &[], json!(0), Value::Null);
        assert_throttled(&spend(app, &daily_secret, 1).await, "Usage credits exhausted", Some("43190"));
        // A few verifications: this instance now holds a lease of the balance.
        for left in [999, 998, 997] {
            assert_left(&spend(app, &monthly_secret, 1).await, &[], json!(left), Value::Null);
        }

        // Nobody verifies at midnight: the balance is set all the same.
        app.clock.set(at(2026, 6, 16, 1, 0, 0));
        assert_eq!(remaining(app, &admin, &daily).await, json!(10));
        assert_left(&spend(app, &daily_secret, 1).await, &[], json!(9), Value::Null);
        assert_left(&spend(app, &daily_secret, 9).await, &[], json!(0), Value::Null);
        assert_throttled(&spend(app, &daily_secret, 1).await, "Usage credits exhausted", Some("82800"));
        // Exactly at the next midnight, through /v1/auth first.
        app.clock.set(at(2026, 6, 17, 0, 0, 0));
        assert_left(&spend(app, &daily_secret, 10).await, &[], json!(0), Value::Null);
        assert_throttled(&spend(app, &daily_secret, 1).await, "Usage credits exhausted", Some("86400"));
        assert_eq!(remaining(app, &admin, &daily).await, json!(0));

        // The monthly balance until the 1st: what this instance held was
        // given back to the old balance, which the refill then replaced.
        app.clock.set(at(2026, 6, 30, 23, 59, 59));
        assert_eq!(remaining(app, &admin, &monthly).await, json!(997));
        app.clock.set(at(2026, 7, 1, 0, 0, 0));
        assert_eq!(remaining(app, &admin, &monthly).await, json!(500));
        assert_left(&spend(app, &monthly_secret, 500).await, &[], json!(0), Value::Null);
        let refused = spend(app, &monthly_secret, 1).await;
        assert_throttled(&refused, "Usage credits exhausted", Some(&(31 * 86400).to_string()));
        app.clock.set(at(2026, 7, 31, 23, 0, 0));
        assert_eq!(remaining(app, &admin, &monthly).await, json!(0));

        // A lease held over the refill is not given back into the new
        // balance: this instance holds one of August's when another instance
        // verifies first in September.
        app.clock.set(at(2026, 8, 1, 0, 0, 0));
        for left in [499, 498, 497] {
            assert_left(&spend(app, &monthly_secret, 1).await, &[], json!(left), Value::Null);
        }
        app.clock.set(at(2026, 9, 1, 0, 0, 1));
        let other = app.reconfigured(|_| {});
        let reply = app.send_to(other.clone(), TestRequest::get().uri(AUTH)
            .insert_header(("tenant", "acme")).insert_header(("x-key", monthly_secret.as_str()))).await;
        assert_left(&reply, &[], json!(499), Value::Null);
        assert_eq!(other.into_inner().give_back_leases(0).await.unwrap(), 0, "it holds nothing");
        assert_eq!(remaining(app, &admin, &monthly).await, json!(499));
    }
}
