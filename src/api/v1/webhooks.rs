//! `/v1/webhooks`: the tenant's webhook endpoints (section 11), for
//! Administrators with `user_management`. The rules live in `crate::webhooks`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, RefOr, Schema, Type};
use utoipa::ToSchema;

use super::{push, PageQuery, ResultOk, OK};
use crate::access::Caller;
use crate::api::input::{path_id, Body, JsonObject, QueryParams};
use crate::api::timestamp;
use crate::error::{Error, FieldErrors};
use crate::paging::Page;
use crate::webhooks::{self, AttemptRow, Endpoint, EndpointChange, EventType, NewEndpoint};
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::api::resource("/v1/webhooks")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        crate::api::resource("/v1/webhooks/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        crate::api::resource("/v1/webhooks/{id}/rotate-secret")
            .route(web::post().to(rotate_secret)),
    )
    .service(crate::api::resource("/v1/webhooks/{id}/deliveries").route(web::get().to(deliveries)))
    .service(crate::api::resource("/v1/webhooks/{id}/test").route(web::post().to(test)));
}

/// The endpoint object.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct EndpointView<'a> {
    #[schema(format = Uuid)]
    id: &'a str,
    /// `http://` or `https://`.
    url: &'a str,
    #[schema(schema_with = events_schema)]
    events: &'a [String],
    /// `""` when none was given.
    description: &'a str,
    enabled: bool,
    #[schema(format = DateTime)]
    created_on: String,
    /// `null` until the endpoint is changed.
    #[schema(format = DateTime, required = true)]
    updated_on: Option<String>,
}

impl<'a> From<&'a Endpoint> for EndpointView<'a> {
    fn from(endpoint: &'a Endpoint) -> Self {
        Self {
            id: &endpoint.id,
            url: &endpoint.url,
            events: &endpoint.events,
            description: &endpoint.description,
            enabled: endpoint.enabled,
            created_on: timestamp(endpoint.created_at),
            updated_on: endpoint.updated_at.map(timestamp),
        }
    }
}

/// The endpoint object with its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpointWithSecret)]
pub struct WithSecret<'a> {
    #[serde(flatten)]
    view: EndpointView<'a>,
    /// `whsec_<base64 of 32 random bytes>`: the HMAC key is the decoded bytes.
    /// It is never shown again.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/]{43}=$")]
    secret: String,
}

/// The tenant's endpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
pub struct EndpointList<'a> {
    webhooks: Vec<EndpointView<'a>>,
}

/// The event types (or `*`), for a subscription.
fn event_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    names.push(webhooks::ALL_EVENTS);
    names
}

fn events_array() -> ArrayBuilder {
    let item = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(event_names()));
    ArrayBuilder::new().items(item).min_items(Some(1))
}

fn events_schema() -> impl Into<RefOr<Schema>> {
    events_array().build()
}

/// [`events_schema`] or `null` (absent, as everywhere in a body).
fn events_or_null_schema() -> impl Into<RefOr<Schema>> {
    events_array()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
        .build()
}

