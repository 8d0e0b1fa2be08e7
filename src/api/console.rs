//! The admin console at `/console`: a single-page app in plain HTML, CSS and
//! ES modules from the `console/` folder, compiled into the binary. It is a
//! client of the public API and nothing else; these routes need no key (the
//! page signs in with the API's own headers) and are not in `/openapi.json`.
//!
//! Caching: every asset is served under a name carrying a hash of its content
//! (`app.3f2a9c01d4.js`) and may be cached for a year; the page itself
//! (`index.html`) is revalidated on every load, so a new binary's assets are
//! picked up at once. An asset's hash covers the fingerprinted names of the
//! modules it imports, so a change anywhere renames everything that leads to it.
//!
//! Every console response forbids inline script and style, framing, and any
//! origin but this one (`CONSOLE_CSP`).

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::api::resource("/console").route(web::get().to(index)))
        .service(crate::api::resource("/console/config.json").route(web::get().to(console_config)))
        .service(crate::api::resource("/console/assets/{file}").route(web::get().to(asset)));
}

/// The policy of every console response: this origin only, no inline code.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("../../console/index.html");

/// The assets, each after the ones it references (imports, links), so that
/// its hash can cover their fingerprinted names.
const SOURCES: &[(&str, &str, &str)] = &[
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../../console/assets/icon.svg"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../console/assets/style.css"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/dom.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/api.js"),
    ),
    (
        "limits.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/limits.js"),
    ),
    (
        "usage.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/usage.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/overview.js"),
    ),
    (
        "keys.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/keys.js"),
    ),
    (
        "users.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/users.js"),
    ),
    (
        "audit.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/audit.js"),
    ),
    (
        "webhooks.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/webhooks.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/assets/app.js"),
    ),
];

struct Asset {
    content_type: &'static str,
    body: String,
}

struct Bundle {
    index: String,
    /// By fingerprinted file name.
    assets: HashMap<String, Asset>,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(|| bundle(SOURCES, INDEX_HTML));

/// Fingerprints `sources` in order and points every reference (in later
/// assets and in `index`) at the fingerprinted names.
fn bundle(sources: &[(&str, &'static str, &str)], index: &str) -> Bundle {
    let mut renamed: Vec<(String, String)> = Vec::new();
    let mut assets = HashMap::new();
    for (name, content_type, text) in sources {
        let body = relink(text, &renamed);
        let name_hashed = fingerprinted(name, &body);
        renamed.push(((*name).to_owned(), name_hashed.clone()));
        assets.insert(name_hashed, Asset { content_type, body });
    }
    Bundle {
        index: relink(index, &renamed),
        assets,
    }
}

/// Rewrites quoted references to `name` (`"./name"` from a sibling module,
/// `"/console/assets/name"` from the page) to its fingerprinted name.
fn relink(text: &str, renamed: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (name, hashed) in renamed {
        for base in ["./", "/console/assets/"] {
            for quote in ['"', '\''] {
                text = text.replace(
                    &format!("{quote}{base}{name}{quote}"),
                    &format!("{quote}{base}{hashed}{quote}"),
                );
            }
        }
    }
    text
}

/// `app.js` -> `app.<10 hex digits of SHA-256(body)>.js`.
fn fingerprinted(name: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{name}.{hash}"),
    }
}

/// The headers every console response carries.
fn console_response(cache: &'static str) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Ok();
    res.insert_header((
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    ))
    .insert_header((X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
    .insert_header((X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
    .insert_header((REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
    .insert_header((CACHE_CONTROL, HeaderValue::from_static(cache)));
    res
}

async fn index() -> HttpResponse {
    console_response("no-cache")
        .content_type("text/html; charset=utf-8")
        .body(BUNDLE.index.as_str())
}

/// What the page must know before signing in.
#[derive(Serialize)]
struct ConsoleConfig {
    /// The deployment serves one tenant: the sign-in form asks only for a key.
    pinned_tenant: bool,
}

async fn console_config(state: web::Data<AppState>) -> HttpResponse {
    console_response("no-store").json(ConsoleConfig {
        pinned_tenant: state.settings.pinned_tenant().is_some(),
    })
}

async fn asset(req: HttpRequest) -> Result<HttpResponse, Error> {
    let name = req.match_info().query("file");
    let asset = BUNDLE.assets.get(name).ok_or(Error::NotFound)?;
    Ok(console_response("public, max-age=31536000, immutable")
        .content_type(asset.content_type)
        .body(asset.body.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_fingerprints_of_what_they_name() {
        let sources: &[(&str, &'static str, &str)] = &[
            ("a.js", "text/javascript", "export const a = 1;"),
            ("b.js", "text/javascript", "import { a } from \"./a.js\";"),
        ];
        let page = "<script type=\"module\" src=\"/console/assets/b.js\"></script>";
        let one = bundle(sources, page);
        let a = fingerprinted("a.js", "export const a = 1;");
        let b = fingerprinted("b.js", &format!("import {{ a }} from \"./{a}\";"));
        assert_eq!(
            one.assets[&b].body,
            format!("import {{ a }} from \"./{a}\";")
        );
        assert_eq!(
            one.index,
            format!("<script type=\"module\" src=\"/console/assets/{b}\"></script>")
        );

        // Changing the leaf renames the module that imports it.
        let changed: &[(&str, &'static str, &str)] = &[
            ("a.js", "text/javascript", "export const a = 2;"),
            sources[1],
        ];
        let two = bundle(changed, page);
        assert!(!two.assets.contains_key(&b));
        assert_eq!(two.assets.len(), 2);
    }

    #[test]
    fn every_asset_is_linked_by_its_fingerprinted_name() {
        for (name, _, _) in SOURCES {
            let (stem, ext) = name.rsplit_once('.').unwrap();
            let linked = BUNDLE.assets.keys().any(|hashed| {
                hashed.starts_with(&format!("{stem}."))
                    && hashed.ends_with(&format!(".{ext}"))
                    && (BUNDLE.index.contains(hashed.as_str())
                        || BUNDLE
                            .assets
                            .values()
                            .any(|a| a.body.contains(hashed.as_str())))
            });
            assert!(linked, "{name} is not referenced by its fingerprinted name");
        }
        for asset in BUNDLE.assets.values() {
            for import in asset.body.lines().filter(|l| l.contains(" from \"./")) {
                assert!(
                    BUNDLE.assets.keys().any(|k| import.contains(k.as_str())),
                    "unresolved import: {import}"
                );
            }
        }
    }
}
