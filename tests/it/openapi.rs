//! The API's description (`/openapi.json`) and its interactive docs (`/docs`).

use actix_web::http::Method;
use actix_web::test;
use serde_json::Value;

use crate::common::*;

/// Every operation of both dialects and the probes, as `(method, path)`.
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/v1/user-api-keys"),
    ("post", "/v1/user-api-keys"),
    ("delete", "/v1/user-api-keys"),
    ("get", "/v1/user-api-keys/{id}"),
    ("patch", "/v1/user-api-keys/{id}"),
    ("delete", "/v1/user-api-keys/{id}"),
    ("post", "/v1/user-api-keys/{id}/rotate"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("get", "/v1/users/{id}"),
    ("patch", "/v1/users/{id}"),
    ("delete", "/v1/users/{id}"),
    ("get", "/v1/audit-events"),
    ("get", "/v1/usage"),
    ("get", "/v1/webhooks"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("post", "/v1/webhooks/{id}/rotate-secret"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("post", "/v1/webhooks/{id}/test"),
    ("get", "/v1/auth"),
    ("head", "/v1/auth"),
    ("post", "/v1/auth"),
    ("put", "/v1/auth"),
    ("patch", "/v1/auth"),
    ("delete", "/v1/auth"),
    ("options", "/v1/auth"),
    ("get", "/user/api-keys"),
    ("post", "/user/api-keys"),
    ("delete", "/user/api-keys/{key_or_hash}"),
    ("get", "/user/stats"),
    ("get", "/user/export"),
    ("get", "/liveness"),
    ("get", "/readiness"),
];

const PROBES: &[&str] = &["/liveness", "/readiness"];

async fn document(app: &TestApp) -> Value {
    let reply = app
        .send(test::TestRequest::get().uri("/openapi.json"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.body
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    op
}

fn parameter_names(op: &Value) -> Vec<&str> {
    op["parameters"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn the_document_is_openapi_3_1_and_lists_every_operation() {
    let app = TestApp::sqlite();
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1"), "{version}");

    for (method, path) in OPERATIONS {
        let op = operation(&doc, method, path);
        assert!(op["operationId"].is_string(), "{method} {path}");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no response"
        );
    }
    // Nothing else is documented, and every operation id is unique.
    let mut documented = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(documented.len(), OPERATIONS.len(), "{documented:?}");
}

#[actix_rt::test]
async fn query_parameters_are_documented() {
    let app = TestApp::sqlite();
    let doc = document(&app).await;
    let expected: &[(&str, &str, &[&str])] = &[
        (
            "get",
            "/v1/user-api-keys",
            &[
                "UserId",
                "take",
                "start_with",
                "state",
                "expires_before",
                "last_used_before",
            ],
        ),
        ("get", "/v1/users", &["take", "start_with"]),
        (
            "get",
            "/v1/audit-events",
            &["user_id", "take", "start_with"],
        ),
        (
            "get",
            "/v1/usage",
            &["from", "to", "granularity", "key_id", "user_id"],
        ),
        ("post", "/user/api-keys", &["expiry", "perms", "label"]),
        ("get", "/v1/auth", &["scope"]),
        ("head", "/v1/auth", &["scope"]),
    ];
    for (method, path, names) in expected {
        let documented = parameter_names(operation(&doc, method, path));
        for name in *names {
            assert!(documented.contains(name), "{method} {path}: {name}");
        }
    }
    let take = operation(&doc, "get", "/v1/user-api-keys")["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "take")
        .unwrap();
    assert_eq!(take["in"], "query");
    assert_eq!(take["schema"]["minimum"], 1);
    assert_eq!(take["schema"]["maximum"], 1000);
}

#[actix_rt::test]
async fn credentials_are_security_schemes_of_every_authenticated_operation() {
    let app = TestApp::sqlite();
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    for (scheme, header) in [
        ("tenant", "tenant"),
        ("x_key", "x-key"),
        ("x_api_key", "x-api-key"),
    ] {
        assert_eq!(schemes[scheme]["type"], "apiKey", "{scheme}");
        assert_eq!(schemes[scheme]["in"], "header", "{scheme}");
        assert_eq!(schemes[scheme]["name"], header, "{scheme}");
    }
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    for (method, path) in OPERATIONS {
        let op = operation(&doc, method, path);
        if PROBES.contains(path) {
            assert!(op.get("security").is_none(), "{method} {path}");
            continue;
        }
        let alternatives = op["security"].as_array().unwrap();
        let mut keys: Vec<&str> = Vec::new();
        for requirement in alternatives {
            let names: Vec<&str> = requirement
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(names.contains(&"tenant"), "{method} {path}: {names:?}");
            keys.extend(names.into_iter().filter(|n| *n != "tenant"));
        }
        keys.sort_unstable();
        assert_eq!(keys, ["bearer", "x_api_key", "x_key"], "{method} {path}");
        assert!(op["responses"]["401"].is_object(), "{method} {path}");
    }
}

#[actix_rt::test]
async fn errors_are_documented_in_each_dialect() {
    let app = TestApp::sqlite();
    let doc = document(&app).await;
    for (method, path) in OPERATIONS {
        let op = operation(&doc, method, path);
        for (status, response) in op["responses"].as_object().unwrap() {
            assert!(
                response["headers"]["x-request-id"].is_object(),
                "{method} {path} {status}"
            );
            if status.parse::<u16>().unwrap() < 400 {
                continue;
            }
            let (content_type, schema) = if path.starts_with("/user/") {
                ("application/json", "#/components/schemas/ErrorEnvelope")
            } else {
                (
                    "application/problem+json",
                    "#/components/schemas/ProblemDetails",
                )
            };
            assert_eq!(
                response["content"][content_type]["schema"]["$ref"], schema,
                "{method} {path} {status}"
            );
        }
    }
    assert!(doc["components"]["schemas"]["ProblemDetails"].is_object());
    assert!(doc["components"]["schemas"]["ErrorEnvelope"].is_object());
    let delete = operation(&doc, "delete", "/v1/user-api-keys/{id}");
    assert!(delete["responses"]["400"].is_object());
    let readiness = operation(&doc, "get", "/readiness");
    assert!(readiness["responses"]["503"]["content"]["application/problem+json"].is_object());
}

/// The document and the router agree: every documented operation is routed
/// (an authenticated one answers 401 without credentials, a probe 200).
#[actix_rt::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::sqlite();
    let doc = document(&app).await;
    let id = "0193a5b0-0000-7000-8000-000000000000";
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path.replace("{id}", id).replace("{key_or_hash}", id);
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app
                .send(
                    test::TestRequest::default()
                        .method(method.clone())
                        .uri(&uri),
                )
                .await;
            let expected = if PROBES.contains(&path.as_str()) {
                200
            } else {
                401
            };
            assert_eq!(reply.status, expected, "{method} {uri}: {}", reply.text);
        }
    }
}

/// A method a documented path does not take is 405, whatever the path (as for
/// every route: never a 404 that would deny the path exists).
#[actix_rt::test]
async fn undocumented_methods_of_documented_paths_are_405() {
    let app = TestApp::sqlite();
    let doc = document(&app).await;
    let id = "0193a5b0-0000-7000-8000-000000000000";
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = path.replace("{id}", id).replace("{key_or_hash}", id);
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app
                .send(
                    test::TestRequest::default()
                        .method(method.clone())
                        .uri(&uri),
                )
                .await;
            assert_eq!(reply.status, 405, "{method} {uri}: {}", reply.text);
        }
    }
}

/// The `href` and `src` values of an HTML page.
fn links(html: &str) -> Vec<&str> {
    let mut links = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').unwrap();
            links.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    links
}

#[actix_rt::test]
async fn docs_are_served_from_the_binary() {
    let app = TestApp::sqlite();
    for uri in ["/docs", "/docs/"] {
        let reply = app.send(test::TestRequest::get().uri(uri)).await;
        assert_eq!(reply.status, 200, "{uri}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let html = &reply.text;
        assert!(html.contains("swagger-ui"), "{html}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );

        let assets = links(html);
        assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
        assert!(assets.iter().any(|a| a.ends_with(".css")), "{assets:?}");
        for asset in assets {
            // Local: a path on this server, never another host.
            assert!(
                asset.starts_with('/') && !asset.starts_with("//"),
                "{asset}"
            );
            let reply = app.send(test::TestRequest::get().uri(asset)).await;
            assert_eq!(reply.status, 200, "{asset}");
        }
    }
    // The UI loads this server's document.
    let init = app
        .send(test::TestRequest::get().uri("/docs/swagger-initializer.js"))
        .await;
    assert_eq!(init.status, 200);
    assert!(init.text.contains("\"/openapi.json\""), "{}", init.text);
    assert!(!init.text.contains("petstore"), "{}", init.text);

    let missing = app
        .send(test::TestRequest::get().uri("/docs/no-such-file.js"))
        .await;
    assert_404(&missing);
}
