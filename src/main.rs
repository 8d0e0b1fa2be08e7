//! The `keyward` command: serves the HTTP API (the default) and administers
//! tenants, users and keys straight against the database.

use std::process::ExitCode;
use std::sync::Arc;

use actix_web::web;
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use keyward::access::{Caller, Identity, Origin};
use keyward::audit::Actor;
use keyward::clock::{Clock, SystemClock};
use keyward::config::{DatabaseUrl, Settings};
use keyward::db::{self, DbConnection};
use keyward::error::Error;
use keyward::keys::{self, Expiry, Meta, NewKey, Scope};
use keyward::limits::{self, ControlChange};
use keyward::{tenants, users, AppState};

/// mimalloc: a request allocates a few dozen small blocks on one worker and
/// frees them on the same; glibc's allocator spent a tenth of the hot paths'
/// time there (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "keyward", version, about = "Multi-tenant API key management")]
struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default). Applies pending migrations first.
    Serve,
    /// Apply pending database migrations.
    Migrate {
        /// Then, if the database has the `citus` extension, distribute the tables
        /// by tenant (idempotent; a no-op on plain PostgreSQL).
        #[arg(long)]
        citus: bool,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write a consistent copy of the SQLite database to PATH, while keyward
    /// serves (for PostgreSQL, use pg_dump).
    Backup {
        path: std::path::PathBuf,
        /// Replace PATH if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Create the tenant if new, an Administrators user, and a key with every scope.
    Bootstrap {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create { name: String },
    /// Change a tenant's policy.
    Set {
        name: String,
        /// Longest lifetime of a new or rotated key, in days (1..3650).
        #[arg(long)]
        max_key_lifetime_days: i32,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// Display name (default: the email address).
        #[arg(long)]
        name: Option<String>,
        /// A role: "Administrators" or "Default users" (default: "Default users").
        #[arg(long = "role")]
        roles: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// Usage control (API.md section 9), checked by the same rules as the API's.
#[derive(clap::Args)]
struct LimitArgs {
    /// A rate limit NAME:LIMIT:DURATION_MS (repeatable, at most 5).
    #[arg(long = "ratelimit", value_name = "NAME:LIMIT:DURATION_MS")]
    ratelimits: Vec<String>,
    /// Usage credits: the starting balance (default: unlimited).
    #[arg(long, value_name = "N")]
    credits: Option<u64>,
    /// How the credits refill: daily:AMOUNT or monthly:AMOUNT[:DAY] (with --credits).
    #[arg(long, value_name = "daily:AMOUNT|monthly:AMOUNT[:DAY]")]
    refill: Option<String>,
}

impl LimitArgs {
    /// The change these flags ask for (`allowed_ips`: a key's `--allow-ip`s),
    /// through the API's parser, so each rule lives in one place.
    fn change(&self, allowed_ips: &[String]) -> Result<ControlChange, Error> {
        let mut members = serde_json::Map::new();
        if !self.ratelimits.is_empty() {
            let limits = self
                .ratelimits
                .iter()
                .map(|text| {
                    let parts: Vec<&str> = text.split(':').collect();
                    match parts.as_slice() {
                        [name, limit, duration] => Ok(json!({
                            "name": name,
                            "limit": number(limit),
                            "duration_ms": number(duration),
                        })),
                        _ => Err(Error::invalid(
                            "ratelimit",
                            "--ratelimit is NAME:LIMIT:DURATION_MS.",
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            members.insert("ratelimits".into(), Value::Array(limits));
        }
        let refill = match self.refill.as_deref() {
            None => Value::Null,
            Some(_) if self.credits.is_none() => {
                return Err(Error::invalid("refill", "--refill needs --credits."))
            }
            Some(text) => match text.split(':').collect::<Vec<_>>().as_slice() {
                [interval, amount] => json!({"interval": interval, "amount": number(amount)}),
                [interval, amount, day] => {
                    json!({"interval": interval, "amount": number(amount), "day": number(day)})
                }
                _ => {
                    return Err(Error::invalid(
                        "refill",
                        "--refill is daily:AMOUNT or monthly:AMOUNT[:DAY].",
                    ))
                }
            },
        };
        if let Some(remaining) = self.credits {
            members.insert(
                "credits".into(),
                json!({"remaining": remaining, "refill": refill}),
            );
        }
        if !allowed_ips.is_empty() {
            members.insert("allowed_ips".into(), json!(allowed_ips));
        }
        ControlChange::from_json(|name| members.get(name), true)
    }
}

/// A flag's number as JSON: an integer when it is one, else the text (which
/// the parser then refuses, naming the field).
fn number(text: &str) -> Value {
    text.parse::<u64>()
        .map_or_else(|_| json!(text), |n| json!(n))
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key; its secret is printed this once.
    Create {
        #[arg(long)]
        tenant: String,
        /// The user's id or email.
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Last day the key works, YYYY-MM-DD (default: the tenant's maximum lifetime).
        #[arg(long)]
        expires: Option<NaiveDate>,
        /// public_api (default), user_key_management or user_management.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Metadata: a JSON object of at most 4 KiB.
        #[arg(long, value_parser = parse_meta)]
        meta: Option<Meta>,
        #[command(flatten)]
        limits: LimitArgs,
        /// An IPv4/IPv6 address or CIDR the key may be used from (repeatable; default: any).
        #[arg(long = "allow-ip", value_name = "CIDR")]
        allowed_ips: Vec<String>,
    },
}

fn parse_meta(s: &str) -> Result<Meta, String> {
    serde_json::from_str(s)
        .ok()
        .as_ref()
        .and_then(Meta::parse)
        .ok_or_else(|| Meta::INVALID.to_owned())
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| {
        "expected one of public_api, user_key_management, user_management".to_owned()
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let json = cli.json;
    let result = Settings::load().and_then(|settings| run(cli, settings));
    match result {
        Ok(Some(output)) => {
            print(json, &output);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            let message = describe(&error);
            if json {
                println!("{}", json!({ "error": message }));
            } else {
                eprintln!("keyward: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A one-line account of an error for the terminal.
fn describe(error: &Error) -> String {
    match error {
        Error::Invalid(fields) => fields
            .iter()
            .map(|(field, messages)| format!("{field}: {}", messages.join(" ")))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn print(json: bool, output: &Value) {
    if json {
        println!("{output}");
        return;
    }
    if let Value::Object(fields) = output {
        for (name, value) in fields {
            match value {
                Value::String(s) => println!("{name}: {s}"),
                other => println!("{name}: {other}"),
            }
        }
    }
}

fn run(cli: Cli, settings: Settings) -> Result<Option<Value>, Error> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Serve = command {
        serve(settings)?;
        return Ok(None);
    }
    let url = DatabaseUrl::parse(&settings.database_url)?;
    if let Command::Backup { path, force } = &command {
        // No pool and no migration: the copy is of the database as it is.
        let bytes = db::backup(&url, path, *force)?;
        return Ok(Some(
            json!({ "backup": path.to_string_lossy(), "bytes": bytes }),
        ));
    }
    if matches!(command, Command::Migrate { citus: true })
        && !matches!(url, DatabaseUrl::Postgres(_))
    {
        return Err(Error::Config(
            "--citus needs a PostgreSQL database (KEYWARD_DATABASE_URL=postgres://...)".into(),
        ));
    }
    let pool = db::connect(&url, 1)?;
    let mut conn = pool.get()?;
    let now = SystemClock.now();
    let prefix = settings.key_prefix.as_str();
    let output = match command {
        Command::Serve | Command::Backup { .. } => unreachable!("handled above"),
        // `connect` has already applied them.
        Command::Migrate { citus: false } => {
            db::warn_if_citus_lagging(&mut conn);
            json!({ "migrated": true })
        }
        Command::Migrate { citus: true } => {
            let report = db::distribute_for_citus(&mut conn)?;
            if !report.citus {
                log::info!("the citus extension is not installed here: nothing to distribute");
            }
            probe(&mut conn, prefix, now).map_err(|e| {
                Error::Config(format!(
                    "keyward does not work on this database after distributing it: {e}"
                ))
            })?;
            json!({ "migrated": true, "citus": report.citus, "distributed": report.distributed, "probe": "ok" })
        }
        Command::Tenant(TenantCommand::Create { name }) => {
            let tenant = tenants::create(&mut conn, &name, now)?
                .ok_or(Error::Conflict("A tenant with this name already exists."))?;
            tenant_json(&tenant)
        }
        Command::Tenant(TenantCommand::Set {
            name,
            max_key_lifetime_days,
        }) => tenant_json(&tenants::set_max_key_lifetime(
            &mut conn,
            &name,
            max_key_lifetime_days,
            now,
        )?),
        Command::User(UserCommand::Create {
            tenant,
            email,
            name,
            roles,
            limits,
        }) => {
            let control = limits.change(&[])?;
            let tenant = tenants::get_by_name(&mut conn, &tenant)?;
            let roles = (!roles.is_empty()).then_some(roles);
            let user = users::create(
                &mut conn,
                &tenant.id,
                users::NewUser {
                    control,
                    ..users::NewUser::new(email, name, roles)
                },
                now,
                &Actor::cli(),
            )?;
            json!({ "id": user.id, "tenant": tenant.name, "email": user.email, "name": user.name,
                "roles": user.roles, "ratelimits": user.limits.ratelimits,
                "credits": limits::credits_view(user.limits.credits.as_ref(), user.credits_remaining) })
        }
        Command::Key(KeyCommand::Create {
            tenant,
            user,
            name,
            expires,
            scopes,
            meta,
            limits,
            allowed_ips,
        }) => {
            let control = limits.change(&allowed_ips)?;
            let tenant = tenants::get_by_name(&mut conn, &tenant)?;
            let user =
                users::find_by_id_or_email(&mut conn, &tenant.id, &user)?.ok_or_else(|| {
                    Error::invalid("user", "No user of this tenant has this id or email.")
                })?;
            let new = NewKey::new(
                user.id,
                name,
                expires.map_or_else(|| Expiry::longest(&tenant, now), Expiry::EndOfDay),
                (!scopes.is_empty()).then_some(scopes),
            )
            .with_meta(meta.unwrap_or_default())
            .with_control(control);
            create_key(&mut conn, &tenant, new, prefix, now)?
        }
        Command::Bootstrap { tenant, email } => bootstrap(&mut conn, &tenant, &email, prefix, now)?,
    };
    Ok(Some(output))
}

fn tenant_json(tenant: &tenants::Tenant) -> Value {
    json!({ "id": tenant.id, "name": tenant.name, "max_key_lifetime_days": tenant.max_key_lifetime_days })
}

fn create_key(
    conn: &mut DbConnection,
    tenant: &tenants::Tenant,
    new: NewKey,
    prefix: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value, Error> {
    let (key, secret) = keys::create(conn, tenant, new, prefix, now)?;
    Ok(json!({
        "id": key.id,
        "user_id": key.user_id,
        "tenant": tenant.name,
        "name": key.name,
        "expiration_date": key.expiration_date(),
        "scopes": key.scopes,
        "meta": key.meta.as_map(),
        "ratelimits": key.limits.ratelimits,
        "credits": limits::credits_view(key.limits.credits.as_ref(), key.credits_remaining),
        "allowed_ips": key.allowed_ips.to_strings(),
        "key": secret.expose(),
    }))
}

/// Walks the paths keyward's writes take (a tenant created and changed, an
/// administrator, a key that authenticates, its revocation), each checked to
/// have signalled its change, in a transaction that is rolled back: after
/// `migrate --citus`, a database on which keyward would fail says so now.
fn probe(
    conn: &mut DbConnection,
    prefix: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let failed = |step: &str| Error::Internal(format!("the probe's {step} did not take"));
    db::dry_run(conn, |conn| {
        let name = format!(
            "keyward-probe-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        tenants::create(conn, &name, now)?.ok_or_else(|| failed("tenant"))?;
        let tenant = tenants::set_max_key_lifetime(conn, &name, 30, now)?;
        let admin = Some(vec![users::ADMINISTRATORS.to_owned()]);
        let user = users::create(
            conn,
            &tenant.id,
            users::NewUser::new(format!("probe@{name}.invalid"), None, admin),
            now,
            &Actor::cli(),
        )?;
        let new = NewKey::new(
            user.id.clone(),
            "probe".to_owned(),
            Expiry::longest(&tenant, now),
            Some(Scope::ALL.to_vec()),
        );
        let (key, secret) = keys::create(conn, &tenant, new, prefix, now)?;
        let hash = secret.hash();
        let works = |conn: &mut DbConnection| -> Result<bool, Error> {
            Ok(keys::find_for_authentication(conn, &tenant.id, &hash)?
                .is_some_and(|credential| credential.check(now).is_ok()))
        };
        if !works(conn)? {
            return Err(failed("key"));
        }
        let caller = Caller::new(
            Identity {
                tenant: tenant.clone(),
                user_id: user.id.clone(),
                roles: user.roles.clone(),
                key_id: key.id.clone(),
                key_name: key.name.clone(),
                key_expires_at: key.expires_at,
                key_meta: Default::default(),
                scopes: key.scopes.clone(),
                allowed_ips: Default::default(),
                usage: Default::default(),
            },
            Origin::default(),
        );
        keys::revoke_for(conn, &caller, &key.id, now)?;
        if works(conn)? {
            return Err(failed("revocation"));
        }
        if !db::change_noted(conn, &tenant.id)? {
            return Err(failed("change signal"));
        }
        Ok(())
    })
}

/// Tenant if new, an Administrators user (or the existing one, if it is an
/// active administrator), and a key with every scope: all in one transaction,
/// so a bootstrap that fails leaves nothing behind.
fn bootstrap(
    conn: &mut DbConnection,
    tenant_name: &str,
    email: &str,
    prefix: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value, Error> {
    db::write_transaction(conn, |conn| {
        tenants::create(conn, tenant_name, now)?;
        let tenant = tenants::get_by_name(conn, tenant_name)?;
        let user = match users::find_by_email(conn, &tenant.id, email)? {
            Some(user) if user.active && user.is_admin() => user,
            Some(_) => {
                return Err(Error::Conflict(
                    "A user with this email exists and is not an active administrator.",
                ))
            }
            None => users::create(
                conn,
                &tenant.id,
                users::NewUser::new(
                    email.to_owned(),
                    None,
                    Some(vec![users::ADMINISTRATORS.to_owned()]),
                ),
                now,
                &Actor::cli(),
            )?,
        };
        let new = NewKey::new(
            user.id,
            "bootstrap".to_owned(),
            Expiry::longest(&tenant, now),
            Some(Scope::ALL.to_vec()),
        );
        create_key(conn, &tenant, new, prefix, now)
    })
}

fn serve(settings: Settings) -> Result<(), Error> {
    let url = DatabaseUrl::parse(&settings.database_url)?;
    let pool = db::connect(&url, settings.pool_size)?;
    db::warn_if_citus_lagging(&mut *pool.get()?);
    let bind = settings.bind.clone();
    let state = web::Data::new(AppState::new(pool, settings, Arc::new(SystemClock)));
    state.clone().into_inner().watch_changes()?;
    state.clone().into_inner().count_usage()?;
    state.clone().into_inner().keep_leases()?;
    let io = |e: std::io::Error| Error::Config(format!("cannot serve on {bind}: {e}"));
    actix_web::rt::System::new().block_on(async {
        // On SIGINT/SIGTERM the server stops accepting and lets in-flight requests finish.
        let server = keyward::api::front::server(state.clone(), &bind).map_err(io)?;
        log::info!("keyward listening on http://{bind}");
        let state = state.into_inner();
        let flusher = {
            let state = Arc::clone(&state);
            actix_web::rt::spawn(async move {
                let mut every = actix_web::rt::time::interval(USAGE_FLUSH_INTERVAL);
                loop {
                    every.tick().await;
                    if let Err(e) = state.flush_usage().await {
                        log::warn!("could not record last-used times: {e}");
                    }
                }
            })
        };
        let client = keyward::webhooks::client::Client::new(state.webhooks.policy.allow_private)?;
        let sender = actix_web::rt::spawn(Arc::clone(&state).run_webhooks(client));
        let served = server.await.map_err(io);
        keyward::api::access_log::flush();
        flusher.abort();
        // An attempt cut short is made again once its lease runs out.
        sender.abort();
        match state.flush_usage().await {
            Ok(n) => log::info!("stopped; recorded the last use of {n} keys"),
            Err(e) => log::warn!("stopped; could not record last-used times: {e}"),
        }
        match state.flush_counts().await {
            Ok(n) => log::info!("stopped; wrote {n} rows of usage counts"),
            Err(e) => log::warn!("stopped; could not write usage counts: {e}"),
        }
        match state.give_back_leases(0).await {
            Ok(n) => log::info!("stopped; gave back {n} unused leases of rate limits and credits"),
            Err(e) => log::warn!("stopped; could not give back unused leases: {e}"),
        }
        served
    })
}

/// How often queued last-used times are written (each key at most once a minute).
const USAGE_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
