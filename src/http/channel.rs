//! The body of a Syncano channel create (`POST channels/`) or update (`PUT`
//! / `PATCH channels/{name}/`), read as DRF's `ChannelSerializer` reads it
//! (`legacy-apis.md` §1.1, §8).
//!
//! Every field error is collected, in declaration order, into one
//! [`ApiError::Validation`], as DRF reports them. Unknown fields are ignored
//! (the Python client's `save()` sends back the whole object, `links`
//! included). `name` and `type` are read-only after create: an update
//! ignores them, so a `PATCH` that repeats the name (as the Python client's
//! does) is fine. Uniqueness and whether `group` exists are the broker's
//! checks.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::render::{ChannelType, Permission};
use crate::http::syncano::JsonMap;
use crate::limits;

/// Whether a body creates a channel or updates one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelWrite {
    /// `POST channels/`: `name` is required, `type` may be set.
    Create,
    /// `PUT` or `PATCH channels/{name}/`: `name` and `type` are ignored.
    /// (With no required writable field left, a full and a partial update
    /// read the same.)
    Update,
}

/// The channel fields a body sets; `None` means "not given": the default on
/// create (empty description, `default` type, no group, `none`
/// permissions, `custom_publish` false), unchanged on update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelInput {
    /// The name, lower-cased (create only).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The type (create only).
    pub kind: Option<ChannelType>,
    /// The group: `Some(None)` clears it.
    pub group: Option<Option<u64>>,
    /// Access of the group's members.
    pub group_permissions: Option<Permission>,
    /// Access of every other user.
    pub other_permissions: Option<Permission>,
    /// Whether `publish/` is allowed.
    pub custom_publish: Option<bool>,
}

const REQUIRED: &str = "This field is required.";
const NULL: &str = "This field may not be null.";
const BLANK: &str = "This field may not be blank.";
const NOT_A_STRING: &str = "Not a valid string.";
const SLUG: &str = "Enter a valid 'slug' consisting of letters, numbers, underscores or hyphens.";

/// Reads a channel body.
///
/// # Errors
/// [`ApiError::Validation`] with every field's first error.
pub fn channel_params(body: &JsonMap, write: ChannelWrite) -> Result<ChannelInput, ApiError> {
    let mut errors = Vec::new();
    let mut record = |field: &str, r: Result<(), String>| {
        if let Err(msg) = r {
            errors.push((field.to_owned(), msg));
        }
    };
    let mut input = ChannelInput::default();
    if write == ChannelWrite::Create {
        record("name", name(body.get("name")).map(|v| input.name = Some(v)));
    }
    if let Some(v) = body.get("description") {
        record(
            "description",
            description(v).map(|d| input.description = Some(d)),
        );
    }
    if let (ChannelWrite::Create, Some(v)) = (write, body.get("type")) {
        record("type", channel_type(v).map(|t| input.kind = Some(t)));
    }
    if let Some(v) = body.get("group") {
        record("group", group(v).map(|g| input.group = Some(g)));
    }
    for (field, slot) in [
        ("group_permissions", &mut input.group_permissions),
        ("other_permissions", &mut input.other_permissions),
    ] {
        if let Some(v) = body.get(field) {
            record(field, permission(v).map(|p| *slot = Some(p)));
        }
    }
    if let Some(v) = body.get("custom_publish") {
        record(
            "custom_publish",
            boolean(v).map(|b| input.custom_publish = Some(b)),
        );
    }
    if errors.is_empty() {
        Ok(input)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// A string field, with DRF's null / type / blank errors.
fn string(v: &Value, allow_blank: bool) -> Result<String, String> {
    let s = match v {
        Value::Null => return Err(NULL.into()),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(NOT_A_STRING.into()),
    };
    if s.trim().is_empty() && !allow_blank {
        return Err(BLANK.into());
    }
    Ok(s)
}

fn too_long(max: usize) -> String {
    format!("Ensure this field has no more than {max} characters.")
}

/// The name: required, a slug of at most [`limits::CHANNEL_NAME_LEN_MAX`]
/// characters, lower-cased.
fn name(v: Option<&Value>) -> Result<String, String> {
    let s = string(v.ok_or(REQUIRED)?, false)?;
    let s = s.trim();
    if s.chars().count() > limits::CHANNEL_NAME_LEN_MAX {
        return Err(too_long(limits::CHANNEL_NAME_LEN_MAX));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SLUG.into());
    }
    Ok(s.to_ascii_lowercase())
}

/// The description: any string (blank allowed) within
/// [`limits::CHANNEL_DESCRIPTION_LEN_MAX`] bytes.
fn description(v: &Value) -> Result<String, String> {
    let s = string(v, true)?;
    if s.len() > limits::CHANNEL_DESCRIPTION_LEN_MAX {
        return Err(too_long(limits::CHANNEL_DESCRIPTION_LEN_MAX));
    }
    Ok(s)
}

/// DRF's `"<input>" is not a valid choice.`, with the input as Python
/// would print it.
fn not_a_choice(v: &Value) -> String {
    format!("\"{}\" is not a valid choice.", python_str(v))
}

/// `str(value)` of the Python value a JSON value parses to.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn channel_type(v: &Value) -> Result<ChannelType, String> {
    match v.as_str() {
        Some("default") => Ok(ChannelType::Default),
        Some("separate_rooms") => Ok(ChannelType::SeparateRooms),
        _ if v.is_null() => Err(NULL.into()),
        _ => Err(not_a_choice(v)),
    }
}

fn permission(v: &Value) -> Result<Permission, String> {
    match v.as_str() {
        Some("none") => Ok(Permission::None),
        Some("subscribe") => Ok(Permission::Subscribe),
        Some("publish") => Ok(Permission::Publish),
        _ if v.is_null() => Err(NULL.into()),
        _ => Err(not_a_choice(v)),
    }
}

