//! `/Users`: keyward's users as SCIM Users.
//!
//! `id` is the user's id; `userName` its email, from which `emails` is
//! derived; `displayName` and `name.formatted` its name; `active`,
//! `externalId` and `roles` as they are. A write is read as the resource the
//! client wants (a PUT body, or the current resource with a PATCH's operations
//! applied) and turned into one core change: what differs from the current
//! user. A changed value wins over one sent unchanged (`emails` over
//! `userName`, `name.formatted` over `displayName`), `displayName` first
//! when both change.

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::filter::{self, get, AttrPath, CompareOp, Filter};
use super::groups::group_id;
use super::{boolean, list_response, patch, respond, Paging, Projection, ScimCaller};
use crate::api::input::{path_id, Body, QueryParams};
use crate::api::timestamp;
use crate::error::Error;
use crate::users::{self, Match, NewUser, User, UserChange, UserField, UserFilter};
use crate::AppState;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The SCIM representation of `user`.
pub fn render(user: &User, base: &str) -> Value {
    let location = format!("{base}/Users/{}", user.id);
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "id": user.id,
        "userName": user.email,
        "name": {"formatted": user.name},
        "displayName": user.name,
        "emails": [{"value": user.email, "type": "work"}],
        "active": user.active,
        "meta": {
            "resourceType": "User",
            "created": timestamp(user.created_at),
            "lastModified": timestamp(user.updated_at.unwrap_or(user.created_at)),
            "location": location,
        },
    });
    if let Some(external_id) = &user.external_id {
        resource["externalId"] = json!(external_id);
    }
    if !user.roles.is_empty() {
        resource["roles"] = user
            .roles
            .iter()
            .map(|role| json!({"value": role}))
            .collect();
        resource["groups"] = user
            .roles
            .iter()
            .map(|role| {
                let id = group_id(role);
                json!({"value": id, "display": role, "$ref": format!("{base}/Groups/{id}")})
            })
            .collect();
    }
    resource
}

fn invalid(field: &str, message: &str) -> Error {
    Error::invalid(field, message)
}

/// A string member, case-insensitively named; `null` and absence are `None`.
fn string<'v>(doc: &'v Value, name: &str) -> Result<Option<&'v str>, Error> {
    match get(doc, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, &format!("{name} must be a string."))),
    }
}

