//! The admin console at `/console`: served without a key, from the binary,
//! with a strict policy and fingerprinted, long-cached assets. (Its flows are
//! driven in a real browser by `tests/browser/console.test.mjs`.)

use actix_web::test;

use crate::common::*;

const CSP: &str = keyward::api::console::CONSOLE_CSP;

async fn get(app: &TestApp, path: &str) -> Reply {
    app.send(test::TestRequest::get().uri(path)).await
}

/// The `/console/assets/...` paths a text links to (`"..."` or `'...'`), and
/// the sibling modules it imports (`from "./x.js"`).
fn linked_assets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (marker, base) in [("\"/console/assets/", ""), ("from \"./", "")] {
        let mut rest = text;
        while let Some(at) = rest.find(marker) {
            let tail = &rest[at + marker.len()..];
            let name = tail.split('"').next().unwrap_or_default();
            found.push(format!("/console/assets/{base}{name}"));
            rest = tail;
        }
    }
    found
}

#[actix_rt::test]
async fn the_page_needs_no_key_and_carries_a_strict_policy() {
    let app = TestApp::sqlite();
    for path in ["/console", "/console/"] {
        let page = get(&app, path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("content-security-policy"), Some(CSP));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("cache-control"), Some("no-cache"));
        assert!(page.text.contains("<title>keyward console</title>"));
    }
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(CSP.contains(directive), "{directive}");
    }
    assert!(!CSP.contains("unsafe"), "{CSP}");
}

#[actix_rt::test]
async fn the_page_has_no_inline_code_and_names_no_other_origin() {
    let app = TestApp::sqlite();
    let page = get(&app, "/console").await;
    let scripts: Vec<&str> = page.text.split("<script").skip(1).collect();
    assert!(!scripts.is_empty());
    for script in scripts {
        let tag = script.split('>').next().unwrap();
        assert!(
            tag.contains(" src=\"/console/assets/"),
            "inline script: {tag}"
        );
    }
    assert!(!page.text.contains("<style"));
    assert!(!page.text.contains(" style="));
    assert!(!page.text.contains("http://") && !page.text.contains("https://"));
}

#[actix_rt::test]
async fn assets_are_fingerprinted_and_cached_for_a_year() {
    let app = TestApp::sqlite();
    let page = get(&app, "/console").await;
    let mut queue = linked_assets(&page.text);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let asset = get(&app, &path).await;
        assert_eq!(asset.status, 200, "{path}");
        let file = path.rsplit('/').next().unwrap();
        let parts: Vec<&str> = file.split('.').collect();
        assert_eq!(parts.len(), 3, "{file} carries no fingerprint");
        assert!(parts[1].len() == 10 && parts[1].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            asset.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(asset.header("content-security-policy"), Some(CSP));
        assert_eq!(asset.header("x-content-type-options"), Some("nosniff"));
        let expected = match parts[2] {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected asset type {other}"),
        };
        assert_eq!(asset.header("content-type"), Some(expected), "{path}");
        if parts[2] == "js" {
            // API values are rendered as text, never parsed as markup.
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!asset.text.contains(sink), "{path} uses {sink}");
            }
            // The key is kept in sessionStorage only.
            for store in ["localStorage.", "document.cookie", "indexedDB"] {
                assert!(!asset.text.contains(store), "{path} uses {store}");
            }
        }
        queue.extend(linked_assets(&asset.text));
    }
    let names: Vec<&str> = seen.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    for stem in [
        "app.",
        "api.",
        "dom.",
        "keys.",
        "users.",
        "audit.",
        "overview.",
        "style.",
        "icon.",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(stem)),
            "{stem} not linked: {names:?}"
        );
    }
}

#[actix_rt::test]
async fn unknown_and_unfingerprinted_assets_are_404() {
    let app = TestApp::sqlite();
    for path in [
        "/console/assets/app.js",
        "/console/assets/nope.0123456789.js",
        "/console/nope",
    ] {
        let reply = get(&app, path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json")
        );
    }
}

#[actix_rt::test]
async fn the_config_says_whether_the_tenant_is_pinned() {
    let app = TestApp::sqlite();
    let open = get(&app, "/console/config.json").await;
    assert_eq!(open.status, 200);
    assert_eq!(open.body, serde_json::json!({ "pinned_tenant": false }));
    assert_eq!(open.header("cache-control"), Some("no-store"));
    assert_eq!(open.header("content-security-policy"), Some(CSP));

    let pinned = app.reconfigured(|s| s.tenant = "acme".to_owned());
    let reply = app
        .send_to(pinned, test::TestRequest::get().uri("/console/config.json"))
        .await;
    // Whether, not which: the page asks only for the key.
    assert_eq!(reply.body, serde_json::json!({ "pinned_tenant": true }));
}

#[actix_rt::test]
async fn the_console_is_not_part_of_the_api_description() {
    let app = TestApp::sqlite();
    let doc = get(&app, "/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(!doc.text.contains("/console"));
}
