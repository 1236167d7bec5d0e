//! Request bodies of the Channelstream server API, validated as
//! Channelstream 0.7.1's marshmallow 2 schemas validate them: unknown keys
//! dropped, every error collected into `{field: [message, ...]}` (nested for
//! lists and objects) and answered 422.

use serde_json::{json, Map, Value};

/// Validation errors: `{field: [messages]}` or nested objects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Errors(pub Map<String, Value>);

impl Errors {
    fn add(&mut self, field: &str, message: &str) {
        let slot = self.0.entry(field.to_string()).or_insert_with(|| json!([]));
        if let Value::Array(list) = slot {
            list.push(json!(message));
        }
    }
    fn nest(&mut self, field: &str, inner: Map<String, Value>) {
        if !inner.is_empty() {
            self.0.insert(field.to_string(), Value::Object(inner));
        }
    }
    /// True when nothing was wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Ok(v)` when nothing was wrong.
    ///
    /// # Errors
    /// The collected errors.
    pub fn into_result<T>(self, v: T) -> Result<T, Value> {
        if self.0.is_empty() {
            Ok(v)
        } else {
            Err(Value::Object(self.0))
        }
    }
}

/// The error of a required key that is absent.
pub const MISSING: &str = "Missing data for required field.";
/// The error of an explicit `null` where none is allowed.
pub const NULL: &str = "Field may not be null.";

/// A string of 1..=`max` characters.
fn str_field(v: &Value, max: usize) -> Result<String, String> {
    match v {
        Value::Null => Err(NULL.into()),
        Value::String(s) if (1..=max).contains(&s.chars().count()) => Ok(s.clone()),
        Value::String(_) => Err(format!("Length must be between 1 and {max}.")),
        _ => Err("Not a valid string.".into()),
    }
}

/// Reads a string field: `Ok(None)` when absent.
pub fn opt_str(body: &Map<String, Value>, key: &str, max: usize, e: &mut Errors) -> Option<String> {
    let v = body.get(key)?;
    str_field(v, max).map_err(|m| e.add(key, &m)).ok()
}

/// Reads a required string field.
pub fn req_str(body: &Map<String, Value>, key: &str, max: usize, e: &mut Errors) -> Option<String> {
    if !body.contains_key(key) {
        e.add(key, MISSING);
        return None;
    }
    opt_str(body, key, max, e)
}

/// A uuid in the forms Python's `uuid.UUID` reads (hyphens, braces),
/// canonical lower-case.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim_start_matches('{').trim_end_matches('}');
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads a uuid field: `Ok(None)` when absent.
pub fn opt_uuid(body: &Map<String, Value>, key: &str, e: &mut Errors) -> Option<[u8; 16]> {
    match body.get(key)? {
        Value::Null => {
            e.add(key, NULL);
            None
        }
        Value::String(s) => parse_uuid(s).or_else(|| {
            e.add(key, "Not a valid UUID.");
            None
        }),
        _ => {
            e.add(key, "Not a valid UUID.");
            None
        }
    }
}

/// Reads a list of strings of 1..=`max` characters (`[]` when absent).
pub fn str_list(body: &Map<String, Value>, key: &str, max: usize, e: &mut Errors) -> Vec<String> {
    match body.get(key) {
        None => Vec::new(),
        Some(Value::Null) => {
            e.add(key, NULL);
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut inner = Map::new();
            let mut out = Vec::new();
            for (i, v) in items.iter().enumerate() {
                match str_field(v, max) {
                    Ok(s) => out.push(s),
                    Err(m) => {
                        inner.insert(i.to_string(), json!([m]));
                    }
                }
            }
            e.nest(key, inner);
            out
        }
        Some(_) => {
            e.add(key, "Not a valid list.");
            Vec::new()
        }
    }
}

/// A boolean as marshmallow 2 reads one.
fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "1" | "t" | "T" | "true" | "True" | "TRUE" => Some(true),
            "0" | "f" | "F" | "false" | "False" | "FALSE" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Reads a boolean field (`default` when absent).
