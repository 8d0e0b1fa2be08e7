//! PATCH (RFC 7644 3.5.2) applied to a resource's JSON representation; the
//! resource handlers then read the result as they read a PUT body.
//!
//! Identity providers' habits are accepted: operation names in any case
//! (Entra's `Replace`), a `value` object without `path` whose members are
//! themselves paths (`"name.givenName"`), and `remove` of `members` with a
//! `value` listing the members to remove.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, CompareOp, Filter, PatchPath};
use super::PATCH_SCHEMA;
use crate::api::input::JsonObject;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: Op,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

fn syntax(message: &str) -> Error {
    Error::invalid("body", message)
}

/// Reads a PatchOp body.
pub fn parse(body: &JsonObject) -> Result<Vec<Operation>, Error> {
    if let Some(schemas) = body.get("schemas") {
        let named = schemas
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == Some(PATCH_SCHEMA)));
        if !named {
            return Err(syntax(&format!("schemas must name {PATCH_SCHEMA}.")));
        }
    }
    let operations = body
        .get("Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| syntax("Operations must be a non-empty array."))?;
    operations.iter().map(operation).collect()
}

fn operation(value: &Value) -> Result<Operation, Error> {
    let object = JsonObject(
        value
            .as_object()
            .cloned()
            .ok_or_else(|| syntax("Each operation must be an object."))?,
    );
    let op = match object
        .get("op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
    {
        Some(op) if op == "add" => Op::Add,
        Some(op) if op == "remove" => Op::Remove,
        Some(op) if op == "replace" => Op::Replace,
        _ => return Err(syntax("op must be add, remove or replace.")),
    };
    let path = match object.get("path") {
        None => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(
            filter::parse_path(p)
                .map_err(|e| Error::invalid("path", &format!("path {p:?}: {}.", e.0)))?,
        ),
        Some(_) => return Err(Error::invalid("path", "path must be a string.")),
    };
    let value = object.get("value").cloned();
    match (op, &path, &value) {
        (Op::Remove, None, _) => Err(Error::invalid("noTarget", "remove needs a path.")),
        (Op::Add | Op::Replace, _, None) => Err(syntax("add and replace need a value.")),
        (Op::Add | Op::Replace, None, Some(v)) if !v.is_object() => Err(syntax(
            "Without a path, the value must be an object of attributes.",
        )),
        _ => Ok(Operation { op, path, value }),
    }
}

/// Applies `operations` in order to `doc`, a resource's JSON object.
pub fn apply(doc: &mut Value, operations: &[Operation]) -> Result<(), Error> {
    for operation in operations {
        match (&operation.path, &operation.value) {
            (None, Some(Value::Object(members))) => {
                for (key, value) in members {
                    let path = filter::parse_path(key).map_err(|e| {
                        Error::invalid("path", &format!("attribute {key:?}: {}.", e.0))
                    })?;
                    at(doc, operation.op, &path, Some(value))?;
                }
            }
            (Some(path), value) => at(doc, operation.op, path, value.as_ref())?,
            (None, _) => return Err(Error::invalid("noTarget", "The operation has no target.")),
        }
    }
    Ok(())
}

/// The object an attribute lives in: the resource, or its extension's object.
fn container<'d>(doc: &'d mut Value, attr: &AttrPath) -> Result<&'d mut Map<String, Value>, Error> {
    let core = attr
        .urn
        .as_deref()
        .is_none_or(|urn| urn.starts_with("urn:ietf:params:scim:schemas:core:2.0:"));
    let root = doc
        .as_object_mut()
        .ok_or_else(|| Error::Internal("a SCIM resource is not an object".into()))?;
    if core {
        return Ok(root);
    }
    let urn = attr.urn.clone().unwrap_or_default();
    let key = key_of(root, &urn);
    let extension = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !extension.is_object() {
        *extension = Value::Object(Map::new());
    }
    extension
        .as_object_mut()
        .ok_or_else(|| Error::Internal("an extension is not an object".into()))
}

