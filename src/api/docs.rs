//! The API's description: OpenAPI 3.1 at `GET /openapi.json`, generated from
//! the handlers' `#[utoipa::path]` attributes and the view types, and Swagger UI
//! at `GET /docs`, served from assets compiled into the binary (no CDN).
//!
//! Handlers document their success bodies and the error statuses particular
//! to them; the request types they parse into are the schemas. What holds for
//! every route is added here once, by the same rules the middleware
//! ([`super::context`]) and the `Caller` extractor apply: every operation of a
//! dialect (`/v1`, `/user`) takes credentials and can answer 401, 429 and 503;
//! an error's body is the dialect's (problem details, or Estuary's envelope,
//! chosen by [`Dialect::of`] the path); every response carries `x-request-id`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, ObjectBuilder, Ref, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::Config;

use super::context::Dialect;
use crate::api::v1::keys::OptionalRotationBody;
use crate::api::v1::verify::EveryMethod;
use crate::error::Error;
use crate::keys::Scope;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::api::resource("/openapi.json").route(web::get().to(openapi_json)))
        .service(crate::api::resource("/docs").route(web::get().to(swagger_index)))
        .service(crate::api::resource("/docs/{file}").route(web::get().to(swagger_file)));
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward",
        description = "Self-hosted, multi-tenant management of users' API keys. \
            Two dialects over one core: BlueDolphin's public API (`/v1`, RFC 9457 problem \
            details) and Estuary's user API (`/user`, Estuary's error envelope). \
            Authenticate with the `tenant` header and a key in `x-key`, `x-api-key` or \
            `Authorization: Bearer`.",
    ),
    paths(
        crate::api::v1::keys::list,
        crate::api::v1::keys::create,
        crate::api::v1::keys::revoke_without_id,
        crate::api::v1::keys::get,
        crate::api::v1::keys::update,
        crate::api::v1::keys::revoke,
        crate::api::v1::keys::rotate,
        crate::api::v1::users::list,
        crate::api::v1::users::create,
        crate::api::v1::users::get,
        crate::api::v1::users::update,
        crate::api::v1::users::deactivate,
        crate::api::v1::audit::list,
        crate::api::v1::verify::verify,
        crate::api::v1::usage::usage,
        crate::api::v1::webhooks::list,
        crate::api::v1::webhooks::create,
        crate::api::v1::webhooks::get,
        crate::api::v1::webhooks::update,
        crate::api::v1::webhooks::delete,
        crate::api::v1::webhooks::rotate_secret,
        crate::api::v1::webhooks::deliveries,
        crate::api::v1::webhooks::test,
        crate::api::estuary::list,
        crate::api::estuary::create,
        crate::api::estuary::revoke,
        crate::api::estuary::stats,
        crate::api::estuary::export,
        crate::api::ops::liveness,
        crate::api::ops::readiness,
    ),
    components(schemas(ProblemDetails, crate::api::estuary::ErrorEnvelope)),
    modifiers(&Conventions, &OptionalRotationBody, &EveryMethod),
    tags(
        (name = "keys", description = "BlueDolphin: users' API keys"),
        (name = "users", description = "BlueDolphin: user administration"),
        (name = "audit", description = "BlueDolphin: the tenant's audit log"),
        (name = "verification", description = "Keys that protect the tenant's own services"),
        (name = "usage", description = "BlueDolphin: how often keys are verified"),
        (name = "webhooks", description = "BlueDolphin: events to the tenant's systems"),
        (name = "estuary", description = "Estuary: the calling key's own user"),
        (name = "operations", description = "Probes; no credentials"),
    ),
)]
pub struct ApiDoc;

/// The document, built once.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}

/// RFC 9457 problem details, as every error outside `/user` is rendered
/// (`application/problem+json`). Schema only: `api::v1::problem` writes it.
#[derive(ToSchema)]
#[schema(as = ProblemDetails)]
pub struct ProblemDetails {
    /// A link to the RFC section of the status.
    #[schema(rename = "type")]
    pub kind: String,
    /// For 400 and 401, `One or more validation errors occurred`; else what went wrong.
    pub title: String,
    /// The response's status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// The request id, as in the `x-request-id` header.
    #[schema(rename = "traceId")]
    pub trace_id: String,
    /// On 400 and 401: each offending field or header, with its messages.
    #[schema(nullable = false)]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

/// A key's scopes are named by [`Scope::as_str`], the names the core parses.
impl PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Scope::ALL.map(Scope::as_str)))
            .description(Some("What a key may be used for."))
            .into()
    }
}

impl ToSchema for Scope {}

/// The request id's shape: an incoming sane id is echoed, else one is made.
const REQUEST_ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// What any authenticated operation can answer: bad credentials, throttled,
/// database down.
const AUTHENTICATED_ERRORS: [u16; 3] = [401, 429, 503];