pub fn bool_field(body: &Map<String, Value>, key: &str, default: bool, e: &mut Errors) -> bool {
    match body.get(key) {
        None => default,
        Some(Value::Null) => {
            e.add(key, NULL);
            default
        }
        Some(v) => bool_value(v).unwrap_or_else(|| {
            e.add(key, "Not a valid boolean.");
            default
        }),
    }
}

/// A user state: an object of strings, numbers, booleans and nulls.
pub fn state_field(body: &Map<String, Value>, key: &str, e: &mut Errors) -> Map<String, Value> {
    match body.get(key) {
        None => Map::new(),
        Some(Value::Object(m)) => {
            let mut inner = Map::new();
            for (k, v) in m {
                if matches!(v, Value::Array(_) | Value::Object(_)) {
                    inner.insert(
                        k.clone(),
                        json!({"value": ["Value is not type of string, integer, boolean or float."]}),
                    );
                }
            }
            e.nest(key, inner);
            m.clone()
        }
        Some(Value::Null) => {
            e.add(key, NULL);
            Map::new()
        }
        Some(_) => {
            e.add(key, "Not a valid mapping type.");
            Map::new()
        }
    }
}

/// A channel's configuration (`ChannelConfigSchema`): every key its
/// default when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChannelConfig {
    /// Emit `presence` joined / parted.
    pub notify_presence: bool,
    /// Keep messages in the channel's history.
    pub store_history: bool,
    /// How many messages history shows (0: all).
    pub history_size: u64,
    /// Presence events carry the channel's user list.
    pub broadcast_presence_with_user_lists: bool,
    /// Emit `user_state_change`.
    pub notify_state: bool,
    /// Keep events for catch-up.
    pub store_frames: bool,
}

impl Default for ChannelConfig {
    fn default() -> ChannelConfig {
        ChannelConfig {
            notify_presence: false,
            store_history: false,
            history_size: 10,
            broadcast_presence_with_user_lists: false,
            notify_state: false,
            store_frames: true,
        }
    }
}

impl ChannelConfig {
    /// Reads a config object (missing keys: defaults).
    ///
    /// # Errors
    /// The field errors.
    pub fn parse(v: &Value) -> Result<ChannelConfig, Map<String, Value>> {
        let Value::Object(m) = v else {
            let mut e = Map::new();
            e.insert("_schema".into(), json!(["Invalid input type."]));
            return Err(e);
        };
        let mut e = Errors::default();
        let d = ChannelConfig::default();
        let mut c = ChannelConfig {
            notify_presence: bool_field(m, "notify_presence", d.notify_presence, &mut e),
            store_history: bool_field(m, "store_history", d.store_history, &mut e),
            history_size: d.history_size,
            broadcast_presence_with_user_lists: bool_field(
                m,
                "broadcast_presence_with_user_lists",
                d.broadcast_presence_with_user_lists,
                &mut e,
            ),
            notify_state: bool_field(m, "notify_state", d.notify_state, &mut e),
            store_frames: bool_field(m, "store_frames", d.store_frames, &mut e),
        };
        match m.get("history_size") {
            None => {}
            Some(Value::Null) => e.add("history_size", NULL),
            Some(v) => match int_value(v) {
                Some(n) if n < 0 => e.add("history_size", "Must be at least 0."),
                Some(n) => c.history_size = n.unsigned_abs(),
                None => e.add("history_size", "Not a valid integer."),
            },
        }
        if e.is_empty() {
            Ok(c)
        } else {
            Err(e.0)
        }
    }

    /// The `settings` object of a channel's info.
    pub fn to_json(self) -> Value {
        json!({
            "notify_presence": self.notify_presence,
            "store_history": self.store_history,
            "history_size": self.history_size,
            "broadcast_presence_with_user_lists": self.broadcast_presence_with_user_lists,
            "notify_state": self.notify_state,
            "store_frames": self.store_frames,
        })
    }
}

