//! SCIM's filter and PATCH path grammar (RFC 7644 3.4.2.2 and 3.5.2), parsed
//! by hand: the grammar is small (attribute paths, nine operators, `and`, `or`,
//! `not`, parentheses, value filters in brackets), and the crates that parse
//! it are either unmaintained or bring a whole SCIM server model with them.
//! Keywords and attribute names are matched without regard to case.

use serde_json::Value;

/// `[urn ":"] name ["." sub]`, names as written (compare with [`AttrPath::is`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Whether this path is `name` (and `sub`, when given), without regard to case.
    pub fn is(&self, name: &str, sub: Option<&str>) -> bool {
        self.name.eq_ignore_ascii_case(name)
            && match (sub, &self.sub) {
                (None, None) => true,
                (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                _ => false,
            }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, CompareOp, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some value of the multi-valued `attr` matches `filter`,
    /// whose paths are relative to that value.
    ValuePath(AttrPath, Box<Filter>),
}

/// A PATCH operation's `path`: an attribute, optionally narrowed to the values
/// matching a filter, optionally then one sub-attribute of those.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// After a filter: `emails[type eq "work"].value`.
    pub sub: Option<String>,
}

/// What is wrong with a filter or path; the message names the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

pub fn parse_filter(text: &str) -> Result<Filter, SyntaxError> {
    let mut p = Parser { text, pos: 0 };
    let filter = p.or_expr()?;
    p.skip_space();
    if p.pos != text.len() {
        return Err(p.error("unexpected text"));
    }
    Ok(filter)
}

pub fn parse_path(text: &str) -> Result<PatchPath, SyntaxError> {
    let mut p = Parser { text, pos: 0 };
    p.skip_space();
    let attr = p.attr_path()?;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if p.eat("[") {
        path.filter = Some(p.or_expr()?);
        p.skip_space();
        if !p.eat("]") {
            return Err(p.error("expected ]"));
        }
        if p.eat(".") {
            let sub = p.name();
            if sub.is_empty() {
                return Err(p.error("expected a sub-attribute"));
            }
            path.sub = Some(sub.to_owned());
        }
    }
    p.skip_space();
    if p.pos != text.len() {
        return Err(p.error("unexpected text"));
    }
    Ok(path)
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn error(&self, what: &str) -> SyntaxError {
        SyntaxError(format!("{what} at character {}", self.pos + 1))
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// The keyword `word` (any case), followed by white space, `(` or the end.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        let matches = rest.len() >= word.len()
            && rest.is_char_boundary(word.len())
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && rest[word.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(' || c == ')' || c == ']');
        if matches {
            self.pos += word.len();
        }
        matches
    }

    fn or_expr(&mut self) -> Result<Filter, SyntaxError> {
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, SyntaxError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, SyntaxError> {
        self.skip_space();
        if self.keyword("not") {
            self.skip_space();
            if !self.eat("(") {
                return Err(self.error("expected ( after not"));
            }
            let inner = self.group_rest()?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.eat("(") {
            return self.group_rest();
        }
        self.attr_expr()
    }

    /// After `(`: a filter and its `)`.
    fn group_rest(&mut self) -> Result<Filter, SyntaxError> {
        let inner = self.or_expr()?;
        self.skip_space();
        if !self.eat(")") {
            return Err(self.error("expected )"));
        }
        Ok(inner)
    }

    fn attr_expr(&mut self) -> Result<Filter, SyntaxError> {
        let attr = self.attr_path()?;
        if self.eat("[") {
            let inner = self.or_expr()?;
            self.skip_space();
            if !self.eat("]") {
                return Err(self.error("expected ]"));
            }
            return Ok(Filter::ValuePath(attr, Box::new(inner)));
        }
        if self.keyword("pr") {
            return Ok(Filter::Present(attr));
        }
        self.skip_space();
        let op = match self.name().to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return Err(self.error("expected an operator")),
        };
        self.skip_space();
        let value = self.value()?;
        Ok(Filter::Compare(attr, op, value))
    }

    /// A run of attribute-name characters (and `:` and `.`, for URNs and sub-attributes).
    fn name(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_$:.".contains(c)))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn attr_path(&mut self) -> Result<AttrPath, SyntaxError> {
        self.skip_space();
        let start = self.pos;
        let raw = self.name();
        // A URN ends at its last colon; its version ("2.0") has a dot in it.
        let (urn, local) = match raw.rfind(':') {
            Some(i) => (Some(raw[..i].to_owned()), &raw[i + 1..]),
            None => (None, raw),
        };
        let (name, sub) = match local.split_once('.') {
            Some((name, sub)) => (name, Some(sub.to_owned())),
            None => (local, None),
        };
        let valid = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_$".contains(c))
        };
        if !valid(name) || sub.as_deref().is_some_and(|s| !valid(s)) {
            self.pos = start;
            return Err(self.error("expected an attribute name"));
        }
        Ok(AttrPath {
            urn,
            name: name.to_owned(),
            sub,
        })
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        let rest = self.rest();
        if rest.starts_with('"') {
            let mut escaped = false;
            for (i, c) in rest.char_indices().skip(1) {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        let value = serde_json::from_str(&rest[..=i])
                            .map_err(|_| self.error("malformed string"))?;
                        self.pos += i + 1;
                        return Ok(value);
                    }
                    _ => {}
                }
            }
            return Err(self.error("unterminated string"));
        }
        for (word, value) in [
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("null", Value::Null),
        ] {
            if self.keyword(word) {
                return Ok(value);
            }
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
            .unwrap_or(rest.len());
        match serde_json::from_str::<serde_json::Number>(&rest[..len]) {
            Ok(n) if len > 0 => {
                self.pos += len;
                Ok(Value::Number(n))
            }
            _ => Err(self.error("expected a value")),
        }
    }
}

