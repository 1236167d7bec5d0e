//! Channelstream's message API bodies (`POST|PATCH|DELETE /message`):
//! validation as its schemas do it, the answer that echoes them, and the
//! records they become in the log.
//!
//! A message is stored as a record with content type JSON whose payload is
//! `{"user", "message", "timestamp"}` (the keys the sender gave), its uuid
//! in the record's uuid field, `pm_users` / `exclude_users` as the record's
//! targeting, and `no_history` as a live-only record. An edit is an edit
//! record whose payload holds the keys it changes and `edited`; a deletion
//! a remove record.

use serde_json::{json, Map, Value};

use super::schema::{bool_field, opt_str, opt_uuid, req_str, str_list, Errors, MISSING, NULL};
use super::state::{naive_iso, uuid_text};

/// What a message request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST`: send.
    Send,
    /// `PATCH`: edit.
    Edit,
    /// `DELETE`: delete.
    Delete,
}

/// One validated item of a message request.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The channel (`None`: to `pm_users` wherever they are).
    pub channel: Option<String>,
    /// Only these users.
    pub pm_users: Vec<String>,
    /// Never these users.
    pub exclude_users: Vec<String>,
    /// Delivered to who is connected now, never stored.
    pub no_history: bool,
    /// The message's uuid (fresh for a send without one).
    pub uuid: [u8; 16],
    /// The record payload's keys: `user`, `message`, `timestamp` (and
    /// `edited` for an edit), as given.
    pub fields: Map<String, Value>,
}

impl Item {
    /// The echo of this item in the answer, as Channelstream shows it.
    pub fn echo(&self, kind: Kind) -> Value {
        let mut m = Map::new();
        m.insert("pm_users".into(), json!(self.pm_users));
        m.insert("exclude_users".into(), json!(self.exclude_users));
        m.insert("channel".into(), json!(self.channel));
        m.insert("no_history".into(), json!(self.no_history));
        m.insert("uuid".into(), json!(uuid_text(&self.uuid)));
        if kind != Kind::Delete {
            for (k, v) in &self.fields {
                m.insert(k.clone(), v.clone());
            }
            if kind == Kind::Send {
                m.insert("edited".into(), Value::Null);
            }
        }
        Value::Object(m)
    }

    /// The record payload (JSON) of a send or an edit.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).unwrap_or_default()
    }

    /// True for a send Channelstream keeps (it names a channel or users).
    pub fn routable(&self) -> bool {
        self.channel.is_some() || !self.pm_users.is_empty()
    }
}

/// A timestamp as Channelstream's schema takes it (`YYYY-MM-DD[T ]HH:MM…`),
/// shown as Python shows the parsed time (`Z` as `+00:00`).
fn timestamp(v: &Value) -> Result<String, &'static str> {
    let Value::String(s) = v else {
        return Err("Not a valid datetime.");
    };
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shaped = digits(0..4)
        && b.get(4) == Some(&b'-')
        && b.len() >= 16
        && matches!(b.get(10), Some(b'T' | b' '));
    if !shaped {
        return Err("Not a valid datetime.");
    }
    Ok(match s.strip_suffix('Z') {
        Some(t) => format!("{t}+00:00"),
        None => s.clone(),
    })
}

/// Validates one item of a message request.
fn item(
    b: &Map<String, Value>,
    kind: Kind,
    now_us: u64,
    new_uuid: &mut dyn FnMut() -> [u8; 16],
    e: &mut Errors,
) -> Item {
    let mut fields = Map::new();
    if kind != Kind::Delete {
        let user = if kind == Kind::Send {
            req_str(b, "user", 512, e)
        } else {
            opt_str(b, "user", 512, e)
        };
        if let Some(u) = user {
            fields.insert("user".into(), json!(u));
        }
        match b.get("message") {
            None => {}
            Some(Value::Object(m)) => {
                fields.insert("message".into(), Value::Object(m.clone()));
            }
            Some(Value::Null) => {
                e.0.insert("message".into(), json!([NULL]));
            }
            Some(_) => {
                e.0.insert("message".into(), json!(["Not a valid mapping type."]));
            }
        }
        match b.get("timestamp").map(timestamp) {
            Some(Ok(t)) => {
                fields.insert("timestamp".into(), json!(t));
            }
            Some(Err(m)) => {
                e.0.insert("timestamp".into(), json!([m]));
            }
            None if kind == Kind::Send => {
                fields.insert("timestamp".into(), json!(naive_iso(now_us)));
            }
            None => {}
        }
        if kind == Kind::Edit {
            let edited = match b.get("edited").map(timestamp) {
                Some(Ok(t)) => t,
                Some(Err(m)) => {
                    e.0.insert("edited".into(), json!([m]));
                    String::new()
                }
                None => naive_iso(now_us),
            };
            fields.insert("edited".into(), json!(edited));
        }
    }
    let uuid = if kind == Kind::Send {
        opt_uuid(b, "uuid", e).unwrap_or_else(&mut *new_uuid)
    } else if !b.contains_key("uuid") {
        e.0.insert("uuid".into(), json!([MISSING]));
        [0; 16]
    } else {
        opt_uuid(b, "uuid", e).unwrap_or_default()
    };
    let channel = match b.get("channel") {
        None | Some(Value::Null) => None,
        Some(_) => opt_str(b, "channel", 256, e),
    };
    Item {
        channel,
        pm_users: str_list(b, "pm_users", 512, e),
        exclude_users: str_list(b, "exclude_users", 512, e),
        no_history: bool_field(b, "no_history", false, e),
        uuid,
        fields,
    }
}