/// An integer as Python's `int()` reads JSON values (floats truncated,
/// numeric strings, booleans).
fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// `channel_configs`: channel name → config.
pub fn configs_field(
    body: &Map<String, Value>,
    key: &str,
    e: &mut Errors,
) -> Vec<(String, ChannelConfig)> {
    match body.get(key) {
        None => Vec::new(),
        Some(Value::Object(m)) => {
            let mut inner = Map::new();
            let mut out = Vec::new();
            for (name, v) in m {
                match ChannelConfig::parse(v) {
                    Ok(c) => out.push((name.clone(), c)),
                    Err(errs) => {
                        inner.insert(name.clone(), json!({ "value": errs }));
                    }
                }
            }
            e.nest(key, inner);
            out
        }
        Some(Value::Null) => {
            e.add(key, NULL);
            Vec::new()
        }
        Some(_) => {
            e.add(key, "Not a valid mapping type.");
            Vec::new()
        }
    }
}

/// What a channel-info answer holds (`InfoResolutionSchema`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoAsk {
    /// Include each channel's history.
    pub include_history: bool,
    /// Include each channel's users.
    pub include_users: bool,
    /// Only these channels (`None`: every one).
    pub channels: Option<Vec<String>>,
    /// Leave these channels out.
    pub exclude_channels: Vec<String>,
    /// Users' public state rather than their whole state.
    pub return_public_state: bool,
}

impl Default for InfoAsk {
    fn default() -> InfoAsk {
        InfoAsk {
            include_history: true,
            include_users: true,
            channels: None,
            exclude_channels: Vec::new(),
            return_public_state: false,
        }
    }
}

/// Reads an `info` object.
pub fn info_field(body: &Map<String, Value>, key: &str, e: &mut Errors) -> InfoAsk {
    let m = match body.get(key) {
        None => return InfoAsk::default(),
        Some(Value::Object(m)) => m,
        Some(Value::Null) => {
            e.add(key, NULL);
            return InfoAsk::default();
        }
        Some(_) => {
            e.add(key, "Not a valid mapping type.");
            return InfoAsk::default();
        }
    };
    let mut inner = Errors::default();
    let ask = InfoAsk {
        include_history: bool_field(m, "include_history", true, &mut inner),
        include_users: bool_field(m, "include_users", true, &mut inner),
        channels: m
            .contains_key("channels")
            .then(|| str_list(m, "channels", 256, &mut inner)),
        exclude_channels: str_list(m, "exclude_channels", 256, &mut inner),
        return_public_state: bool_field(m, "return_public_state", false, &mut inner),
    };
    let _ = bool_field(m, "include_connections", false, &mut inner);
    e.nest(key, inner.0);
    ask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn errors_read_like_marshmallow() {
        let mut e = Errors::default();
        let b = obj(json!({"u": "", "l": ["ok", 3, ""], "b": "yes", "n": null}));
        assert_eq!(req_str(&b, "missing", 512, &mut e), None);
        assert_eq!(opt_str(&b, "u", 512, &mut e), None);
        assert_eq!(str_list(&b, "l", 256, &mut e), vec!["ok"]);
        assert!(bool_field(&b, "b", true, &mut e));
        assert_eq!(opt_str(&b, "n", 5, &mut e), None);
        assert_eq!(
            Value::Object(e.0),
            json!({
                "missing": ["Missing data for required field."],
                "u": ["Length must be between 1 and 512."],
                "l": {"1": ["Not a valid string."], "2": ["Length must be between 1 and 256."]},
                "b": ["Not a valid boolean."],
                "n": ["Field may not be null."],
            })
        );
        assert_eq!(
            ChannelConfig::parse(&json!({"history_size": -1})).unwrap_err(),
            obj(json!({"history_size": ["Must be at least 0."]}))
        );
        let c =
            ChannelConfig::parse(&json!({"notify_state": "True", "history_size": "5"})).unwrap();
        assert!(c.notify_state && c.store_frames && !c.store_history && c.history_size == 5);
        assert_eq!(
            parse_uuid("{0646B957-E427-4F92-BB5B-BBA32F0B2561}"),
            parse_uuid("0646b957e4274f92bb5bbba32f0b2561")
        );
        assert_eq!(
            parse_uuid("urn:uuid:0646b957-e427-4f92-bb5b-bba32f0b2561"),
            None
        );
    }
}
