//! `/Groups`: the tenant's two roles as two fixed groups, whose `members` are
//! the users (that SCIM sees) holding the role. Membership changes are role
//! changes of the core, in one transaction per request; the groups themselves
//! cannot be created, renamed or deleted (403).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::filter::{self, get as member};
use super::{list_response, patch, respond, Paging, Projection, ScimCaller};
use crate::api::input::{Body, QueryParams};
use crate::error::Error;
use crate::users::{self, MembersChange, ADMINISTRATORS, DEFAULT_USERS};
use crate::AppState;

pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Each role's group id: fixed, the same in every tenant.
const GROUPS: [(&str, &str); 2] = [
    ("administrators", ADMINISTRATORS),
    ("default-users", DEFAULT_USERS),
];

const FIXED: &str = "Groups are the tenant's roles: they cannot be created, renamed or deleted.";

/// The id of the group of `role`.
pub fn group_id(role: &str) -> &'static str {
    GROUPS
        .iter()
        .find(|(_, r)| *r == role)
        .map_or("unknown", |(id, _)| id)
}

fn role_of(id: &str) -> Result<&'static str, Error> {
    GROUPS
        .iter()
        .find(|(group, _)| *group == id)
        .map(|(_, role)| *role)
        .ok_or(Error::NotFound)
}

/// The group of `role`, with its members' ids (`None`: members left out).
fn render(role: &str, members: Option<&[users::User]>, base: &str) -> Value {
    let id = group_id(role);
    let mut group = json!({
        "schemas": [GROUP_SCHEMA],
        "id": id,
        "displayName": role,
        "meta": {"resourceType": "Group", "location": format!("{base}/Groups/{id}")},
    });
    if let Some(members) = members {
        group["members"] = members
            .iter()
            .map(|user| {
                json!({
                    "value": user.id,
                    "display": user.email,
                    "type": "User",
                    "$ref": format!("{base}/Users/{}", user.id),
                })
            })
            .collect();
    }
    group
}

/// Every group, rendered, with members unless the projection leaves them out.
async fn all(scim: &ScimCaller, state: &AppState, with_members: bool) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for (_, role) in GROUPS {
        let members = match with_members {
            true => {
                let caller = scim.caller.clone();
                Some(
                    state
                        .db(move |conn| users::members_for(conn, &caller, role))
                        .await?,
                )
            }
            false => None,
        };
        out.push(render(role, members.as_deref(), &scim.base));
    }
    Ok(out)
}

pub async fn list(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let query = QueryParams::parse(req.query_string());
    let paging = Paging::parse(&query)?;
    let projection = Projection::parse(&query)?;
    let filter = match query.get("filter").map(str::trim).filter(|f| !f.is_empty()) {
        None => None,
        Some(text) => Some(
            filter::parse_filter(text)
                .map_err(|e| Error::invalid("filter", &format!("filter: {}.", e.0)))?,
        ),
    };
    let needs_members = !projection.omits("members") || filter.is_some();
    let groups: Vec<Value> = all(&scim, &state, needs_members)
        .await?
        .into_iter()
        .filter(|g| filter.as_ref().is_none_or(|f| filter::matches(f, g)))
        .collect();
    let total = groups.len() as i64;
    let page = groups
        .into_iter()
        .skip(usize::try_from(paging.start_index - 1).unwrap_or(usize::MAX))
        .take(usize::try_from(paging.count).unwrap_or(0))
        .map(|g| projection.apply(g))
        .collect();
    Ok(respond(
        StatusCode::OK,
        &list_response(total, paging.start_index, page),
    ))
}

async fn one(scim: &ScimCaller, state: &AppState, role: &'static str) -> Result<Value, Error> {
    let caller = scim.caller.clone();
    let members = state
        .db(move |conn| users::members_for(conn, &caller, role))
        .await?;
    Ok(render(role, Some(&members), &scim.base))
}

pub async fn get(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let role = role_of(req.match_info().query("id"))?;
    let query = QueryParams::parse(req.query_string());
    let group = one(&scim, &state, role).await?;
    Ok(respond(
        StatusCode::OK,
        &Projection::parse(&query)?.apply(group),
    ))
}

/// The member ids of a group representation.
fn member_ids(group: &Value) -> Result<Vec<String>, Error> {
    match member(group, "members") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                member(item, "value")
                    .and_then(Value::as_str)
                    .and_then(crate::api::input::parse_uuid)
                    .ok_or_else(|| {
                        Error::invalid("members", "Each member's value must be a user id.")
                    })
            })
            .collect(),
        Some(_) => Err(Error::invalid("members", "members must be an array.")),
    }
}

/// Makes the group's members those of `wanted` (a group representation), and
/// answers with the group as it then is.
async fn become_(
    scim: ScimCaller,
    state: &AppState,
    role: &'static str,
    current: &Value,
    wanted: &Value,
    query: &QueryParams,
) -> Result<HttpResponse, Error> {
    if let Some(name) = member(wanted, "displayName") {
        if name.as_str() != Some(role) {
            return Err(Error::invalid("mutability", FIXED));
        }
    }
    let before = member_ids(current)?;
    let after = member_ids(wanted)?;
    let change = MembersChange {
        replace: None,
        add: after
            .iter()
            .filter(|id| !before.contains(id))
            .cloned()
            .collect(),
        remove: before
            .iter()
            .filter(|id| !after.contains(id))
            .cloned()
            .collect(),
    };
    let now = state.clock.now();
    let caller = scim.caller.clone();
    state
        .db(move |conn| users::change_members_for(conn, &caller, role, change, now))
        .await?;
    let group = one(&scim, state, role).await?;
    Ok(respond(
        StatusCode::OK,
        &Projection::parse(query)?.apply(group),
    ))
}

/// `PATCH /Groups/{id}`: `members` add, remove and replace (and `displayName`
/// only to its own name).
pub async fn patch(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let operations = patch::parse(&body.object().await?)?;
    let role = role_of(req.match_info().query("id"))?;
    let current = one(&scim, &state, role).await?;
    let mut wanted = current.clone();
    patch::apply(&mut wanted, &operations)?;
    let query = QueryParams::parse(req.query_string());
    become_(scim, &state, role, &current, &wanted, &query).await
}

/// `PUT /Groups/{id}`: the members become the body's.
pub async fn replace(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let wanted = Value::Object(body.object().await?.0);
    let role = role_of(req.match_info().query("id"))?;
    let current = one(&scim, &state, role).await?;
    let query = QueryParams::parse(req.query_string());
    become_(scim, &state, role, &current, &wanted, &query).await
}

pub async fn create(_: ScimCaller) -> Result<HttpResponse, Error> {
    Err(Error::Forbidden(FIXED))
}

pub async fn delete(_: ScimCaller, req: HttpRequest) -> Result<HttpResponse, Error> {
    role_of(req.match_info().query("id"))?;
    Err(Error::Forbidden(FIXED))
}