/// The address of the primary email, else of the work email, else of the
/// only one. Of several (a PATCH `add`ed one beside the current one), one
/// other than `current` wins: it is the one the client just set.
fn primary_email(doc: &Value, current: Option<&str>) -> Option<String> {
    let emails = get(doc, "emails")?.as_array()?;
    let value = |e: &Value| get(e, "value").and_then(Value::as_str).map(str::to_owned);
    let pick = |candidates: Vec<String>| {
        candidates
            .iter()
            .find(|v| Some(normalize(v).as_str()) != current.map(normalize).as_deref())
            .or(candidates.first())
            .cloned()
    };
    let primary: Vec<String> = emails
        .iter()
        .filter(|e| get(e, "primary").and_then(boolean) == Some(true))
        .filter_map(value)
        .collect();
    let work: Vec<String> = emails
        .iter()
        .filter(|e| {
            get(e, "type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
        .filter_map(value)
        .collect();
    pick(primary)
        .or_else(|| pick(work))
        .or_else(|| (emails.len() == 1).then(|| value(&emails[0])).flatten())
}

fn normalize(email: &str) -> String {
    users::normalize_email(email)
}

/// The value at `name` (or `name.sub`) of `doc`, as a non-empty string.
fn text(doc: &Value, name: &str, sub: Option<&str>) -> Option<String> {
    let value = get(doc, name)?;
    let value = match sub {
        Some(sub) => get(value, sub)?,
        None => value,
    };
    value
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

/// What the client wants, read from a resource body `doc`; `current` is the
/// user's representation (none for a creation). `None` fields stay as they are.
struct Wanted {
    email: Option<String>,
    name: Option<String>,
    active: Option<bool>,
    external_id: Option<Option<String>>,
    roles: Option<Vec<String>>,
}

fn wanted(doc: &Value, current: Option<&Value>, patched: bool) -> Result<Wanted, Error> {
    if !doc.is_object() {
        return Err(invalid("body", "The request body must be a JSON object."));
    }
    // A value counts when there is nothing to compare with, or it differs.
    let fresh = |value: Option<String>, before: Option<String>| match current {
        None => value,
        Some(_) => value.filter(|v| Some(v) != before.as_ref()),
    };
    let user_name = string(doc, "userName")?.map(str::to_owned);
    let before = |f: &dyn Fn(&Value) -> Option<String>| current.and_then(f);
    let email = fresh(user_name.clone(), before(&|c| text(c, "userName", None))).or_else(|| {
        let before = current.and_then(|c| text(c, "userName", None));
        fresh(
            primary_email(doc, before.as_deref()),
            current.and_then(|c| primary_email(c, None)),
        )
    });
    if current.is_none() && email.is_none() {
        return Err(invalid(
            "userName",
            "userName is required: the user's email address.",
        ));
    }
    let name = fresh(
        text(doc, "displayName", None),
        before(&|c| text(c, "displayName", None)),
    )
    .or_else(|| {
        fresh(
            text(doc, "name", Some("formatted")),
            before(&|c| text(c, "name", Some("formatted"))),
        )
    })
    .or_else(|| {
        let parts = |d: &Value| {
            let given = text(d, "name", Some("givenName"));
            let family = text(d, "name", Some("familyName"));
            let joined = [given, family].into_iter().flatten().collect::<Vec<_>>();
            (!joined.is_empty()).then(|| joined.join(" "))
        };
        fresh(parts(doc), before(&parts))
    });
    let active = match get(doc, "active") {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(boolean(value).ok_or_else(|| invalid("active", "active must be true or false."))?)
        }
    };
    let had = |name: &str| current.is_some_and(|c| get(c, name).is_some());
    if patched {
        // Every user has a name, an address and a state.
        let kept = |d: &Value, name: &str, sub: Option<&str>| match name {
            "active" => get(d, name).is_some_and(|v| !v.is_null()),
            "emails" => primary_email(d, None).is_some(),
            _ => text(d, name, sub).is_some(),
        };
        for (name, sub) in [
            ("userName", None),
            ("displayName", None),
            ("name", Some("formatted")),
            ("emails", None),
            ("active", None),
        ] {
            if current.is_some_and(|c| kept(c, name, sub)) && !kept(doc, name, sub) {
                let shown = sub.map_or(name.to_owned(), |s| format!("{name}.{s}"));
                return Err(invalid(
                    "mutability",
                    &format!("{shown} cannot be removed: every user has one."),
                ));
            }
        }
    }
    let external_id = match get(doc, "externalId") {
        Some(Value::String(s)) if !s.is_empty() => Some(Some(s.clone())),
        Some(Value::String(_)) | Some(Value::Null) => Some(None),
        Some(_) => return Err(invalid("externalId", "externalId must be a string.")),
        // Removed by a PATCH; a PUT without it leaves it be.
        None if patched && had("externalId") => Some(None),
        None => None,
    };
    let roles = match get(doc, "roles") {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Some(s.clone()),
                    other => get(other, "value")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("roles", "Each role must have a value."))?,
        ),
        Some(Value::Null) => Some(Vec::new()),
        Some(_) => return Err(invalid("roles", "roles must be an array.")),
        None if patched && had("roles") => Some(Vec::new()),
        None => None,
    };
    Ok(Wanted {
        email,
        name,
        active,
        external_id,
        roles,
    })
}

/// The core change from `user` to what `wanted` says: only what differs.
fn change(user: &User, wanted: Wanted) -> UserChange {
    let mut change = UserChange {
        name: wanted.name,
        roles: wanted.roles,
        active: wanted.active.filter(|a| *a != user.active),
        email: wanted.email,
        external_id: wanted.external_id,
        control: Default::default(),
    };
    if change.roles.as_ref() == Some(&user.roles) {
        change.roles = None;
    }
    change
}

/// The user as the identity provider sees it: a deprovisioned one is gone.
fn visible(user: &User) -> Result<(), Error> {
    match user.deprovisioned {
        true => Err(Error::NotFound),
        false => Ok(()),
    }
}

/// Reads the body, whose every member is optional but which must be an object.
async fn document(body: Body) -> Result<Value, Error> {
    Ok(Value::Object(body.object().await?.0))
}

fn answer(
    status: StatusCode,
    user: &User,
    base: &str,
    query: &QueryParams,
) -> Result<HttpResponse, Error> {
    let resource = Projection::parse(query)?.apply(render(user, base));
    let mut response = respond(status, &resource);
    if status == StatusCode::CREATED {
        let location = format!("{base}/Users/{}", user.id);
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&location) {
            response.headers_mut().insert(LOCATION, value);
        }
    }
    Ok(response)
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
        Some(text) => {
            let parsed = filter::parse_filter(text)
                .map_err(|e| invalid("filter", &format!("filter: {}.", e.0)))?;
            Some(user_filter(&parsed)?)
        }
    };
    let ScimCaller { caller, base } = scim;
    let (offset, limit) = (paging.start_index - 1, paging.count);
    let (total, found) = state
        .db(move |conn| users::search_for(conn, &caller, filter.as_ref(), offset, limit))
        .await?;
    let resources = found
        .iter()
        .map(|user| projection.apply(render(user, &base)))
        .collect();
    Ok(respond(
        StatusCode::OK,
        &list_response(total, paging.start_index, resources),
    ))
}

