//! SCIM 2.0 provisioning (API.md section 12), through the real app on both backends.

use actix_web::http::Method;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::*;

const BASE: &str = "/scim/v2/acme";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// `method path` with `Authorization: Bearer key` and a SCIM JSON body.
async fn scim(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> Reply {
    scim_with(app, method, path, key, body, None).await
}

async fn scim_with(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
    request_id: Option<&str>,
) -> Reply {
    let mut req = TestRequest::default().method(method).uri(path);
    if !key.is_empty() {
        req = req.insert_header(("authorization", format!("Bearer {key}")));
    }
    if let Some(id) = request_id {
        req = req.insert_header(("x-request-id", id));
    }
    if let Some(body) = body {
        req = req
            .insert_header(("content-type", "application/scim+json"))
            .set_payload(body.to_string());
    }
    let reply = app.send(req).await;
    if !reply.text.is_empty() {
        assert_eq!(
            reply.header("content-type"),
            Some("application/scim+json"),
            "{path}: {}",
            reply.text
        );
    }
    reply
}

async fn get(app: &TestApp, path: &str, key: &str) -> Reply {
    scim(app, Method::GET, path, key, None).await
}

async fn post(app: &TestApp, path: &str, key: &str, body: Value) -> Reply {
    scim(app, Method::POST, path, key, Some(body)).await
}

async fn patch(app: &TestApp, path: &str, key: &str, ops: Value) -> Reply {
    let body = json!({"schemas": [PATCH_OP], "Operations": ops});
    scim(app, Method::PATCH, path, key, Some(body)).await
}

/// Asserts a SCIM error: status (as a string), `scimType` when RFC 7644 names one.
fn assert_scim_error(reply: &Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
    assert_eq!(reply.body["schemas"], json!([ERROR]), "{}", reply.text);
    assert_eq!(
        reply.body["status"],
        json!(status.to_string()),
        "{}",
        reply.text
    );
    assert!(reply.body["detail"].is_string(), "{}", reply.text);
    assert_eq!(
        reply.body.get("scimType").and_then(Value::as_str),
        scim_type,
        "{}",
        reply.text
    );
}

fn user_names(reply: &Reply) -> Vec<String> {
    reply.body["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", reply.text))
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect()
}

async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let reply = post(app, &format!("{BASE}/Users"), key, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body
}

fn id(resource: &Value) -> String {
    resource["id"].as_str().unwrap().to_owned()
}