/// The body of `POST /v1/webhooks`. Unknown members are ignored.
#[derive(ToSchema)]
#[schema(as = NewWebhookEndpoint)]
pub struct NewEndpointBody {
    /// `http://` or `https://`, on a public address unless the operator allows
    /// private ones.
    pub url: String,
    /// A non-empty subset of the event types, or `["*"]`.
    #[schema(schema_with = events_schema)]
    pub events: Vec<String>,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

/// The body of `PATCH /v1/webhooks/{id}`: any of its members.
#[derive(ToSchema)]
#[schema(as = WebhookEndpointChange)]
pub struct EndpointChangeBody {
    pub url: Option<String>,
    #[schema(schema_with = events_or_null_schema)]
    pub events: Option<Vec<String>>,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// `false`: nothing more is sent (what is pending is dropped).
    pub enabled: Option<bool>,
}

fn string(body: &JsonObject, field: &str, errors: &mut FieldErrors) -> Option<String> {
    let value = body.get(field)?;
    let string = value.as_str().map(str::to_owned);
    if string.is_none() {
        push(errors, field, &format!("{field} must be a string."));
    }
    string
}

fn events(body: &JsonObject, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let value = body.get("events")?;
    let events = value.as_array().and_then(|items| {
        items
            .iter()
            .map(|e| e.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
    });
    if events.is_none() {
        push(
            errors,
            "events",
            "events must be an array of event types, or [\"*\"].",
        );
    }
    events
}

impl NewEndpointBody {
    fn parse(body: &JsonObject) -> Result<Self, Error> {
        let mut errors = FieldErrors::new();
        let url = string(body, "url", &mut errors);
        if body.get("url").is_none() {
            push(&mut errors, "url", "url is required.");
        }
        let events = events(body, &mut errors);
        if body.get("events").is_none() {
            push(
                &mut errors,
                "events",
                "events is required: an array of event types, or [\"*\"].",
            );
        }
        let description = string(body, "description", &mut errors);
        match (url, events) {
            (Some(url), Some(events)) if errors.is_empty() => Ok(Self {
                url,
                events,
                description,
            }),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

impl EndpointChangeBody {
    fn parse(body: &JsonObject) -> Result<Self, Error> {
        let mut errors = FieldErrors::new();
        let url = string(body, "url", &mut errors);
        let events = events(body, &mut errors);
        let description = string(body, "description", &mut errors);
        let enabled = body.get("enabled").and_then(|value| {
            let enabled = value.as_bool();
            if enabled.is_none() {
                push(&mut errors, "enabled", "enabled must be true or false.");
            }
            enabled
        });
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(Self {
            url,
            events,
            description,
            enabled,
        })
    }
}

/// What every call here needs, beyond a valid key.
const FORBIDDEN: &str = "The caller is not an Administrator, or the calling key lacks \
    `user_management`.";

/// Registers an endpoint; its signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhook",
    tag = "webhooks",
    request_body = NewEndpointBody,
    responses(
        (status = 201, description = "The endpoint and its secret.", body = WithSecret),
        (status = 400, description = "Every bad field, named (`url`, `events`, \
            `description`); or `body`."),
        (status = 403, description = FORBIDDEN),
        (status = 413),
        (status = 415),
    ),
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, Error> {
    let body = NewEndpointBody::parse(&body.object().await?)?;
    let new = NewEndpoint {
        url: body.url,
        events: body.events,
        description: body.description,
    };
    let now = state.clock.now();
    let hub = state.clone().into_inner();
    let (endpoint, secret) = state
        .db(move |conn| webhooks::create_for(conn, &caller, &hub.webhooks, new, now))
        .await?;
    Ok(HttpResponse::Created().json(WithSecret {
        view: EndpointView::from(&endpoint),
        secret: secret.shown(),
    }))
}

/// Lists the tenant's endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "listWebhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint of the tenant.", body = EndpointList),
        (status = 403, description = FORBIDDEN),
    ),
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    let endpoints = state
        .db(move |conn| webhooks::list_for(conn, &caller))
        .await?;
    let webhooks = endpoints.iter().map(EndpointView::from).collect();
    Ok(HttpResponse::Ok().json(EndpointList { webhooks }))
}

/// Reads an endpoint.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "getWebhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id.", format = Uuid)),
    responses(
        (status = 200, description = "The endpoint.", body = EndpointView),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
    ),
)]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let endpoint = state
        .db(move |conn| webhooks::get_for(conn, &caller, &id))
        .await?;
    Ok(HttpResponse::Ok().json(EndpointView::from(&endpoint)))
}

/// Changes an endpoint's URL, events, description or state.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    operation_id = "updateWebhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id.", format = Uuid)),
    request_body = EndpointChangeBody,
    responses(
        (status = 200, description = "The endpoint, changed.", body = EndpointView),
        (status = 400, description = "Every bad field, named; or `body`."),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
        (status = 413),
        (status = 415),
    ),
)]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let body = EndpointChangeBody::parse(&body.object().await?)?;
    let change = EndpointChange {
        url: body.url,
        events: body.events,
        description: body.description,
        enabled: body.enabled,
    };
    let now = state.clock.now();
    let id = path_id(&req, "id");
    let hub = state.clone().into_inner();
    let endpoint = state
        .db(move |conn| webhooks::update_for(conn, &caller, &hub.webhooks, &id, change, now))
        .await?;
    Ok(HttpResponse::Ok().json(EndpointView::from(&endpoint)))
}