pub async fn get_user(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let ScimCaller { caller, base } = scim;
    let now = state.clock.now();
    let user = state
        .read(move |conn| users::get_for(conn, &caller, &id, now))
        .await?;
    visible(&user)?;
    answer(
        StatusCode::OK,
        &user,
        &base,
        &QueryParams::parse(req.query_string()),
    )
}

/// `POST /Users`: a new user, or a deactivated one with this `userName`
/// provisioned again (the same user, reactivated). 201 either way.
pub async fn create(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let doc = document(body).await?;
    let wanted = wanted(&doc, None, false)?;
    let email = wanted.email.unwrap_or_default();
    let mut new = NewUser::new(email, wanted.name, wanted.roles);
    new.external_id = wanted.external_id.flatten();
    let now = state.clock.now();
    let ScimCaller { caller, base } = scim;
    let (mut user, _) = state
        .db({
            let caller = caller.clone();
            move |conn| users::provision_for(conn, &caller, new, now)
        })
        .await?;
    if wanted.active == Some(false) {
        let id = user.id.clone();
        user = state
            .db(move |conn| {
                users::modify_for(conn, &caller, &id, now, |_| {
                    Ok(UserChange {
                        active: Some(false),
                        ..UserChange::default()
                    })
                })
            })
            .await?;
    }
    answer(
        StatusCode::CREATED,
        &user,
        &base,
        &QueryParams::parse(req.query_string()),
    )
}

/// `PUT /Users/{id}`: the user becomes what the body says (attributes it
/// leaves out, other than `name`'s, are kept: see the README).
pub async fn replace(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let doc = document(body).await?;
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let ScimCaller { caller, base } = scim;
    let rendering_base = base.clone();
    let user = state
        .db(move |conn| {
            users::modify_for(conn, &caller, &id, now, |user| {
                visible(user)?;
                let current = render(user, &rendering_base);
                Ok(change(user, wanted(&doc, Some(&current), false)?))
            })
        })
        .await?;
    answer(
        StatusCode::OK,
        &user,
        &base,
        &QueryParams::parse(req.query_string()),
    )
}