both_backends! {
    async fn users_are_mapped_both_ways(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let reply = post(app, &format!("{BASE}/Users"), key, json!({
            "schemas": [USER],
            "userName": "Carol.Doe@Acme.test",
            "name": {"givenName": "Carol", "familyName": "Doe"},
            "externalId": "00u1Okta",
            "roles": [{"value": "Administrators", "primary": "True"}],
            "active": true,
        })).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let id = id(&reply.body);
        let location = format!("http://localhost:8080{BASE}/Users/{id}");
        assert_eq!(reply.header("location"), Some(location.as_str()));
        assert_eq!(reply.body, json!({
            "schemas": [USER],
            "id": id,
            "userName": "carol.doe@acme.test",
            "name": {"formatted": "Carol Doe"},
            "displayName": "Carol Doe",
            "emails": [{"value": "carol.doe@acme.test", "type": "work"}],
            "active": true,
            "externalId": "00u1Okta",
            "roles": [{"value": "Administrators"}],
            "groups": [{"value": "administrators", "display": "Administrators",
                "$ref": format!("http://localhost:8080{BASE}/Groups/administrators")}],
            "meta": {"resourceType": "User", "created": "2026-06-15T12:00:04Z",
                "lastModified": "2026-06-15T12:00:04Z", "location": location},
        }));
        assert_eq!(get(app, &format!("{BASE}/Users/{id}"), key).await.body, reply.body);
        // The same user in /v1/users, with the identity provider's id.
        let v1 = app.get(&format!("/v1/users/{id}"), "acme", key).await;
        assert_eq!((v1.body["email"].as_str(), v1.body["external_id"].as_str()), (Some("carol.doe@acme.test"), Some("00u1Okta")));
        assert_eq!(v1.body["roles"], json!(["Administrators"]));
        // displayName wins over name.formatted; without roles, Default users.
        let dana = create(app, key, json!({"userName": "dana@acme.test", "displayName": "Dana", "name": {"formatted": "D. A."}})).await;
        assert_eq!((dana["displayName"].as_str(), dana["name"]["formatted"].as_str()), (Some("Dana"), Some("Dana")));
        assert_eq!(dana["roles"], json!([{"value": "Default users"}]));
        assert!(dana.get("externalId").is_none());
        // userName is unique without regard to case, and must be an address.
        assert_scim_error(&post(app, &format!("{BASE}/Users"), key, json!({"userName": "CAROL.DOE@acme.test"})).await, 409, Some("uniqueness"));
        assert_scim_error(&post(app, &format!("{BASE}/Users"), key, json!({"userName": "carol"})).await, 400, Some("invalidValue"));
        assert_scim_error(&post(app, &format!("{BASE}/Users"), key, json!({"displayName": "x"})).await, 400, Some("invalidValue"));
        assert_scim_error(&post(app, &format!("{BASE}/Users"), key, json!({"userName": "e@acme.test", "roles": [{"value": "Root"}]})).await, 400, Some("invalidValue"));
        assert_scim_error(&scim(app, Method::POST, &format!("{BASE}/Users"), key, Some(json!([1]))).await, 400, Some("invalidSyntax"));
        // Unknown and malformed ids, and users of another tenant: 404.
        for other in [uuid::Uuid::now_v7().to_string(), "nope".into(), w.beta_admin.id.clone()] {
            assert_scim_error(&get(app, &format!("{BASE}/Users/{other}"), key).await, 404, None);
        }
    }

    async fn filters_paging_and_projection(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        create(app, key, json!({"userName": "erin@acme.test", "externalId": "ext-Erin", "displayName": "Erin Smith"})).await;
        create(app, key, json!({"userName": "frank@acme.test", "externalId": "ext-frank", "displayName": "Frank Smith"})).await;
        let users = format!("{BASE}/Users");
        let found = |filter: &str| {
            let path = format!("{users}?filter={}", urlencode(filter));
            async move { get(app, &path, key).await }
        };
        // Okta's lookup before a creation: userName eq, without regard to case.
        let reply = found(r#"userName eq "ERIN@acme.test""#).await;
        assert_eq!(user_names(&reply), ["erin@acme.test"]);
        assert_eq!((reply.body["totalResults"].as_i64(), reply.body["startIndex"].as_i64(), reply.body["itemsPerPage"].as_i64()), (Some(1), Some(1), Some(1)));
        assert_eq!(reply.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
        assert_eq!(user_names(&found(r#"userName eq "nobody@acme.test""#).await), Vec::<String>::new());
        // externalId is case-exact.
        assert_eq!(user_names(&found(r#"externalId eq "ext-Erin""#).await), ["erin@acme.test"]);
        assert_eq!(user_names(&found(r#"externalId eq "ext-erin""#).await), Vec::<String>::new());
        assert_eq!(user_names(&found(r#"emails.value eq "frank@acme.test""#).await), ["frank@acme.test"]);
        assert_eq!(user_names(&found(r#"emails[type eq "work" and value eq "Frank@acme.test"]"#).await), ["frank@acme.test"]);
        assert_eq!(user_names(&found(r#"userName eq "erin@acme.test" or externalId eq "ext-frank""#).await), ["erin@acme.test", "frank@acme.test"]);
        assert_eq!(user_names(&found(r#"userName eq "erin@acme.test" and externalId eq "ext-frank""#).await), Vec::<String>::new());
        assert_eq!(user_names(&found(r#"displayName co "SMITH" and not (userName sw "erin")"#).await), ["frank@acme.test"]);
        assert_eq!(user_names(&found(r#"userName ew "@acme.test" and externalId pr"#).await), ["erin@acme.test", "frank@acme.test"]);
        assert_eq!(user_names(&found(r#"userName co "%""#).await), Vec::<String>::new());
        assert_eq!(user_names(&found("active eq true").await).len(), 5);
        for bad in [r#"userName eq"#, r#"userName xx "a""#, r#"title eq "x""#, r#"meta.created gt "2020""#, r#"externalId co "x""#] {
            assert_scim_error(&found(bad).await, 400, Some("invalidFilter"));
        }
        // Paging: startIndex is 1-based, count bounds the page.
        let all = user_names(&get(app, &users, key).await);
        assert_eq!(all, ["admin@acme.test", "alice@acme.test", "bob@acme.test", "erin@acme.test", "frank@acme.test"]);
        let page = get(app, &format!("{users}?startIndex=2&count=2"), key).await;
        assert_eq!(user_names(&page), ["alice@acme.test", "bob@acme.test"]);
        assert_eq!((page.body["totalResults"].as_i64(), page.body["startIndex"].as_i64(), page.body["itemsPerPage"].as_i64()), (Some(5), Some(2), Some(2)));
        assert_eq!(user_names(&get(app, &format!("{users}?startIndex=5&count=10"), key).await), ["frank@acme.test"]);
        let none = get(app, &format!("{users}?count=0"), key).await;
        assert_eq!((none.body["totalResults"].as_i64(), none.body["Resources"].as_array().map(Vec::len)), (Some(5), Some(0)));
        assert_eq!(user_names(&get(app, &format!("{users}?startIndex=-3&count=1"), key).await), ["admin@acme.test"]);
        assert_scim_error(&get(app, &format!("{users}?count=many"), key).await, 400, Some("invalidValue"));
        // attributes / excludedAttributes: id and schemas always come back.
        let slim = get(app, &format!("{users}?count=1&attributes=userName,name.formatted"), key).await;
        let first = &slim.body["Resources"][0];
        assert_eq!(first, &json!({"schemas": [USER], "id": w.admin.id, "userName": "admin@acme.test", "name": {"formatted": "admin@acme.test"}}));
        let without = get(app, &format!("{BASE}/Users/{}?excludedAttributes=emails,meta,groups,roles,name", w.admin.id), key).await;
        assert_eq!(without.body, json!({"schemas": [USER], "id": w.admin.id, "userName": "admin@acme.test", "displayName": "admin@acme.test", "active": true}));
    }

    async fn patch_in_every_form_identity_providers_send(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let user = format!("{BASE}/Users/{}", w.alice.id);
        // Entra: capitalised op names, booleans as strings.
        let reply = patch(app, &user, key, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
        assert_eq!((reply.status.as_u16(), reply.body["active"].as_bool()), (200, Some(false)), "{}", reply.text);
        // Deactivated: alice's key fails from the next request on.
        assert_401(&app.get("/v1/user-api-keys", "acme", &w.alice_key.1).await, "x-key", "Invalid API key");
        let reply = patch(app, &user, key, json!([{"op": "Replace", "value": {"active": "True"}}])).await;
        assert_eq!(reply.body["active"], true, "{}", reply.text);
        assert_eq!(app.get(&format!("/v1/user-api-keys?UserId={}", w.alice.id), "acme", &w.alice_key.1).await.status, 200);
        // Add without a path, with dotted members (Entra), and with one.
        let reply = patch(app, &user, key, json!([
            {"op": "Add", "value": {"externalId": "aad-1", "displayName": "Alice Liddell", "title": "ignored"}},
            {"op": "add", "path": "roles", "value": [{"value": "Administrators"}]},
        ])).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!((reply.body["externalId"].as_str(), reply.body["displayName"].as_str()), (Some("aad-1"), Some("Alice Liddell")));
        assert_eq!(reply.body["roles"], json!([{"value": "Default users"}, {"value": "Administrators"}]));
        let reply = patch(app, &user, key, json!([{"op": "replace", "value": {"name.formatted": "Alice L."}}])).await;
        assert_eq!(reply.body["displayName"], "Alice L.", "{}", reply.text);
        // The work email is the userName.
        let reply = patch(app, &user, key, json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "Alice.L@acme.test"}])).await;
        assert_eq!((reply.body["userName"].as_str(), reply.body["emails"][0]["value"].as_str()), (Some("alice.l@acme.test"), Some("alice.l@acme.test")), "{}", reply.text);
        let reply = patch(app, &user, key, json!([{"op": "replace", "path": "userName", "value": "alice@acme.test"}])).await;
        assert_eq!(reply.body["userName"], "alice@acme.test");
        assert_scim_error(&patch(app, &user, key, json!([{"op": "replace", "path": "userName", "value": "bob@acme.test"}])).await, 409, Some("uniqueness"));
        // Remove with paths, filters too.
        let reply = patch(app, &user, key, json!([
            {"op": "remove", "path": "externalId"},
            {"op": "remove", "path": "roles[value eq \"Default users\"]"},
        ])).await;
        assert!(reply.body.get("externalId").is_none(), "{}", reply.text);
        assert_eq!(reply.body["roles"], json!([{"value": "Administrators"}]));
        let v1 = app.get(&format!("/v1/users/{}", w.alice.id), "acme", key).await;
        assert_eq!((v1.body["external_id"].clone(), v1.body["roles"].clone()), (Value::Null, json!(["Administrators"])));
        // Bad operations: each a 400 with its scimType; nothing changes.
        assert_scim_error(&patch(app, &user, key, json!([{"op": "copy", "path": "active", "value": true}])).await, 400, Some("invalidSyntax"));
        assert_scim_error(&patch(app, &user, key, json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])).await, 400, Some("invalidPath"));
        assert_scim_error(&patch(app, &user, key, json!([{"op": "remove"}])).await, 400, Some("noTarget"));
        assert_scim_error(&patch(app, &user, key, json!([{"op": "replace", "path": "active", "value": "maybe"}])).await, 400, Some("invalidValue"));
        assert_scim_error(&patch(app, &user, key, json!([{"op": "add", "path": "roles", "value": [{"value": "Root"}]}])).await, 400, Some("invalidValue"));
        assert_scim_error(&scim(app, Method::PATCH, &user, key, Some(json!({"Operations": []}))).await, 400, Some("invalidSyntax"));
        assert_eq!(get(app, &user, key).await.body["roles"], json!([{"value": "Administrators"}]));
    }

    async fn put_replaces_as_okta_sends_it(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let created = create(app, key, json!({"userName": "gus@acme.test", "name": {"givenName": "Gus", "familyName": "G"}, "externalId": "00uGus"})).await;
        let path = format!("{BASE}/Users/{}", id(&created));
        let put = |body: Value| scim(app, Method::PUT, &path, key, Some(body));
        let reply = put(json!({"schemas": [USER], "id": id(&created), "userName": "gus@acme.test",
            "name": {"givenName": "Gustav", "familyName": "G"}, "active": true,
            "emails": [{"value": "gus@acme.test", "type": "work", "primary": true}]})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!((reply.body["displayName"].as_str(), reply.body["externalId"].as_str()), (Some("Gustav G"), Some("00uGus")));
        let reply = put(json!({"userName": "gus@acme.test", "active": false})).await;
        assert_eq!((reply.body["active"].as_bool(), reply.body["displayName"].as_str()), (Some(false), Some("Gustav G")));
        // The same PUT again changes nothing (no 409 for an inactive user).
        assert_eq!(put(json!({"userName": "gus@acme.test", "active": false})).await.status, 200);
        let reply = put(json!({"userName": "gustav@acme.test", "active": "true"})).await;
        assert_eq!((reply.body["userName"].as_str(), reply.body["active"].as_bool()), (Some("gustav@acme.test"), Some(true)));
        assert_scim_error(&put(json!({"userName": "bob@acme.test"})).await, 409, Some("uniqueness"));
        assert_scim_error(&scim(app, Method::PUT, &format!("{BASE}/Users/{}", uuid::Uuid::now_v7()), key, Some(json!({"userName": "x@acme.test"}))).await, 404, None);
    }

    async fn delete_deactivates_and_provisioning_again_reactivates(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let bob = format!("{BASE}/Users/{}", w.bob.id);
        let reply = scim(app, Method::DELETE, &bob, key, None).await;
        assert_eq!(reply.status, 204, "{}", reply.text);
        assert_eq!(reply.text, "");
        // Bob's keys fail from the next request; SCIM no longer sees him; /v1 does.
        assert_401(&app.get("/v1/user-api-keys", "acme", &w.bob_key.1).await, "x-key", "Invalid API key");
        assert_scim_error(&get(app, &bob, key).await, 404, None);
        assert_scim_error(&scim(app, Method::DELETE, &bob, key, None).await, 404, None);
        assert_scim_error(&patch(app, &bob, key, json!([{"op": "replace", "path": "active", "value": true}])).await, 404, None);
        let path = format!("{BASE}/Users?filter={}", urlencode(r#"userName eq "bob@acme.test""#));
        assert_eq!(get(app, &path, key).await.body["totalResults"], 0);
        let v1 = app.get(&format!("/v1/users/{}", w.bob.id), "acme", key).await;
        assert_eq!(v1.body["active"], false);
        // Okta provisions him again: the same user, reactivated, keys working again.
        let again = create(app, key, json!({"userName": "Bob@acme.test", "displayName": "Bob B", "externalId": "00uBob"})).await;
        assert_eq!((id(&again), again["active"].as_bool(), again["displayName"].as_str()), (w.bob.id.clone(), Some(true), Some("Bob B")));
        assert_eq!(app.get(&format!("/v1/user-api-keys?UserId={}", w.bob.id), "acme", &w.bob_key.1).await.status, 200);
        // A user deactivated (not deleted) stays visible, and POSTing it reactivates it too.
        assert_eq!(patch(app, &bob, key, json!([{"op": "replace", "path": "active", "value": false}])).await.body["active"], false);
        assert_eq!(get(app, &bob, key).await.body["active"], false);
        assert_eq!(id(&create(app, key, json!({"userName": "bob@acme.test"})).await), w.bob.id);
        // Reactivation through /v1 brings a deleted user back to SCIM.
        assert_eq!(scim(app, Method::DELETE, &bob, key, None).await.status, 204);
        let v1 = app.call(Method::PATCH, &format!("/v1/users/{}", w.bob.id), "acme", key, Some(json!({"active": true}))).await;
        assert_eq!(v1.status, 200, "{}", v1.text);
        assert_eq!(get(app, &bob, key).await.body["active"], true);
    }

    async fn the_last_administrator_is_immutable(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let admin = format!("{BASE}/Users/{}", w.admin.id);
        assert_scim_error(&patch(app, &admin, key, json!([{"op": "Replace", "path": "active", "value": "False"}])).await, 409, Some("mutability"));
        assert_scim_error(&scim(app, Method::PUT, &admin, key, Some(json!({"userName": "admin@acme.test", "active": false}))).await, 409, Some("mutability"));
        assert_scim_error(&patch(app, &admin, key, json!([{"op": "remove", "path": "roles"}])).await, 409, Some("mutability"));
        assert_scim_error(&scim(app, Method::DELETE, &admin, key, None).await, 409, Some("mutability"));
        let groups = format!("{BASE}/Groups/administrators");
        let reply = patch(app, &groups, key, json!([
            {"op": "add", "path": "members", "value": [{"value": w.alice.id}]},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", w.admin.id)},
            {"op": "remove", "path": format!("members[value eq \"{}\"]", w.alice.id)},
        ])).await;
        assert_scim_error(&reply, 409, Some("mutability"));
        // Nothing of the refused request happened, and the admin's key still works.
        let members = get(app, &groups, key).await;
        assert_eq!(members.body["members"].as_array().unwrap().len(), 1, "{}", members.text);
        assert_eq!(app.get("/v1/users", "acme", key).await.status, 200);
    }

    async fn groups_are_the_roles(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let list = get(app, &format!("{BASE}/Groups"), key).await;
        assert_eq!(list.status, 200, "{}", list.text);
        let names: Vec<&str> = list.body["Resources"].as_array().unwrap().iter().map(|g| g["displayName"].as_str().unwrap()).collect();
        assert_eq!(names, ["Administrators", "Default users"]);
        assert_eq!(list.body["totalResults"], 2);
        let filtered = get(app, &format!("{BASE}/Groups?filter={}&excludedAttributes=members", urlencode(r#"displayName eq "Administrators""#)), key).await;
        assert_eq!(filtered.body["Resources"], json!([{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "administrators",
            "displayName": "Administrators", "meta": {"resourceType": "Group", "location": "http://localhost:8080/scim/v2/acme/Groups/administrators"}}]));
        let admins = format!("{BASE}/Groups/administrators");
        let members = |reply: &Reply| -> Vec<String> { reply.body["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect() };
        assert_eq!(members(&get(app, &admins, key).await), [w.admin.id.as_str()]);
        // Add (Entra's capitalised op), remove by filter, remove by value, replace.
        let reply = patch(app, &admins, key, json!([{"op": "Add", "path": "members", "value": [{"value": w.alice.id}, {"value": w.bob.id}]}])).await;
        assert_eq!(members(&reply), [w.admin.id.clone(), w.alice.id.clone(), w.bob.id.clone()], "{}", reply.text);
        assert_eq!(app.get(&format!("/v1/users/{}", w.alice.id), "acme", key).await.body["roles"], json!(["Administrators", "Default users"]));
        let reply = patch(app, &admins, key, json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", w.bob.id)}])).await;
        assert_eq!(members(&reply), [w.admin.id.clone(), w.alice.id.clone()]);
        let reply = patch(app, &admins, key, json!([{"op": "Remove", "path": "members", "value": [{"value": w.alice.id}]}])).await;
        assert_eq!(members(&reply), [w.admin.id.as_str()]);
        let reply = patch(app, &admins, key, json!([{"op": "replace", "path": "members", "value": [{"value": w.bob.id}, {"value": w.admin.id}]}])).await;
        assert_eq!(members(&reply), [w.admin.id.clone(), w.bob.id.clone()]);
        let defaults = format!("{BASE}/Groups/default-users");
        let reply = patch(app, &defaults, key, json!([{"op": "replace", "value": {"members": [{"value": w.alice.id}]}}])).await;
        assert_eq!(members(&reply), [w.alice.id.as_str()]);
        assert_eq!(app.get(&format!("/v1/users/{}", w.bob.id), "acme", key).await.body["roles"], json!(["Administrators"]));
        // Unknown members, renames, creations and deletions are refused.
        assert_scim_error(&patch(app, &admins, key, json!([{"op": "add", "path": "members", "value": [{"value": w.beta_admin.id}]}])).await, 400, Some("invalidValue"));
        assert_scim_error(&patch(app, &admins, key, json!([{"op": "replace", "path": "displayName", "value": "Owners"}])).await, 400, Some("mutability"));
        assert_scim_error(&post(app, &format!("{BASE}/Groups"), key, json!({"displayName": "Owners"})).await, 403, None);
        assert_scim_error(&scim(app, Method::DELETE, &admins, key, None).await, 403, None);
        assert_scim_error(&get(app, &format!("{BASE}/Groups/owners"), key).await, 404, None);
    }

    async fn authentication_and_tenant_isolation(app: &TestApp) {
        let w = World::new(app);
        let users = format!("{BASE}/Users");
        let missing = get(app, &users, "").await;
        assert_scim_error(&missing, 401, None);
        assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"keyward\""));
        // Another tenant's key, an unknown key and an unknown tenant: the same 401.
        let foreign = get(app, &users, &w.beta_key.1).await;
        assert_scim_error(&foreign, 401, None);
        let unknown_key = keyward::keys::secret::Secret::generate("kw");
        assert_eq!(get(app, &users, unknown_key.expose()).await.body, foreign.body);
        assert_eq!(get(app, "/scim/v2/nowhere/Users", w.admin_secret()).await.body, foreign.body);
        // Only Bearer: the key headers of the other dialects are not read here.
        let req = TestRequest::get().uri(&users).insert_header(("x-key", w.admin_secret()));
        assert_scim_error(&app.send(req).await, 401, None);
        // Administrators with user_management only.
        assert_scim_error(&get(app, &users, &w.alice_key.1).await, 403, None);
        let (_, no_admin_scope) = app.key(&w.acme, &w.admin, KEY_MANAGER);
        assert_scim_error(&get(app, &users, &no_admin_scope).await, 403, None);
        assert_scim_error(&get(app, &format!("{BASE}/ServiceProviderConfig"), &no_admin_scope).await, 403, None);
        // Authentication comes before the body is read.
        let req = TestRequest::post().uri(&users).insert_header(("content-type", "application/scim+json")).set_payload("{not json");
        assert_scim_error(&app.send(req).await, 401, None);
        // Each tenant sees its own users only.
        let beta = get(app, "/scim/v2/beta/Users", &w.beta_key.1).await;
        assert_eq!(user_names(&beta), ["admin@beta.test"]);
        // A pinned deployment also answers at /scim/v2, and refuses other tenants' paths.
        let pinned = app.reconfigured(|s| s.tenant = "acme".into());
        let req = |path: &str| TestRequest::get().uri(path).insert_header(("authorization", format!("Bearer {}", w.admin_secret())));
        assert_eq!(user_names(&app.send_to(pinned.clone(), req("/scim/v2/Users")).await).len(), 3);
        assert_eq!(app.send_to(pinned.clone(), req("/scim/v2/acme/Users")).await.status, 200);
        assert_scim_error(&app.send_to(pinned.clone(), req("/scim/v2/beta/Users")).await, 401, None);
        // Not pinned: /scim/v2/Users names no tenant.
        assert_scim_error(&get(app, "/scim/v2/Users", w.admin_secret()).await, 401, None);
    }

    async fn every_change_is_audited_with_the_request_id(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let reply = scim_with(app, Method::POST, &format!("{BASE}/Users"), key, Some(json!({"userName": "hal@acme.test"})), Some("okta-req-1")).await;
        assert_eq!(reply.status, 201);
        let hal = id(&reply.body);
        let path = format!("{BASE}/Users/{hal}");
        let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "displayName", "value": "Hal"}]});
        assert_eq!(scim_with(app, Method::PATCH, &path, key, Some(body), Some("entra-req-2")).await.status, 200);
        assert_eq!(scim_with(app, Method::DELETE, &path, key, None, Some("okta-req-3")).await.status, 204);
        let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": w.alice.id}]}]});
        assert_eq!(scim_with(app, Method::PATCH, &format!("{BASE}/Groups/administrators"), key, Some(body), Some("entra-req-4")).await.status, 200);
        let events = app.get("/v1/audit-events?take=1000", "acme", key).await;
        let seen: Vec<(String, String, String, String)> = events.body["events"].as_array().unwrap().iter()
            .filter(|e| e["request_id"].is_string())
            .map(|e| (e["action"].as_str().unwrap().into(), e["target_id"].as_str().unwrap().into(),
                e["request_id"].as_str().unwrap().into(), e["actor_key_id"].as_str().unwrap().into()))
            .collect();
        let admin_key = w.admin_key.0.id.clone();
        assert_eq!(seen, [
            ("user.created".into(), hal.clone(), "okta-req-1".into(), admin_key.clone()),
            ("user.updated".into(), hal.clone(), "entra-req-2".into(), admin_key.clone()),
            ("user.deactivated".into(), hal.clone(), "okta-req-3".into(), admin_key.clone()),
            ("user.updated".into(), w.alice.id.clone(), "entra-req-4".into(), admin_key.clone()),
        ]);
        // A PATCH that changes nothing records nothing.
        let same = json!([{"op": "replace", "path": "displayName", "value": "alice@acme.test"}]);
        assert_eq!(patch(app, &format!("{BASE}/Users/{}", w.alice.id), key, same).await.status, 200);
        let after = app.get("/v1/audit-events?take=1000", "acme", key).await;
        assert_eq!(after.body["events"].as_array().unwrap().len(), events.body["events"].as_array().unwrap().len());
    }

    async fn discovery_says_what_is_supported(app: &TestApp) {
        let w = World::new(app);
        let key = w.admin_secret();
        let spc = get(app, &format!("{BASE}/ServiceProviderConfig"), key).await;
        assert_eq!(spc.status, 200, "{}", spc.text);
        assert_eq!(spc.body["schemas"], json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]));
        assert_eq!(spc.body["patch"], json!({"supported": true}));
        assert_eq!(spc.body["bulk"]["supported"], false);
        assert_eq!(spc.body["filter"], json!({"supported": true, "maxResults": 200}));
        for feature in ["changePassword", "sort", "etag"] {
            assert_eq!(spc.body[feature], json!({"supported": false}), "{feature}");
        }
        assert_eq!(spc.body["authenticationSchemes"][0]["type"], "oauthbearertoken");
        let types = get(app, &format!("{BASE}/ResourceTypes"), key).await;
        let endpoints: Vec<&str> = types.body["Resources"].as_array().unwrap().iter().map(|t| t["endpoint"].as_str().unwrap()).collect();
        assert_eq!(endpoints, ["/Users", "/Groups"]);
        assert_eq!(get(app, &format!("{BASE}/ResourceTypes/User"), key).await.body["schema"], USER);
        let schemas = get(app, &format!("{BASE}/Schemas"), key).await;
        assert_eq!(schemas.body["totalResults"], 2);
        let user = get(app, &format!("{BASE}/Schemas/{USER}"), key).await;
        let names: Vec<&str> = user.body["attributes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["userName", "name", "displayName", "emails", "active", "roles", "groups"]);
        assert_eq!(user.body["attributes"][0]["uniqueness"], "server");
        assert_scim_error(&get(app, &format!("{BASE}/Schemas/urn:nope"), key).await, 404, None);
        // What is not offered: 501 in SCIM's error format.
        for path in ["/.search", "/Users/.search", "/Groups/.search", "/Bulk"] {
            assert_scim_error(&post(app, &format!("{BASE}{path}"), key, json!({})).await, 501, None);
        }
        // Unknown routes and methods under /scim speak SCIM too.
        assert_scim_error(&get(app, &format!("{BASE}/Nope"), key).await, 404, None);
        assert_scim_error(&scim(app, Method::DELETE, &format!("{BASE}/Users"), key, None).await, 405, None);
    }
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
