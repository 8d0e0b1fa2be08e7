//! Reading request input without actix's own extractors, so every failure is
//! one of our errors (rendered in the dialect) and names the offending field.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::{AppState, MAX_BODY_BYTES};

/// A request body that is a JSON object. A missing `Content-Type` is read as
/// JSON (curl's `-d` aside, scripts often omit it); any other type is 415.
/// Read one with [`Body`].
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl JsonObject {
    /// The member named `name`, matched without regard to ASCII case, as
    /// ASP.NET-era clients may send `Name` or `UserId`. `null` counts as absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.get_or_null(name).filter(|v| !v.is_null())
    }

    /// Like [`JsonObject::get`], but `null` is returned as sent (where
    /// `null` means something: `credits: null` is unlimited).
    pub fn get_or_null(&self, name: &str) -> Option<&Value> {
        self.0.get(name).or_else(|| {
            let normalize = |s: &str| s.replace('_', "").to_ascii_lowercase();
            let wanted = normalize(name);
            self.0
                .iter()
                .find(|(k, _)| normalize(k) == wanted)
                .map(|(_, v)| v)
        })
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A request body, not yet read. Handlers take it after the [`Caller`]
/// and read it once authentication has succeeded, so the body of a caller who
/// never authenticated is never parsed, whatever order extractors finish in.
///
/// [`Caller`]: crate::access::Caller
pub struct Body {
    payload: actix_web::dev::Payload,
    /// A declared `Content-Type` that is not JSON.
    wrong_type: bool,
    /// How long the whole body may take to arrive.
    timeout: Option<std::time::Duration>,
}

impl FromRequest for Body {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let wrong_type = req
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| !is_json(ct.to_str().unwrap_or_default()));
        let timeout = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.settings.request_timeout());
        std::future::ready(Ok(Self {
            payload: payload.take(),
            wrong_type,
            timeout,
        }))
    }
}

impl Body {
    /// The body as a JSON object; an empty body is a 400.
    pub async fn object(self) -> Result<JsonObject, Error> {
        self.read(false).await
    }

    /// The body as a JSON object, an empty body reading as `{}` (for bodies
    /// whose every member is optional).
    pub async fn optional_object(self) -> Result<JsonObject, Error> {
        self.read(true).await
    }

    /// The whole body, at most [`MAX_BODY_BYTES`].
    async fn bytes(mut self) -> Result<web::BytesMut, Error> {
        let mut bytes = web::BytesMut::new();
        while let Some(chunk) = self.payload.next().await {
            let chunk =
                chunk.map_err(|_| Error::invalid("body", "The request body could not be read."))?;
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::PayloadTooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn read(self, empty_is_object: bool) -> Result<JsonObject, Error> {
        let wrong_type = self.wrong_type;
        // A client that stops sending mid-body must not hold a connection.
        let bytes = match self.timeout {
            Some(limit) => actix_web::rt::time::timeout(limit, self.bytes())
                .await
                .map_err(|_| Error::RequestTimeout)??,
            None => self.bytes().await?,
        };
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if empty && empty_is_object {
            return Ok(JsonObject(Map::new()));
        }
        if wrong_type {
            return Err(Error::UnsupportedMediaType);
        }
        if empty {
            return Err(Error::invalid(
                "body",
                "A JSON object is required in the request body.",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(Error::invalid(
                "body",
                "The request body must be a JSON object.",
            )),
            Err(e) => Err(Error::invalid(
                "body",
                &format!(
                    "The request body is not valid JSON (line {}, column {}).",
                    e.line(),
                    e.column()
                ),
            )),
        }
    }
}

/// Query-string parameters, looked up without regard to ASCII case
/// (`UserId`, `userid` and `userId` are one parameter); the first occurrence wins.
#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: &str) -> Self {
        if query.bytes().any(|b| b == b'%' || b == b'+') {
            return Self(
                form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect(),
            );
        }
        // Nothing to decode (nearly always): the pairs as they stand, split
        // as `form_urlencoded` splits them.
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_owned(), value.to_owned())
            });
        Self(pairs.collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The path segment `name` as a canonical UUID; empty when it is not one, so
/// it names nothing and the core answers as for an unknown id (after its own
/// authorization checks).
pub fn path_id(req: &HttpRequest, name: &str) -> String {
    parse_uuid(req.match_info().query(name)).unwrap_or_default()
}

/// A UUID in canonical (lower-case, hyphenated) form, if `s` is one.
pub fn parse_uuid(s: &str) -> Option<String> {
    uuid::Uuid::try_parse(s.trim())
        .ok()
        .map(|id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn queries_without_escapes_split_as_form_urlencoded_splits_them() {
        for query in [
            "",
            "a=1",
            "a=1&&b=2&",
            "&a",
            "a==b&c=",
            "UserId=0193a5a1-7c2e-7d40-9b1e-3f6a2c8d9e01&take=5",
            "a=%41+b&c=d",
            "caf\u{e9}=th\u{e9}",
        ] {
            let decoded: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(QueryParams::parse(query).0, decoded, "{query}");
        }
    }

    #[test]
    fn query_names_ignore_case() {
        let q = QueryParams::parse("userid=a&UserId=b&take=5");
        assert_eq!(q.get("UserId"), Some("a"));
        assert_eq!(q.get("TAKE"), Some("5"));
        assert_eq!(q.get("start_with"), None);
    }

    #[test]
    fn body_members_ignore_case_and_underscores() {
        let body =
            JsonObject(serde_json::from_str(r#"{"UserId":"u","Name":"n","x":null}"#).unwrap());
        assert_eq!(body.get("user_id"), Some(&Value::from("u")));
        assert_eq!(body.get("name"), Some(&Value::from("n")));
        assert_eq!(body.get("x"), None);
    }
}