/// `PATCH /Users/{id}`: RFC 7644 3.5.2 operations on the user's representation.
pub async fn patch(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Error> {
    let operations = patch::parse(&body.object().await?)?;
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let ScimCaller { caller, base } = scim;
    let rendering_base = base.clone();
    let user = state
        .db(move |conn| {
            users::modify_for(conn, &caller, &id, now, |user| {
                visible(user)?;
                let current = render(user, &rendering_base);
                let mut doc = current.clone();
                patch::apply(&mut doc, &operations)?;
                Ok(change(user, wanted(&doc, Some(&current), true)?))
            })
        })
        .await?;
    answer(
        StatusCode::OK,
        &user,
        &base,
        &QueryParams::parse(req.query_string()),
    )
}

/// `DELETE /Users/{id}`: deactivates the user and hides it from SCIM; it
/// stays in `/v1/users`, and provisioning its `userName` again reactivates it.
pub async fn delete(
    scim: ScimCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Error> {
    let id = path_id(&req, "id");
    let now = state.clock.now();
    let caller = scim.caller;
    state
        .db(move |conn| users::deprovision_for(conn, &caller, &id, now))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// --- filters ---

fn unsupported(what: &str) -> Error {
    invalid("filter", &format!("filter: {what} is not supported."))
}

/// An attribute path of the core User schema (with or without its URN).
fn core_path(path: &AttrPath) -> Result<&AttrPath, Error> {
    match &path.urn {
        Some(urn) if !urn.eq_ignore_ascii_case(USER_SCHEMA) => Err(unsupported(urn)),
        _ => Ok(path),
    }
}

fn field_of(path: &AttrPath) -> Result<UserField, Error> {
    let path = core_path(path)?;
    Ok(
        if path.is("userName", None) || path.is("emails", Some("value")) || path.is("emails", None)
        {
            UserField::Email
        } else if path.is("externalId", None) {
            UserField::ExternalId
        } else if path.is("id", None) {
            UserField::Id
        } else if path.is("displayName", None) || path.is("name", Some("formatted")) {
            UserField::Name
        } else {
            let sub = path
                .sub
                .as_deref()
                .map(|s| format!(".{s}"))
                .unwrap_or_default();
            return Err(unsupported(&format!("the attribute {}{sub}", path.name)));
        },
    )
}

fn always() -> UserFilter {
    UserFilter::Present(UserField::Id)
}

fn never() -> UserFilter {
    UserFilter::Not(Box::new(always()))
}

fn compare(field: UserField, op: CompareOp, value: &Value) -> Result<UserFilter, Error> {
    let how = match op {
        CompareOp::Eq => Match::Equals,
        CompareOp::Ne => Match::NotEquals,
        CompareOp::Co => Match::Contains,
        CompareOp::Sw => Match::StartsWith,
        CompareOp::Ew => Match::EndsWith,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
            return Err(unsupported("gt, ge, lt and le on strings"))
        }
    };
    let value = value
        .as_str()
        .ok_or_else(|| invalid("filter", "filter: compare this attribute with a string."))?;
    Ok(UserFilter::Compare(field, how, value.to_owned()))
}

/// A SCIM filter over Users as the core's filter.
pub fn user_filter(filter: &Filter) -> Result<UserFilter, Error> {
    Ok(match filter {
        Filter::And(a, b) => UserFilter::And(Box::new(user_filter(a)?), Box::new(user_filter(b)?)),
        Filter::Or(a, b) => UserFilter::Or(Box::new(user_filter(a)?), Box::new(user_filter(b)?)),
        Filter::Not(a) => UserFilter::Not(Box::new(user_filter(a)?)),
        Filter::Present(path) if core_path(path)?.is("active", None) => always(),
        Filter::Present(path) => UserFilter::Present(field_of(path)?),
        Filter::Compare(path, op, value) if core_path(path)?.is("active", None) => {
            let active = boolean(value)
                .ok_or_else(|| invalid("filter", "filter: active is true or false."))?;
            match op {
                CompareOp::Eq => UserFilter::Active(active),
                CompareOp::Ne => UserFilter::Active(!active),
                _ => return Err(unsupported("this operator on active")),
            }
        }
        Filter::Compare(path, op, value) => compare(field_of(path)?, *op, value)?,
        Filter::ValuePath(path, inner) if core_path(path)?.is("emails", None) => {
            email_filter(inner)?
        }
        Filter::ValuePath(path, _) => {
            return Err(unsupported(&format!("a filter on {}", path.name)))
        }
    })
}

/// A filter inside `emails[...]`: every user has one email, of type `work`;
/// identity providers that ask for the primary one get it.
fn email_filter(filter: &Filter) -> Result<UserFilter, Error> {
    Ok(match filter {
        Filter::And(a, b) => {
            UserFilter::And(Box::new(email_filter(a)?), Box::new(email_filter(b)?))
        }
        Filter::Or(a, b) => UserFilter::Or(Box::new(email_filter(a)?), Box::new(email_filter(b)?)),
        Filter::Not(a) => UserFilter::Not(Box::new(email_filter(a)?)),
        Filter::Present(path) if path.is("value", None) => always(),
        Filter::Present(path) if path.is("type", None) || path.is("primary", None) => always(),
        Filter::Compare(path, op, value) if path.is("value", None) => {
            compare(UserField::Email, *op, value)?
        }
        Filter::Compare(path, CompareOp::Eq, value) if path.is("type", None) => {
            match value
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
            {
                true => always(),
                false => never(),
            }
        }
        Filter::Compare(path, CompareOp::Eq, value) if path.is("primary", None) => {
            match boolean(value) {
                Some(true) => always(),
                _ => never(),
            }
        }
        _ => return Err(unsupported("this condition on emails")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<UserFilter, Error> {
        user_filter(&filter::parse_filter(text).unwrap())
    }

    #[test]
    fn filters_map_to_the_core() {
        assert_eq!(
            parsed(r#"userName eq "A@X.test""#).unwrap(),
            UserFilter::Compare(UserField::Email, Match::Equals, "A@X.test".into())
        );
        assert_eq!(
            parsed(r#"urn:ietf:params:scim:schemas:core:2.0:User:externalId eq "e1""#).unwrap(),
            UserFilter::Compare(UserField::ExternalId, Match::Equals, "e1".into())
        );
        assert_eq!(
            parsed(r#"emails[type eq "work" and value eq "a@x.test"]"#).unwrap(),
            UserFilter::And(
                Box::new(always()),
                Box::new(UserFilter::Compare(
                    UserField::Email,
                    Match::Equals,
                    "a@x.test".into()
                ))
            )
        );
        assert_eq!(
            parsed(r#"active eq "False""#).unwrap(),
            UserFilter::Active(false)
        );
        for bad in [
            r#"title eq "x""#,
            r#"meta.created gt "2020-01-01""#,
            r#"userName eq 1"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "x""#,
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_changed_email_wins_over_an_unchanged_user_name() {
        let current = json!({"userName": "a@x.test", "displayName": "A", "name": {"formatted": "A"},
            "emails": [{"value": "a@x.test", "type": "work", "primary": true}]});
        let mut doc = current.clone();
        doc["emails"][0]["value"] = json!("b@x.test");
        doc["name"]["formatted"] = json!("B");
        let w = wanted(&doc, Some(&current), true).unwrap();
        assert_eq!(w.email.as_deref(), Some("b@x.test"));
        assert_eq!(w.name.as_deref(), Some("B"));
        // On creation, displayName wins over name.formatted, and names compose.
        let w = wanted(
            &json!({"userName": "c@x.test", "displayName": "D", "name": {"formatted": "F"}}),
            None,
            false,
        )
        .unwrap();
        assert_eq!(w.name.as_deref(), Some("D"));
        let w = wanted(
            &json!({"userName": "c@x.test", "name": {"givenName": "Ada", "familyName": "L"}}),
            None,
            false,
        )
        .unwrap();
        assert_eq!(w.name.as_deref(), Some("Ada L"));
        assert!(wanted(&json!({"displayName": "x"}), None, false).is_err());
        assert!(wanted(
            &json!({"userName": "c@x.test", "active": "yes"}),
            None,
            false
        )
        .is_err());
    }
}