/// Validates a message request's body (a JSON list): the items, or the
/// 422 errors keyed by item index.
///
/// # Errors
/// `Err(None)` for a body that is not JSON (Channelstream answers 500),
/// `Err(Some(errors))` otherwise.
pub fn parse(
    body: &[u8],
    kind: Kind,
    now_us: u64,
    new_uuid: &mut dyn FnMut() -> [u8; 16],
) -> Result<Vec<Item>, Option<Value>> {
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Err(Some(json!({"_schema": ["Invalid input type."]}))),
        Err(_) => return Err(None),
    };
    let mut all = Map::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let Value::Object(b) = v else {
            all.insert(i.to_string(), json!({"_schema": ["Invalid input type."]}));
            continue;
        };
        let mut e = Errors::default();
        let it = item(b, kind, now_us, new_uuid, &mut e);
        if e.is_empty() {
            out.push(it);
        } else {
            all.insert(i.to_string(), Value::Object(e.0));
        }
    }
    if all.is_empty() {
        Ok(out)
    } else {
        Err(Some(Value::Object(all)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_edits_and_deletes_validate_and_echo_as_channelstream() {
        let mut n = 0u8;
        let mut fresh = || {
            n += 1;
            [n; 16]
        };
        let body = br#"[{"user": "a", "channel": "c", "message": {"t": 1}, "extra": 1},
                        {"user": "b", "pm_users": ["x"], "timestamp": "2020-01-01T10:00:00Z"},
                        {"user": "c"}]"#;
        let items = parse(body, Kind::Send, 1_600_000_000_000_000, &mut fresh).unwrap();
        assert_eq!(items.len(), 3);
        assert!(items[0].routable() && items[1].routable() && !items[2].routable());
        let echo = items[0].echo(Kind::Send);
        assert_eq!(echo["uuid"], uuid_text(&[1; 16]));
        assert_eq!(echo["timestamp"], "2020-09-13T12:26:40");
        assert_eq!(echo["edited"], Value::Null);
        assert!(echo.get("extra").is_none(), "unknown keys are dropped");
        assert_eq!(
            items[1].echo(Kind::Send)["timestamp"],
            "2020-01-01T10:00:00+00:00"
        );
        let bad = parse(
            br#"[{"channel": "c"}, {"user": "u", "message": 3, "uuid": "z"}]"#,
            Kind::Send,
            0,
            &mut fresh,
        );
        assert_eq!(
            bad.unwrap_err().unwrap(),
            json!({
                "0": {"user": ["Missing data for required field."]},
                "1": {"message": ["Not a valid mapping type."], "uuid": ["Not a valid UUID."]},
            })
        );
        assert_eq!(
            parse(b"{}", Kind::Send, 0, &mut fresh).unwrap_err(),
            Some(json!({"_schema": ["Invalid input type."]}))
        );
        assert_eq!(parse(b"nope", Kind::Send, 0, &mut fresh).unwrap_err(), None);
        let edit = parse(br#"[{"uuid": "0646b957-e427-4f92-bb5b-bba32f0b2561", "channel": "c", "message": {"t": 2}}]"#, Kind::Edit, 1_600_000_000_000_000, &mut fresh).unwrap();
        let echo = edit[0].echo(Kind::Edit);
        assert_eq!(echo["edited"], "2020-09-13T12:26:40");
        assert!(echo.get("user").is_none() && echo.get("timestamp").is_none());
        let del = parse(br#"[{"channel": "c"}]"#, Kind::Delete, 0, &mut fresh);
        assert_eq!(
            del.unwrap_err().unwrap(),
            json!({"0": {"uuid": ["Missing data for required field."]}})
        );
    }
}
