//! The test harness: a real `App` on a fresh, migrated database per test.
//!
//! SQLite: a file in a temporary folder. PostgreSQL (when
//! `KEYWARD_TEST_POSTGRES_URL` is set): a schema made for the test inside that
//! database, dropped afterwards.

use std::sync::Arc;

use actix_web::http::{header::HeaderMap, Method, StatusCode};
use actix_web::{test, web};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use diesel::prelude::*;
use serde_json::Value;

use keyward::clock::ManualClock;
use keyward::config::{DatabaseUrl, Settings};
use keyward::db::{self, DbConnection};
use keyward::keys::{self, ApiKey, Expiry, NewKey, Scope};
use keyward::tenants::{self, Tenant};
use keyward::users::{self, NewUser, User};
use keyward::AppState;

pub const POSTGRES_ENV: &str = "KEYWARD_TEST_POSTGRES_URL";
/// Set (CI sets it) to make a run without PostgreSQL fail instead of skipping.
pub const REQUIRE_POSTGRES_ENV: &str = "KEYWARD_TEST_REQUIRE_POSTGRES";

/// Runs each test body once on SQLite and once on PostgreSQL (when configured).
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($app:ident: &TestApp) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: &$crate::common::TestApp) $body
            #[actix_rt::test]
            async fn sqlite() {
                run(&$crate::common::TestApp::sqlite()).await
            }
            #[actix_rt::test]
            async fn postgres() {
                match $crate::common::TestApp::postgres() {
                    Some(app) => run(&app).await,
                    None => $crate::common::skip_postgres(),
                }
            }
        }
    )*};
}

/// A PostgreSQL test without a database: skipped for a newcomer's `cargo
/// test`, a failure for a run that asked for PostgreSQL.
pub fn skip_postgres() {
    if std::env::var_os(REQUIRE_POSTGRES_ENV).is_some() {
        panic!(
            "{REQUIRE_POSTGRES_ENV} is set but {POSTGRES_ENV} is not: PostgreSQL tests cannot run"
        );
    }
    eprintln!("skipped: {POSTGRES_ENV} is not set");
}

/// Where the tests stand in time: midday, so "today" is unambiguous.
pub fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap()
}

pub fn today() -> NaiveDate {
    noon().date_naive()
}

pub fn settings(database_url: &str) -> Settings {
    Settings {
        database_url: database_url.to_owned(),
        bind: "127.0.0.1:0".to_owned(),
        tenant: String::new(),
        key_prefix: "kw".to_owned(),
        pool_size: 4,
        auth_failures_per_minute: 0,
        cors_origins: Vec::new(),
        trusted_proxies: Vec::new(),
        request_timeout_secs: 10,
        usage_counting: true,
        webhook_allow_private: false,
        webhook_key: String::new(),
        webhook_key_file: String::new(),
        webhook_retry_schedule: vec![5, 300, 1800, 7200, 18000, 36000, 36000],
        webhook_disable_after_secs: 432000,
        webhook_retention_days: 90,
        expiry_notice_days: vec![7, 1],
    }
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, schema } = self {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn);
            }
        }
    }
}

pub struct TestApp {
    pub state: web::Data<AppState>,
    pub clock: ManualClock,
    pub database_url: String,
    _cleanup: Cleanup,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Reads a response whole: status, headers, text, and the text as JSON (or `Null`).
    pub async fn read(
        res: actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
    ) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = test::read_body(res).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body without the per-request `traceId`, for comparing two replies.
    pub fn body_without_trace(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(map) = body.as_object_mut() {
            map.remove("traceId");
        }
        body
    }
}