/// The key `name` has in `map` (matched without regard to case), else `name`.
fn key_of(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn at(doc: &mut Value, op: Op, path: &PatchPath, value: Option<&Value>) -> Result<(), Error> {
    let map = container(doc, &path.attr)?;
    let key = key_of(map, &path.attr.name);
    match &path.filter {
        Some(filter) => with_filter(map, &key, op, filter, path.sub.as_deref(), value),
        None => match &path.attr.sub {
            Some(sub) => sub_attribute(map, &key, op, sub, value),
            None => attribute(map, key, op, value),
        },
    }
}

/// `attr`, whole.
fn attribute(
    map: &mut Map<String, Value>,
    key: String,
    op: Op,
    value: Option<&Value>,
) -> Result<(), Error> {
    let Some(value) = value else {
        map.remove(&key);
        return Ok(());
    };
    let existing = map.get_mut(&key);
    match (op, existing, value) {
        // Remove with a value: those values of a multi-valued attribute (`members`).
        (Op::Remove, Some(Value::Array(items)), Value::Array(gone)) => {
            items.retain(|item| !gone.iter().any(|g| same_value(item, g)));
        }
        (Op::Remove, _, _) => {
            map.remove(&key);
        }
        (Op::Add, Some(Value::Array(items)), new) => {
            let new = match new {
                Value::Array(new) => new.clone(),
                one => vec![one.clone()],
            };
            for item in new {
                if !items.iter().any(|have| same_value(have, &item)) {
                    items.push(item);
                }
            }
        }
        (Op::Add | Op::Replace, Some(Value::Object(have)), Value::Object(new)) => {
            for (k, v) in new {
                let k = key_of(have, k);
                have.insert(k, v.clone());
            }
        }
        (_, _, new) => {
            map.insert(key, new.clone());
        }
    }
    Ok(())
}

/// `attr.sub` of a complex attribute (or of each value of a multi-valued one).
fn sub_attribute(
    map: &mut Map<String, Value>,
    key: &str,
    op: Op,
    sub: &str,
    value: Option<&Value>,
) -> Result<(), Error> {
    let target = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    let set = |object: &mut Map<String, Value>| {
        let k = key_of(object, sub);
        match (op, value) {
            (Op::Remove, _) | (_, None) => {
                object.remove(&k);
            }
            (_, Some(v)) => {
                object.insert(k, v.clone());
            }
        }
    };
    match target {
        Value::Array(items) => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(set),
        Value::Object(object) => set(object),
        other => {
            let mut object = Map::new();
            set(&mut object);
            *other = Value::Object(object);
        }
    }
    Ok(())
}

/// `attr[filter]` or `attr[filter].sub`: the values of a multi-valued attribute that match.
fn with_filter(
    map: &mut Map<String, Value>,
    key: &str,
    op: Op,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<&Value>,
) -> Result<(), Error> {
    let items = match map.get_mut(key) {
        Some(Value::Array(items)) => items,
        _ if op == Op::Add => {
            map.insert(key.to_owned(), Value::Array(Vec::new()));
            match map.get_mut(key) {
                Some(Value::Array(items)) => items,
                _ => return Err(Error::Internal("inserted array vanished".into())),
            }
        }
        _ => {
            return Err(Error::invalid(
                "noTarget",
                &format!("No value of {key} matches the filter."),
            ))
        }
    };
    let matching: Vec<usize> = (0..items.len())
        .filter(|i| filter::matches(filter, &items[*i]))
        .collect();
    if op == Op::Remove {
        if matching.is_empty() {
            return Err(Error::invalid(
                "noTarget",
                &format!("No value of {key} matches the filter."),
            ));
        }
        match sub {
            None => {
                let mut i = 0;
                items.retain(|_| {
                    i += 1;
                    !matching.contains(&(i - 1))
                });
            }
            Some(sub) => {
                for i in matching {
                    if let Some(object) = items[i].as_object_mut() {
                        let k = key_of(object, sub);
                        object.remove(&k);
                    }
                }
            }
        }
        return Ok(());
    }
    let value = value.cloned().unwrap_or(Value::Null);
    if matching.is_empty() {
        if op == Op::Replace {
            return Err(Error::invalid(
                "noTarget",
                &format!("No value of {key} matches the filter."),
            ));
        }
        // Add to a value that is not there yet: make it from the filter's
        // equalities (`emails[type eq "work"].value`).
        let mut new = Map::new();
        equalities(filter, &mut new);
        match (sub, value) {
            (Some(sub), v) => {
                new.insert(sub.to_owned(), v);
            }
            (None, Value::Object(members)) => new.extend(members),
            (None, _) => {}
        }
        items.push(Value::Object(new));
        return Ok(());
    }
    for i in matching {
        let item = &mut items[i];
        match (sub, &value, item.as_object_mut()) {
            (Some(sub), v, Some(object)) => {
                let k = key_of(object, sub);
                object.insert(k, v.clone());
            }
            (None, Value::Object(members), Some(object)) => {
                for (k, v) in members {
                    let k = key_of(object, k);
                    object.insert(k, v.clone());
                }
            }
            (_, v, _) => *item = v.clone(),
        }
    }
    Ok(())
}

/// The `attr eq value` conditions of an `and` chain, as members.
fn equalities(filter: &Filter, into: &mut Map<String, Value>) {
    match filter {
        Filter::Compare(path, CompareOp::Eq, value) if path.sub.is_none() => {
            into.insert(path.name.clone(), value.clone());
        }
        Filter::And(a, b) => {
            equalities(a, into);
            equalities(b, into);
        }
        _ => {}
    }
}

/// Two values of a multi-valued attribute are the same when their `value`s
/// are (or they are equal, for values without one).
fn same_value(a: &Value, b: &Value) -> bool {
    match (filter::get(a, "value"), filter::get(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(doc: Value, body: Value) -> Result<Value, Error> {
        let Value::Object(body) = body else {
            panic!("body")
        };
        let ops = parse(&JsonObject(body))?;
        let mut doc = doc;
        apply(&mut doc, &ops)?;
        Ok(doc)
    }

    fn ops(ops: Value) -> Value {
        json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
    }

    fn user() -> Value {
        json!({"userName": "a@x.test", "displayName": "A", "active": true,
            "name": {"formatted": "A"},
            "emails": [{"value": "a@x.test", "type": "work", "primary": true}],
            "roles": [{"value": "Default users"}]})
    }

    #[test]
    fn replace_with_and_without_path_in_any_case() {
        let doc = patch(
            user(),
            ops(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .unwrap();
        assert_eq!(doc["active"], json!("False"));
        let doc = patch(
            user(),
            ops(json!([{"op": "REPLACE", "value": {"displayName": "B", "name.givenName": "G"}}])),
        )
        .unwrap();
        assert_eq!(doc["displayName"], "B");
        assert_eq!(doc["name"], json!({"formatted": "A", "givenName": "G"}));
        let doc = patch(
            user(),
            ops(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.test"}])),
        )
        .unwrap();
        assert_eq!(doc["emails"][0]["value"], "b@x.test");
    }

    #[test]
    fn add_appends_and_creates() {
        let doc = patch(
            user(),
            ops(json!([{"op": "add", "path": "roles", "value": [{"value": "Administrators"}, {"value": "Default users"}]}])),
        )
        .unwrap();
        assert_eq!(
            doc["roles"],
            json!([{"value": "Default users"}, {"value": "Administrators"}])
        );
        let doc = patch(
            json!({"emails": []}),
            ops(json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "c@x.test"}])),
        )
        .unwrap();
        assert_eq!(
            doc["emails"],
            json!([{"type": "work", "value": "c@x.test"}])
        );
        let doc = patch(
            user(),
            ops(json!([{"op": "add", "value": {"externalId": "e1"}}])),
        )
        .unwrap();
        assert_eq!(doc["externalId"], "e1");
    }

    #[test]
    fn remove_by_path_filter_and_value() {
        let group = json!({"displayName": "G", "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}]});
        let doc = patch(
            group.clone(),
            ops(json!([{"op": "remove", "path": "members[value eq \"2\"]"}])),
        )
        .unwrap();
        assert_eq!(doc["members"], json!([{"value": "1"}, {"value": "3"}]));
        let doc = patch(
            group.clone(),
            ops(json!([{"op": "Remove", "path": "members", "value": [{"value": "1"}, {"value": "3"}]}])),
        )
        .unwrap();
        assert_eq!(doc["members"], json!([{"value": "2"}]));
        let doc = patch(group, ops(json!([{"op": "remove", "path": "members"}]))).unwrap();
        assert!(doc.get("members").is_none());
        let doc = patch(
            user(),
            ops(json!([{"op": "remove", "path": "name.formatted"}])),
        )
        .unwrap();
        assert_eq!(doc["name"], json!({}));
    }

    #[test]
    fn bad_operations_are_400s_with_their_scim_type() {
        let field = |r: Result<Value, Error>| match r {
            Err(Error::Invalid(fields)) => fields.keys().next().cloned().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(patch(user(), json!({"Operations": []}))), "body");
        assert_eq!(
            field(patch(
                user(),
                ops(json!([{"op": "move", "path": "a", "value": 1}]))
            )),
            "body"
        );
        assert_eq!(
            field(patch(user(), ops(json!([{"op": "remove"}])))),
            "noTarget"
        );
        assert_eq!(
            field(patch(
                user(),
                ops(json!([{"op": "add", "path": "a[", "value": 1}]))
            )),
            "path"
        );
        assert_eq!(
            field(patch(user(), ops(json!([{"op": "replace", "value": 1}])))),
            "body"
        );
        assert_eq!(
            field(patch(
                user(),
                ops(
                    json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x"}])
                )
            )),
            "noTarget"
        );
        assert_eq!(
            field(patch(
                user(),
                json!({"schemas": ["x"], "Operations": [{"op": "add", "value": {}}]})
            )),
            "body"
        );
    }
}