/// The group: a primary key (a whole number, or a string of digits, as
/// DRF's `PrimaryKeyRelatedField` takes), or null to clear it.
fn group(v: &Value) -> Result<Option<u64>, String> {
    let type_name = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => match n.as_u64() {
            Some(id) => return Ok(Some(id)),
            None => "float",
        },
        Value::String(s) => match s.trim().parse::<u64>() {
            Ok(id) => return Ok(Some(id)),
            Err(_) => "str",
        },
        Value::Bool(_) => "bool",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    Err(format!(
        "Incorrect type. Expected pk value, received {type_name}."
    ))
}

/// DRF's `BooleanField`: JSON booleans, 0 / 1, and the usual words.
fn boolean(v: &Value) -> Result<bool, String> {
    const TRUE: [&str; 11] = [
        "t", "T", "y", "Y", "yes", "YES", "true", "True", "TRUE", "on", "1",
    ];
    const FALSE: [&str; 11] = [
        "f", "F", "n", "N", "no", "NO", "false", "False", "FALSE", "off", "0",
    ];
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::String(s) if TRUE.contains(&s.as_str()) => Ok(true),
        Value::String(s) if FALSE.contains(&s.as_str()) => Ok(false),
        Value::Null => Err(NULL.into()),
        other => Err(format!("\"{}\" is not a valid boolean.", python_str(other))),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn body(json: &str) -> JsonMap {
        serde_json::from_str(json).unwrap()
    }

    fn errors(r: Result<ChannelInput, ApiError>) -> String {
        String::from_utf8(r.unwrap_err().body()).unwrap()
    }

    #[test]
    fn a_full_create_reads_every_field() {
        let b = body(
            r#"{"name":"Chat-1","description":"d","type":"separate_rooms","group":"5",
               "group_permissions":"publish","other_permissions":"subscribe",
               "custom_publish":"true","links":{},"created_at":"x"}"#,
        );
        assert_eq!(
            channel_params(&b, ChannelWrite::Create),
            Ok(ChannelInput {
                name: Some("chat-1".into()),
                description: Some("d".into()),
                kind: Some(ChannelType::SeparateRooms),
                group: Some(Some(5)),
                group_permissions: Some(Permission::Publish),
                other_permissions: Some(Permission::Subscribe),
                custom_publish: Some(true),
            })
        );
    }

    #[test]
    fn a_minimal_create_leaves_defaults_to_the_broker() {
        assert_eq!(
            channel_params(&body(r#"{"name":"c"}"#), ChannelWrite::Create),
            Ok(ChannelInput {
                name: Some("c".into()),
                ..ChannelInput::default()
            })
        );
    }

    #[test]
    fn updates_ignore_name_and_type() {
        let b = body(r#"{"name":"other","type":"nonsense","custom_publish":false,"group":null}"#);
        assert_eq!(
            channel_params(&b, ChannelWrite::Update),
            Ok(ChannelInput {
                group: Some(None),
                custom_publish: Some(false),
                ..ChannelInput::default()
            })
        );
    }

    #[test]
    fn field_errors_are_drf_messages_in_declaration_order() {
        let table: &[(&str, &str)] = &[
            ("{}", r#"{"name":["This field is required."]}"#),
            (
                r#"{"name":""}"#,
                r#"{"name":["This field may not be blank."]}"#,
            ),
            (
                r#"{"name":null}"#,
                r#"{"name":["This field may not be null."]}"#,
            ),
            (r#"{"name":["x"]}"#, r#"{"name":["Not a valid string."]}"#),
            (
                r#"{"name":"a b"}"#,
                r#"{"name":["Enter a valid 'slug' consisting of letters, numbers, underscores or hyphens."]}"#,
            ),
            (
                r#"{"name":"c","type":"x","group":"g","other_permissions":"all","custom_publish":"maybe"}"#,
                concat!(
                    r#"{"type":["\"x\" is not a valid choice."],"#,
                    r#""group":["Incorrect type. Expected pk value, received str."],"#,
                    r#""other_permissions":["\"all\" is not a valid choice."],"#,
                    r#""custom_publish":["\"maybe\" is not a valid boolean."]}"#
                ),
            ),
            (
                r#"{"name":"c","custom_publish":2,"group":true}"#,
                concat!(
                    r#"{"group":["Incorrect type. Expected pk value, received bool."],"#,
                    r#""custom_publish":["\"2\" is not a valid boolean."]}"#
                ),
            ),
        ];
        for (b, want) in table {
            assert_eq!(
                errors(channel_params(&body(b), ChannelWrite::Create)),
                *want,
                "{b}"
            );
        }
        let long = format!(r#"{{"name":"{}"}}"#, "a".repeat(65));
        assert_eq!(
            errors(channel_params(&body(&long), ChannelWrite::Create)),
            r#"{"name":["Ensure this field has no more than 64 characters."]}"#
        );
        let ok = format!(r#"{{"name":"{}"}}"#, "a".repeat(64));
        assert!(channel_params(&body(&ok), ChannelWrite::Create).is_ok());
    }

    #[test]
    fn booleans_read_like_drf() {
        for (v, want) in [
            ("true", Ok(true)),
            ("1", Ok(true)),
            ("\"yes\"", Ok(true)),
            ("\"0\"", Ok(false)),
            ("0", Ok(false)),
            ("\"False\"", Ok(false)),
            ("null", Err(NULL.to_owned())),
            ("\"nah\"", Err("\"nah\" is not a valid boolean.".to_owned())),
        ] {
            let value: Value = serde_json::from_str(v).unwrap();
            assert_eq!(boolean(&value), want, "{v}");
        }
    }
}