impl TestApp {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
        Self::open(url, Cleanup::Sqlite(dir))
    }

    pub fn postgres() -> Option<Self> {
        let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
        let schema = format!("kw_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn =
            PgConnection::establish(&admin_url).expect("connect to the PostgreSQL test database");
        diesel::sql_query(format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .unwrap();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        Some(Self::open(url, Cleanup::Postgres { admin_url, schema }))
    }

    fn open(database_url: String, cleanup: Cleanup) -> Self {
        Self::with_settings(settings(&database_url), cleanup)
    }

    fn with_settings(settings: Settings, cleanup: Cleanup) -> Self {
        let pool = db::connect(
            &DatabaseUrl::parse(&settings.database_url).unwrap(),
            settings.pool_size,
        )
        .unwrap();
        let clock = ManualClock::new(noon());
        let database_url = settings.database_url.clone();
        let state = web::Data::new(AppState::new(pool, settings, Arc::new(clock.clone())));
        Self {
            state,
            clock,
            database_url,
            _cleanup: cleanup,
        }
    }

    /// The same database, served by an app with other settings (a pinned tenant, say).
    pub fn reconfigured(&self, change: impl FnOnce(&mut Settings)) -> web::Data<AppState> {
        let mut settings = (*self.state.settings).clone();
        change(&mut settings);
        web::Data::new(AppState::new(
            self.state.pool.clone(),
            settings,
            Arc::new(self.clock.clone()),
        ))
    }

    pub fn conn(&self) -> impl std::ops::DerefMut<Target = DbConnection> {
        self.state.pool.get().unwrap()
    }

    pub fn now(&self) -> DateTime<Utc> {
        use keyward::clock::Clock;
        self.clock.now()
    }

    // --- seeding, straight through the core ---

    pub fn tenant(&self, name: &str) -> Tenant {
        tenants::create(&mut self.conn(), name, self.now()).unwrap();
        tenants::get_by_name(&mut self.conn(), name).unwrap()
    }

    pub fn user(&self, tenant: &Tenant, email: &str, roles: &[&str]) -> User {
        let new = NewUser {
            email: email.to_owned(),
            name: email.to_owned(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            external_id: None,
            control: Default::default(),
        };
        users::create(
            &mut self.conn(),
            &tenant.id,
            new,
            self.now(),
            &keyward::audit::Actor::cli(),
        )
        .unwrap()
    }

    pub fn key_until(
        &self,
        tenant: &Tenant,
        user: &User,
        scopes: &[Scope],
        last_day: NaiveDate,
    ) -> (ApiKey, String) {
        let new = NewKey::new(
            user.id.clone(),
            format!("key of {}", user.email),
            Expiry::EndOfDay(last_day),
            Some(scopes.to_vec()),
        );
        let (key, secret) = keys::create(&mut self.conn(), tenant, new, "kw", self.now()).unwrap();
        (key, secret.expose().to_owned())
    }

    pub fn key(&self, tenant: &Tenant, user: &User, scopes: &[Scope]) -> (ApiKey, String) {
        self.key_until(tenant, user, scopes, today() + chrono::Days::new(30))
    }

    pub fn set_user_active(&self, user: &User, active: bool) {
        use keyward::schema::users::dsl;
        diesel::update(dsl::users.filter(dsl::id.eq(&user.id)))
            .set(dsl::active.eq(active))
            .execute(&mut *self.conn())
            .unwrap();
    }

    // --- requests ---

    pub async fn send_to(&self, state: web::Data<AppState>, req: test::TestRequest) -> Reply {
        let app = test::init_service(keyward::app(state)).await;
        Reply::read(test::call_service(&app, req.to_request()).await).await
    }

    pub async fn send(&self, req: test::TestRequest) -> Reply {
        self.send_to(self.state.clone(), req).await
    }

    /// `method path` as the holder of `key` in `tenant`, with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        tenant: &str,
        key: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = test::TestRequest::default().method(method).uri(path);
        if !tenant.is_empty() {
            req = req.insert_header(("tenant", tenant));
        }
        if !key.is_empty() {
            req = req.insert_header(("x-key", key));
        }
        if let Some(body) = body {
            req = req.set_json(body);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str, tenant: &str, key: &str) -> Reply {
        self.call(Method::GET, path, tenant, key, None).await
    }

    pub async fn post(&self, path: &str, tenant: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, tenant, key, Some(body)).await
    }

    pub async fn delete(&self, path: &str, tenant: &str, key: &str) -> Reply {
        self.call(Method::DELETE, path, tenant, key, None).await
    }
}

/// Two tenants, each with an administrator and two ordinary users.
pub struct World {
    pub acme: Tenant,
    pub admin: User,
    pub admin_key: (ApiKey, String),
    pub alice: User,
    pub alice_key: (ApiKey, String),
    pub bob: User,
    pub bob_key: (ApiKey, String),
    pub beta: Tenant,
    pub beta_admin: User,
    pub beta_key: (ApiKey, String),
}

pub const KEY_MANAGER: &[Scope] = &[Scope::PublicApi, Scope::UserKeyManagement];

impl World {
    pub fn new(app: &TestApp) -> Self {
        let acme = app.tenant("acme");
        let admin = app.user(&acme, "admin@acme.test", &[users::ADMINISTRATORS]);
        let admin_key = app.key(&acme, &admin, &Scope::ALL);
        app.clock.advance(chrono::TimeDelta::seconds(1));
        let alice = app.user(&acme, "alice@acme.test", &[users::DEFAULT_USERS]);
        let alice_key = app.key(&acme, &alice, KEY_MANAGER);
        app.clock.advance(chrono::TimeDelta::seconds(1));
        let bob = app.user(&acme, "bob@acme.test", &[users::DEFAULT_USERS]);
        let bob_key = app.key(&acme, &bob, KEY_MANAGER);
        app.clock.advance(chrono::TimeDelta::seconds(1));
        let beta = app.tenant("beta");
        let beta_admin = app.user(&beta, "admin@beta.test", &[users::ADMINISTRATORS]);
        let beta_key = app.key(&beta, &beta_admin, &Scope::ALL);
        app.clock.advance(chrono::TimeDelta::seconds(1));
        Self {
            acme,
            admin,
            admin_key,
            alice,
            alice_key,
            bob,
            bob_key,
            beta,
            beta_admin,
            beta_key,
        }
    }

    pub fn admin_secret(&self) -> &str {
        &self.admin_key.1
    }
}

/// Asserts a `/v1` problem-details body exactly (bar `traceId`, which must equal `x-request-id`).
pub fn assert_problem(reply: &Reply, status: u16, kind: &str, title: &str, errors: Option<Value>) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{}",
        reply.text
    );
    let trace = reply.header("x-request-id").expect("x-request-id");
    let mut expected =
        serde_json::json!({"type": kind, "title": title, "status": status, "traceId": trace});
    if let Some(errors) = errors {
        expected["errors"] = errors;
    }
    assert_eq!(reply.body, expected);
}

