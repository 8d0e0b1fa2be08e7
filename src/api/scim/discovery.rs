//! `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas` (RFC 7643 5-7):
//! exactly what this server supports, and the attributes it keeps.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::groups::GROUP_SCHEMA;
use super::users::USER_SCHEMA;
use super::{list_response, respond, ScimCaller, MAX_RESULTS};
use crate::error::Error;

const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub async fn service_provider_config(scim: ScimCaller) -> Result<HttpResponse, Error> {
    Ok(respond(
        StatusCode::OK,
        &json!({
            "schemas": [SPC_SCHEMA],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer key",
                "description": "A keyward key of an Administrators user, with the \
                    user_management scope, in this tenant: Authorization: Bearer <key>.",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", scim.base),
            },
        }),
    ))
}

fn resource_type_list(base: &str) -> Vec<Value> {
    [
        ("User", "/Users", USER_SCHEMA, "A user of the tenant."),
        ("Group", "/Groups", GROUP_SCHEMA, "A role of the tenant: Administrators or Default users."),
    ]
    .into_iter()
    .map(|(name, endpoint, schema, description)| {
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": name,
            "name": name,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
        })
    })
    .collect()
}

pub async fn resource_types(scim: ScimCaller) -> Result<HttpResponse, Error> {
    let all = resource_type_list(&scim.base);
    Ok(respond(
        StatusCode::OK,
        &list_response(all.len() as i64, 1, all),
    ))
}

pub async fn resource_type(scim: ScimCaller, req: HttpRequest) -> Result<HttpResponse, Error> {
    let id = req.match_info().query("id");
    let found = resource_type_list(&scim.base)
        .into_iter()
        .find(|t| t["id"] == id)
        .ok_or(Error::NotFound)?;
    Ok(respond(StatusCode::OK, &found))
}

/// One attribute definition (RFC 7643 7).
struct Attr {
    name: &'static str,
    kind: &'static str,
    multi: bool,
    required: bool,
    case_exact: bool,
    mutability: &'static str,
    returned: &'static str,
    uniqueness: &'static str,
    description: &'static str,
    subs: Vec<Attr>,
    canonical: &'static [&'static str],
}

fn attr(name: &'static str, kind: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind,
        multi: false,
        required: false,
        case_exact: false,
        mutability: "readWrite",
        returned: "default",
        uniqueness: "none",
        description,
        subs: Vec::new(),
        canonical: &[],
    }
}

impl Attr {
    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: &'static str) -> Self {
        self.mutability = m;
        self
    }
    fn unique(mut self) -> Self {
        self.uniqueness = "server";
        self
    }
    fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }
    fn subs(mut self, subs: Vec<Attr>) -> Self {
        self.subs = subs;
        self
    }

    fn json(&self) -> Value {
        let mut out = json!({
            "name": self.name,
            "type": self.kind,
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        });
        if matches!(self.kind, "string" | "reference") {
            out["caseExact"] = json!(self.case_exact);
            out["uniqueness"] = json!(self.uniqueness);
        }
        if self.kind == "reference" {
            out["referenceTypes"] = json!(["User", "Group"]);
        }
        if !self.canonical.is_empty() {
            out["canonicalValues"] = json!(self.canonical);
        }
        if !self.subs.is_empty() {
            out["subAttributes"] = self.subs.iter().map(Attr::json).collect();
        }
        out
    }
}

fn schema_list(base: &str) -> Vec<Value> {
    // Every user has a name, an address and a state: those attributes are
    // required (they cannot be removed), though a creation may leave out all
    // but userName and get the defaults. Everything described comes back.
    let user = vec![
        attr("userName", "string", "The user's email address; unique in the tenant, compared without regard to case.")
            .required()
            .unique(),
        // givenName and familyName are also accepted (they make the name when
        // neither displayName nor formatted is sent), but not kept apart, so
        // not described: a client reading this schema must not expect them back.
        attr("name", "complex", "The user's name.")
            .required()
            .subs(vec![attr(
                "formatted",
                "string",
                "The user's name (displayName wins when both change).",
            )
            .required()]),
        attr("displayName", "string", "The user's name (default: userName).").required(),
        // `primary` is not described: with one address there is nothing to
        // choose, and a flag that could not be kept as sent would not round-trip.
        attr("emails", "complex", "Derived from userName: one work address. Setting the primary or work address changes userName.")
            .multi()
            .required()
            .subs(vec![
                attr("value", "string", "The address."),
                attr("type", "string", "Always work.").canonical(&["work"]),
            ]),
        attr("active", "boolean", "Whether the user (and so its keys) may act (default: true).")
            .required(),
        attr("roles", "complex", "The user's roles: Administrators, Default users.")
            .multi()
            .subs(vec![attr("value", "string", "The role's name.")
                .case_exact()
                .canonical(&["Administrators", "Default users"])]),
        attr("groups", "complex", "The groups (roles) the user is in.")
            .multi()
            .mutability("readOnly")
            .subs(vec![
                attr("value", "string", "The group's id.").mutability("readOnly").case_exact(),
                attr("$ref", "reference", "The group's URI.").mutability("readOnly").case_exact(),
                attr("display", "string", "The group's name.").mutability("readOnly"),
            ]),
    ];
    let group = vec![
        attr("displayName", "string", "The role's name; fixed.")
            .required()
            .unique()
            .mutability("readOnly"),
        attr("members", "complex", "The users holding the role.")
            .multi()
            .subs(vec![
                attr("value", "string", "The user's id.")
                    .mutability("immutable")
                    .case_exact(),
                attr("$ref", "reference", "The user's URI.")
                    .mutability("immutable")
                    .case_exact(),
                attr("display", "string", "The user's email.").mutability("readOnly"),
                attr("type", "string", "Always User.").mutability("immutable"),
            ]),
    ];
    [
        (USER_SCHEMA, "User", "User Account", user),
        (GROUP_SCHEMA, "Group", "Group (a role)", group),
    ]
    .into_iter()
    .map(|(id, name, description, attrs)| {
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attrs.iter().map(Attr::json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
        })
    })
    .collect()
}

pub async fn schemas(scim: ScimCaller) -> Result<HttpResponse, Error> {
    let all = schema_list(&scim.base);
    Ok(respond(
        StatusCode::OK,
        &list_response(all.len() as i64, 1, all),
    ))
}

pub async fn schema(scim: ScimCaller, req: HttpRequest) -> Result<HttpResponse, Error> {
    let id = req.match_info().query("id");
    let found = schema_list(&scim.base)
        .into_iter()
        .find(|s| s["id"] == id)
        .ok_or(Error::NotFound)?;
    Ok(respond(StatusCode::OK, &found))
}