/// Deletes an endpoint: nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id.", format = Uuid)),
    responses(
        (status = 200, description = "Deleted.", body = ResultOk),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
    ),
)]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let id = path_id(&req, "id");
    state
        .db(move |conn| webhooks::delete_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::Ok().json(OK))
}

/// Gives the endpoint a new signing secret; the old one keeps signing beside
/// it for 24 hours.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    operation_id = "rotateWebhookSecret",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id.", format = Uuid)),
    responses(
        (status = 200, description = "The endpoint and its new secret.", body = WithSecret),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
    ),
)]
pub async fn rotate_secret(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let id = path_id(&req, "id");
    let hub = state.clone().into_inner();
    let (endpoint, secret) = state
        .db(move |conn| webhooks::rotate_secret_for(conn, &caller, &hub.webhooks, &id, now))
        .await?;
    Ok(HttpResponse::Ok().json(WithSecret {
        view: EndpointView::from(&endpoint),
        secret: secret.shown(),
    }))
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct AttemptView<'a> {
    /// The attempt's id (`start_with` of the next page).
    #[schema(format = Uuid)]
    id: &'a str,
    /// The event's id: the `webhook-id` header, the same on every attempt.
    #[schema(format = Uuid)]
    event_id: &'a str,
    /// The event type.
    #[serde(rename = "type")]
    #[schema(schema_with = event_type_schema)]
    kind: &'a str,
    /// 1 for the first attempt of the event.
    #[schema(minimum = 1)]
    attempt: i32,
    /// The endpoint's HTTP status; `null` when it did not answer.
    #[schema(required = true)]
    status_code: Option<i32>,
    /// Why the attempt failed; `null` when it was delivered.
    #[schema(required = true)]
    error: Option<&'a str>,
    #[schema(format = DateTime)]
    at: String,
    /// When the next attempt is due; `null` when delivered or given up.
    #[schema(format = DateTime, required = true)]
    next_attempt_at: Option<String>,
}

fn event_type_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(EventType::ALL.map(EventType::as_str)))
}

impl<'a> From<&'a AttemptRow> for AttemptView<'a> {
    fn from(row: &'a AttemptRow) -> Self {
        Self {
            id: &row.id,
            event_id: &row.event_id,
            kind: &row.kind,
            attempt: row.attempt,
            status_code: row.status_code,
            error: row.error.as_deref(),
            at: timestamp(row.at.and_utc()),
            next_attempt_at: row.next_attempt_at.map(|t| timestamp(t.and_utc())),
        }
    }
}

/// A page of the delivery log.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDeliveryList)]
pub struct AttemptList<'a> {
    deliveries: Vec<AttemptView<'a>>,
}

/// The endpoint's delivery attempts, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id.", format = Uuid), PageQuery),
    responses(
        (status = 200, description = "A page of attempts, newest first (100 unless `take` \
            says otherwise).", body = AttemptList),
        (status = 400, description = "A bad `take` or `start_with`."),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
    ),
)]
pub async fn deliveries(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let page = PageQuery::parse(
        &query,
        "No delivery attempt with this ID is in the log.",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let page = Page::from(page);
    let id = path_id(&req, "id");
    let rows = state
        .db(move |conn| webhooks::deliveries_for(conn, &caller, &id, &page))
        .await?;
    let deliveries = rows.iter().map(AttemptView::from).collect();
    Ok(HttpResponse::Ok().json(AttemptList { deliveries }))
}

/// The answer of a test.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookTestSent)]
pub struct TestSent {
    /// The `webhook.test` event's id (its `webhook-id`).
    #[schema(format = Uuid)]
    event_id: String,
}

/// Sends a `webhook.test` event to the endpoint, whatever it subscribes to.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    operation_id = "testWebhook",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id.", format = Uuid)),
    responses(
        (status = 202, description = "The event is recorded; it is sent shortly.",
            body = TestSent),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "Unknown, malformed, or of another tenant."),
        (status = 409, description = "The endpoint is disabled."),
    ),
)]
pub async fn test(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let now = state.clock.now();
    let id = path_id(&req, "id");
    let event_id = state
        .db(move |conn| webhooks::test_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::Accepted().json(TestSent { event_id }))
}