/// Whether the JSON resource (or value of a multi-valued attribute)
/// `resource` matches `filter`. Strings compare without regard to case; a
/// multi-valued attribute matches when one of its values does.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(a) => !matches(a, resource),
        Filter::Present(path) => values_at(resource, path).iter().any(|v| {
            !v.is_null() && v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())
        }),
        Filter::Compare(path, op, want) => values_at(resource, path)
            .iter()
            .any(|have| compare(have, *op, want)),
        Filter::ValuePath(path, inner) => match get(resource, &path.name) {
            Some(Value::Array(items)) => items.iter().any(|item| matches(inner, item)),
            Some(item) => matches(inner, item),
            None => false,
        },
    }
}

/// The member `name` of `object`, without regard to case.
pub fn get<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values `path` names in `resource`; a multi-valued attribute gives each
/// of its values (or each one's sub-attribute).
fn values_at<'v>(resource: &'v Value, path: &AttrPath) -> Vec<&'v Value> {
    let Some(top) = get(resource, &path.name) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    match &path.sub {
        None => items,
        Some(sub) => items.into_iter().filter_map(|v| get(v, sub)).collect(),
    }
}

fn compare(have: &Value, op: CompareOp, want: &Value) -> bool {
    let lower = |v: &Value| v.as_str().map(str::to_lowercase);
    match (have, want) {
        (Value::String(_), Value::String(_)) => {
            let (Some(h), Some(w)) = (lower(have), lower(want)) else {
                return false;
            };
            match op {
                CompareOp::Eq => h == w,
                CompareOp::Ne => h != w,
                CompareOp::Co => h.contains(&w),
                CompareOp::Sw => h.starts_with(&w),
                CompareOp::Ew => h.ends_with(&w),
                CompareOp::Gt => h > w,
                CompareOp::Ge => h >= w,
                CompareOp::Lt => h < w,
                CompareOp::Le => h <= w,
            }
        }
        _ => match op {
            CompareOp::Eq => have == want,
            CompareOp::Ne => have != want,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(name: &str) -> AttrPath {
        AttrPath {
            urn: None,
            name: name.to_owned(),
            sub: None,
        }
    }

    fn eq(name: &str, value: &str) -> Filter {
        Filter::Compare(path(name), CompareOp::Eq, json!(value))
    }

    #[test]
    fn comparisons_and_presence() {
        assert_eq!(
            parse_filter(r#"userName eq "bjensen@example.com""#),
            Ok(eq("userName", "bjensen@example.com"))
        );
        // Operators and keywords in any case; values with escapes.
        assert_eq!(
            parse_filter(r#"  externalId EQ "a \"b\" \\ c"  "#),
            Ok(eq("externalId", r#"a "b" \ c"#))
        );
        assert_eq!(parse_filter("title pr"), Ok(Filter::Present(path("title"))));
        assert_eq!(
            parse_filter("active eq TRUE"),
            Ok(Filter::Compare(path("active"), CompareOp::Eq, json!(true)))
        );
        assert_eq!(
            parse_filter("x ge 12.5"),
            Ok(Filter::Compare(path("x"), CompareOp::Ge, json!(12.5)))
        );
        assert_eq!(
            parse_filter("x ne null"),
            Ok(Filter::Compare(path("x"), CompareOp::Ne, Value::Null))
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let f = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        assert_eq!(
            f,
            Filter::Or(
                Box::new(eq("a", "1")),
                Box::new(Filter::And(Box::new(eq("b", "2")), Box::new(eq("c", "3"))))
            )
        );
        let f = parse_filter(r#"(a eq "1" or b eq "2") and not (c eq "3")"#).unwrap();
        assert_eq!(
            f,
            Filter::And(
                Box::new(Filter::Or(Box::new(eq("a", "1")), Box::new(eq("b", "2")))),
                Box::new(Filter::Not(Box::new(eq("c", "3"))))
            )
        );
    }

    #[test]
    fn urns_sub_attributes_and_value_paths() {
        let f = parse_filter(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "J""#)
            .unwrap();
        let Filter::Compare(p, CompareOp::Sw, _) = f else {
            panic!("{f:?}")
        };
        assert_eq!(
            p.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:User")
        );
        assert!(p.is("NAME", Some("givenname")));
        let f = parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
        assert!(matches!(f, Filter::ValuePath(ref p, _) if p.is("emails", None)));
        let f = parse_filter(r#"emails.value eq "a@b.c""#).unwrap();
        assert!(matches!(f, Filter::Compare(ref p, _, _) if p.is("emails", Some("value"))));
    }

    #[test]
    fn patch_paths() {
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert!(p.attr.is("emails", None));
        assert_eq!(p.filter, Some(eq("type", "work")));
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = parse_path("name.familyName").unwrap();
        assert!(p.attr.is("name", Some("familyName")) && p.filter.is_none());
        let p = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(p.filter, Some(eq("value", "2819c223")));
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName eq "x"#,
            r#"userName xx "x""#,
            r#"userName eq "x" and"#,
            r#"(userName eq "x""#,
            r#"not userName eq "x""#,
            r#"emails[type eq "work""#,
            r#"userName eq "x" )"#,
            "1abc eq 1",
            "a eq 1e",
            "é eq 1",
            r#"a eq "\u12""#,
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "emails[", "emails[type eq 1].", "a b", "[x eq 1]"] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_json_resources() {
        let group = json!({"id": "g1", "displayName": "Administrators",
            "members": [{"value": "u1"}, {"value": "u2"}]});
        let yes = |f: &str| matches(&parse_filter(f).unwrap(), &group);
        assert!(yes(r#"displayName eq "administrators""#));
        assert!(yes(r#"members[value eq "u2"]"#));
        assert!(yes(r#"members.value eq "u1" and id eq "G1""#));
        assert!(!yes(r#"members[value eq "u3"]"#));
        assert!(yes("members pr"));
        assert!(!yes("externalId pr"));
        assert!(yes(r#"not (displayName sw "Def")"#));
        assert!(yes(r#"displayName ew "TORS" or id eq "x""#));
    }
}