/// The rules every operation follows; see the module doc.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, scheme) in security_schemes() {
            components.add_security_scheme(name, scheme);
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let dialect = Dialect::of(path);
            let authenticated = path.starts_with("/v1/") || path.starts_with("/user/");
            for operation in operations(item) {
                if authenticated {
                    for status in AUTHENTICATED_ERRORS {
                        operation
                            .responses
                            .responses
                            .entry(status.to_string())
                            .or_insert_with(|| RefOr::T(Response::new("")));
                    }
                    operation.security = Some(credentials());
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    let status = status.parse::<u16>().unwrap_or_default();
                    conventional_response(response, status, dialect);
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn conventional_response(response: &mut Response, status: u16, dialect: Dialect) {
    let header = |pattern: Option<&str>, description: &str| {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(pattern)
            .build();
        HeaderBuilder::new()
            .schema(schema)
            .description(Some(description))
            .build()
    };
    response.headers.insert(
        "x-request-id".to_owned(),
        header(
            Some(REQUEST_ID_PATTERN),
            "The request's id: the incoming `x-request-id` if it is a sane token, else a new one.",
        ),
    );
    if status == 429 {
        response.headers.insert(
            "Retry-After".to_owned(),
            header(
                Some("^[0-9]+$"),
                "Seconds until failed authentications are accepted again.",
            ),
        );
    }
    if status < 400 {
        return;
    }
    if response.description.is_empty() {
        response.description = default_description(status).to_owned();
    }
    if response.content.is_empty() {
        let (content_type, schema) = match dialect {
            Dialect::ProblemDetails => ("application/problem+json", "ProblemDetails"),
            Dialect::Estuary => ("application/json", "ErrorEnvelope"),
            // No SCIM path is in the document (see the README).
            Dialect::Scim => ("application/scim+json", "ScimError"),
        };
        response.content.insert(
            content_type.to_owned(),
            Content::new(Some(Ref::from_schema_name(schema))),
        );
    }
}

fn default_description(status: u16) -> &'static str {
    match status {
        400 => "Invalid input; each offending field is named.",
        401 => {
            "Tenant header missing or unknown, or key missing, invalid, revoked, of an \
                inactive user, or expired."
        }
        403 => "Authenticated, but the caller's role or the key's scopes do not allow this.",
        404 => "No such resource (or one the caller may not see).",
        409 => "Conflicts with the tenant's state.",
        413 => "Request body larger than 64 KiB.",
        415 => "Request body is not `application/json`.",
        429 => "Too many failed authentications from this address.",
        503 => "The database is unavailable.",
        _ => "Error.",
    }
}

/// The tenant header, and the key in any one of its three headers.
fn security_schemes() -> [(&'static str, SecurityScheme); 4] {
    let header = |name, description| {
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            name,
            description,
        )))
    };
    [
        (
            "tenant",
            header(
                "tenant",
                "The tenant's name; optional in a deployment pinned to one tenant.",
            ),
        ),
        ("x_key", header("x-key", "The key's secret.")),
        ("x_api_key", header("x-api-key", "The key's secret.")),
        (
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The key's secret as a bearer token."))
                    .build(),
            ),
        ),
    ]
}

/// `tenant` with any one of the key headers.
fn credentials() -> Vec<SecurityRequirement> {
    let none = || Vec::<String>::new();
    ["x_key", "x_api_key", "bearer"]
        .into_iter()
        .map(|key| SecurityRequirement::new("tenant", none()).add(key, none()))
        .collect()
}

/// Swagger UI's settings, baked into its `swagger-initializer.js`.
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            // The default validator is a remote service, and a badge loaded from it.
            .validator_url("none")
            .try_it_out_enabled(true),
    )
});

/// Where the UI's assets are served; the page links them with absolute paths
/// so that it works at `/docs` as well as `/docs/`.
const ASSETS: &str = "/docs/";

async fn swagger_index() -> Result<HttpResponse, Error> {
    let index = swagger_asset("index.html")?;
    let html = String::from_utf8_lossy(&index.bytes);
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(local_asset_links(&html)))
}

async fn swagger_file(req: HttpRequest) -> Result<HttpResponse, Error> {
    let file = swagger_asset(req.match_info().query("file"))?;
    Ok(HttpResponse::Ok()
        .content_type(file.content_type)
        .body(file.bytes.into_owned()))
}

fn swagger_asset(name: &str) -> Result<utoipa_swagger_ui::SwaggerFile<'static>, Error> {
    utoipa_swagger_ui::serve(name, Arc::clone(&SWAGGER_CONFIG))
        .map_err(|e| Error::Internal(format!("swagger ui asset {name}: {e}")))?
        .ok_or(Error::NotFound)
}

/// Rewrites the page's relative `href`/`src` links (`./swagger-ui.css`,
/// `index.css`) to [`ASSETS`]; absolute, external and fragment links stay.
fn local_asset_links(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut rest = html;
    while let Some(at) = ["href=\"", "src=\""]
        .iter()
        .filter_map(|attr| rest.find(attr).map(|i| i + attr.len()))
        .min()
    {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let relative = !tail.starts_with('/')
            && !tail.starts_with('#')
            && !tail.split('"').next().unwrap_or_default().contains(':');
        if relative {
            out.push_str(ASSETS);
        }
        rest = if relative {
            tail.strip_prefix("./").unwrap_or(tail)
        } else {
            tail
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_links_become_local_paths() {
        let html = r##"<link href="./swagger-ui.css" /><link href="index.css" />
            <script src="./swagger-ui-bundle.js"></script><a href="#top"></a>
            <a href="/x"></a><a href="https://example.org/">"##;
        assert_eq!(
            local_asset_links(html),
            r##"<link href="/docs/swagger-ui.css" /><link href="/docs/index.css" />
            <script src="/docs/swagger-ui-bundle.js"></script><a href="#top"></a>
            <a href="/x"></a><a href="https://example.org/">"##
        );
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
