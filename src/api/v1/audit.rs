//! `/v1/audit-events`: the tenant's key and user lifecycle events.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use super::{param, uuid_param, PageQuery};
use crate::access::Caller;
use crate::api::input::QueryParams;
use crate::api::timestamp;
use crate::audit::{self, Action, Event};
use crate::error::{Error, FieldErrors};
use crate::paging::Page;
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::api::resource("/v1/audit-events").route(web::get().to(list)));
}

/// An event of this dialect.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct EventView<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    #[schema(format = DateTime)]
    at: String,
    #[schema(schema_with = action_schema)]
    action: &'a str,
    /// The user who made the change; `null` for the CLI.
    #[schema(format = Uuid, required = true)]
    actor_user_id: Option<&'a str>,
    /// The key the change was made with; `null` for the CLI.
    #[schema(format = Uuid, required = true)]
    actor_key_id: Option<&'a str>,
    /// The key or user changed.
    #[schema(format = Uuid)]
    target_id: &'a str,
    /// On `key.rotated`: the new key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid, nullable = false)]
    new_key_id: Option<&'a str>,
    #[schema(required = true)]
    request_id: Option<&'a str>,
    /// The client's address.
    #[schema(required = true)]
    ip: Option<&'a str>,
}

/// The actions the log records, by [`Action::as_str`].
fn action_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Action::ALL.map(Action::as_str)))
}

/// The query of `GET /v1/audit-events`, beside its paging.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the events whose actor is this user, or whose target is this user
    /// or one of its keys.
    pub user_id: Option<uuid::Uuid>,
}

impl AuditQuery {
    fn parse(query: &QueryParams, errors: &mut FieldErrors) -> Self {
        Self {
            user_id: param(
                query,
                "user_id",
                uuid_param,
                "user_id must be a user ID.",
                errors,
            ),
        }
    }
}

/// A page of events.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEventList)]
pub struct EventList<'a> {
    events: Vec<EventView<'a>>,
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

/// Lists the tenant's key and user lifecycle events, oldest first.
#[utoipa::path(
    get,
    path = "/v1/audit-events",
    operation_id = "listAuditEvents",
    tag = "audit",
    params(AuditQuery, PageQuery),
    responses(
        (status = 200, description = "A page of events (100 unless `take` says otherwise).",
            body = EventList),
        (status = 400, description = "A bad `user_id`, `take` or `start_with`."),
        (status = 403, description = "The caller is not an Administrator, or the calling key \
            lacks `user_management`."),
    ),
)]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let filter = AuditQuery::parse(&query, &mut errors);
    let page = PageQuery::parse(&query, "No event with this ID is in the log.", &mut errors);
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let (user_id, page) = (filter.user_id.map(|id| id.to_string()), Page::from(page));
    let events = state
        .db(move |conn| audit::list_for(conn, &caller, user_id.as_deref(), &page))
        .await?;
    let events = events.iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(EventList { events }))
}
