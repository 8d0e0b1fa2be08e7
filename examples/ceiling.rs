//! The HTTP ceiling for `bench/run`: an actix-web server that answers every request
//! with one fixed JSON array of 10 key objects, shaped and sized like the
//! answer of keyward's hot path (`GET /v1/user-api-keys?UserId=<self>`); and
//! `/v1/auth...` with a fixed verification answer, with its headers.
//!
//! No database, no authentication, no middleware: what keyward achieves is then
//! read as a fraction of what actix-web itself can serve on this machine. It
//! runs as many workers as keyward (actix-web's default, one per core).
//!
//! ```sh
//! cargo run --release --example ceiling -- 127.0.0.1:8099   # or CEILING_BIND=...
//! ```
//!
//! Every path answers, not only `/`, so the benchmark can send the very same
//! requests (path, query and headers) to this server and to keyward.

use std::process::ExitCode;

use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

const DEFAULT_BIND: &str = "127.0.0.1:8099";

/// Ten key objects as `/v1/user-api-keys` renders them (UUIDv7 ids, two scopes).
/// `bench/run` prints this body's size next to the real answer's.
fn body() -> web::Bytes {
    let user_id = "0193a5a1-7c2e-7d40-9b1e-3f6a2c8d9e01";
    let keys: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "id": format!("0193a5b0-4d1f-7a22-8c3b-5e6f7a8b9c{i:02}"),
                "user_id": user_id,
                "name": format!("bench-key-{i:02}"),
                "expiration_date": "2027-11-23",
                "created_on": format!("2026-11-23T09:15:{i:02}Z"),
                "updated_on": null,
                "scopes": ["public_api", "user_key_management"],
                "last_used_on": null,
            })
        })
        .collect();
    web::Bytes::from(Value::Array(keys).to_string())
}

/// A verification answer as `/v1/auth` renders it, and its headers.
fn verification() -> (web::Bytes, [(&'static str, &'static str); 6]) {
    let body = json!({
        "tenant": "bench",
        "user_id": "0193a5a1-7c2e-7d40-9b1e-3f6a2c8d9e01",
        "key_id": "0193a5b0-4d1f-7a22-8c3b-5e6f7a8b9c00",
        "key_name": "bench-key-00",
        "scopes": ["public_api", "user_key_management"],
        "roles": ["Default users"],
        "expires_at": "2027-11-24T00:00:00Z",
        "meta": {},
        "ratelimits": [],
        "credits": {"key": null, "user": null},
    });
    let headers = [
        ("cache-control", "no-store"),
        ("x-keyward-tenant", "bench"),
        ("x-keyward-user-id", "0193a5a1-7c2e-7d40-9b1e-3f6a2c8d9e01"),
        ("x-keyward-key-id", "0193a5b0-4d1f-7a22-8c3b-5e6f7a8b9c00"),
        ("x-keyward-scopes", "public_api,user_key_management"),
        ("x-keyward-roles", "Default users"),
    ];
    (web::Bytes::from(body.to_string()), headers)
}

fn main() -> ExitCode {
    let bind = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CEILING_BIND").ok())
        .unwrap_or_else(|| DEFAULT_BIND.to_owned());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let body = body();
    let (verified, verified_headers) = verification();
    let result = actix_web::rt::System::new().block_on(async {
        HttpServer::new(move || {
            let body = body.clone();
            let verified = verified.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                let mut response = HttpResponse::Ok();
                response.insert_header(ContentType::json());
                let body = if req.path().starts_with("/v1/auth") {
                    for header in verified_headers {
                        response.insert_header(header);
                    }
                    verified.clone()
                } else {
                    body.clone()
                };
                async move { response.body(body) }
            }))
        })
        .workers(workers)
        .bind(&bind)?
        .run()
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ceiling: cannot serve on {bind}: {e}");
            ExitCode::FAILURE
        }
    }
}