pub const T401: &str = "https://tools.ietf.org/html/rfc7235#section-3.1";
pub const T400: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.1";
pub const T403: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.4";
pub const T404: &str = "https://tools.ietf.org/html/rfc9110#section-15.5.5";
pub const VALIDATION: &str = "One or more validation errors occurred";

/// The exact 401 of `field` with `message`.
pub fn assert_401(reply: &Reply, field: &str, message: &str) {
    assert_problem(
        reply,
        401,
        T401,
        VALIDATION,
        Some(serde_json::json!({ field: [message] })),
    );
}

/// The exact 400 naming `field` with `message`.
pub fn assert_400(reply: &Reply, field: &str, message: &str) {
    assert_problem(
        reply,
        400,
        T400,
        VALIDATION,
        Some(serde_json::json!({ field: [message] })),
    );
}

pub fn assert_403(reply: &Reply, title: &str) {
    assert_problem(reply, 403, T403, title, None);
}

pub fn assert_404(reply: &Reply) {
    assert_problem(reply, 404, T404, "Not Found", None);
}

/// A free port on 127.0.0.1 (for a server or a receiver to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary serving the test's database, with the settings `env`
/// adds; killed when dropped.
pub struct Instance {
    pub port: u16,
    child: std::process::Child,
}

impl Instance {
    pub fn start(app: &TestApp, dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        use std::time::{Duration, Instant};
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .env("KEYWARD_DATABASE_URL", &app.database_url)
            .env("KEYWARD_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(port) {
            assert!(
                Instant::now() < deadline,
                "an instance did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, child }
    }

    /// SIGTERM, and waits (at most 15 s) for it to stop.
    pub fn terminate(&mut self) {
        use std::time::{Duration, Instant};
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "an instance did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill_9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the server on `port` answers `/readiness` with 200.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let asked = stream
        .write_all(b"GET /readiness HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    asked.is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}
