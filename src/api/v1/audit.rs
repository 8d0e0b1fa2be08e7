//! `/v1/audit-events`: the tenant's key and user lifecycle events.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::api::input::{parse_uuid, QueryParams};
use crate::api::timestamp;
use crate::api::v1::keys::{page, param};
use crate::audit::{self, Event};
use crate::auth::Caller;
use crate::error::{Error, FieldErrors};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/audit-events", web::get().to(list));
}

/// How many events a listing returns when `take` is not given.
const DEFAULT_TAKE: u32 = 100;

/// An event as both dialects show it.
#[derive(Serialize)]
pub struct EventView<'a> {
    id: &'a str,
    at: String,
    action: &'a str,
    actor_user_id: Option<&'a str>,
    actor_key_id: Option<&'a str>,
    target_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_key_id: Option<&'a str>,
    request_id: Option<&'a str>,
    ip: Option<&'a str>,
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(event: &'a Event) -> Self {
        Self {
            id: &event.id,
            at: timestamp(event.at),
            action: &event.action,
            actor_user_id: event.actor_user_id.as_deref(),
            actor_key_id: event.actor_key_id.as_deref(),
            target_id: &event.target_id,
            new_key_id: event.new_key_id.as_deref(),
            request_id: event.request_id.as_deref(),
            ip: event.ip.as_deref(),
        }
    }
}

async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let user_id = param(
        &query,
        "user_id",
        parse_uuid,
        "user_id must be a user ID.",
        &mut errors,
    );
    let mut page = page(&query, "No event with this ID is in the log.", &mut errors);
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    page.take = Some(page.take.unwrap_or(DEFAULT_TAKE));
    let events = state
        .db(move |conn| audit::list_for(conn, &caller, user_id.as_deref(), &page))
        .await?;
    let events: Vec<_> = events.iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "events": events })))
}
