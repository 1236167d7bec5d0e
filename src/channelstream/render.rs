//! Records of a Channelstream channel (or of the user stream) as the events
//! Channelstream's clients receive: `message`, `message:edit`,
//! `message:delete`, and the `presence` and `user_state_change` events the
//! face stores beside the messages.

use serde_json::{Map, Value};

use super::state::uuid_text;
use crate::storage::record::{Action, RecordView};
use crate::storage::LogReader;

/// Times in pushed events: UTC written with `Z` (Channelstream's answers
/// over HTTP say `+00:00`, its pushes `Z`).
fn push_time(v: &mut Value) {
    if let Value::String(s) = v {
        if let Some(t) = s.strip_suffix("+00:00") {
            *s = format!("{t}Z");
        }
    }
}

/// The event a record stands for, for `channel` (`None`: the user stream),
/// `catchup` when it is sent as a replay. `uuid` is the record's message
/// uuid (its own, or the one the server assigned).
pub fn frame(
    v: &RecordView<'_>,
    channel: Option<&str>,
    uuid: [u8; 16],
    catchup: bool,
) -> Option<Value> {
    let mut payload = match serde_json::from_slice::<Value>(v.payload()) {
        Ok(Value::Object(m)) => m,
        _ if v.action() == Action::Remove => Map::new(),
        _ => return None,
    };
    let mut out = Map::new();
    out.insert(
        "channel".into(),
        channel.map_or(Value::Null, |c| Value::String(c.into())),
    );
    // An event the face stored (presence, state): its payload is the event.
    if v.action() == Action::Custom && payload.contains_key("type") {
        for (k, val) in payload {
            out.insert(k, val);
        }
        out.insert("catchup".into(), Value::Bool(catchup));
        return Some(Value::Object(out));
    }
    out.insert("uuid".into(), Value::String(uuid_text(&uuid)));
    for key in ["timestamp", "edited"] {
        if let Some(t) = payload.get_mut(key) {
            push_time(t);
        }
    }
    let kind = match v.action() {
        Action::Edit => "message:edit",
        Action::Remove => "message:delete",
        _ => "message",
    };
    if kind == "message" {
        for key in ["timestamp", "user", "message"] {
            if let Some(val) = payload.remove(key) {
                out.insert(key.into(), val);
            }
        }
        out.insert("edited".into(), Value::Null);
        out.insert("catchup".into(), Value::Bool(catchup));
    } else if kind == "message:edit" {
        for (k, val) in payload {
            out.insert(k, val);
        }
    }
    out.insert("type".into(), Value::String(kind.into()));
    // Channelstream sends live edits and deletions without `catchup`.
    if kind != "message" && catchup {
        out.insert("catchup".into(), Value::Bool(true));
    }
    Some(Value::Object(out))
}

/// A message of the current view as Channelstream keeps it in a channel's
/// history (what `/info` shows): `None` for the events stored beside the
/// messages. An edited message's fields are its own overlaid with its
/// latest edit's (read from `reader`).
pub fn stored(
    v: &RecordView<'_>,
    channel: &str,
    reader: &LogReader,
    uuid: [u8; 16],
) -> Option<Value> {
    if v.action() != Action::Custom {
        return None;
    }
    let Ok(Value::Object(now)) = serde_json::from_slice::<Value>(v.payload()) else {
        return None;
    };
    if now.contains_key("type") {
        return None;
    }
    let mut fields = match v.ref_id() {
        // Edited: the raw record holds the fields the edits did not change.
        Some(_) => reader
            .get(v.id(), |raw| {
                RecordView::parse_trusted(raw)
                    .ok()
                    .and_then(|o| serde_json::from_slice::<Map<String, Value>>(o.payload()).ok())
            })
            .flatten()
            .unwrap_or_default(),
        None => Map::new(),
    };
    for (k, val) in now {
        fields.insert(k, val);
    }
    let names = |it: crate::storage::record::NameIter<'_>| -> Vec<Value> {
        it.map(|n| Value::String(String::from_utf8_lossy(n).into_owned()))
            .collect()
    };
    let mut out = Map::new();
    out.insert("pm_users".into(), Value::Array(names(v.pm_users())));
    out.insert(
        "exclude_users".into(),
        Value::Array(names(v.exclude_users())),
    );
    out.insert("channel".into(), Value::String(channel.into()));
    out.insert("no_history".into(), Value::Bool(false));
    out.insert("uuid".into(), Value::String(uuid_text(&uuid)));
    for key in ["timestamp", "user", "message"] {
        if let Some(val) = fields.remove(key) {
            out.insert(key.into(), val);
        }
    }
    out.insert(
        "edited".into(),
        fields.remove("edited").unwrap_or(Value::Null),
    );
    out.insert("catchup".into(), Value::Bool(false));
    out.insert("type".into(), Value::String("message".into()));
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::{self, Author, ContentType, MessageFields};
    use serde_json::json;

    fn rec(action: Action, payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        let f = MessageFields {
            action: Some(action),
            content_type: Some(ContentType::Json),
            ..MessageFields::default()
        };
        record::encode_body(&mut b, &f, payload);
        let mut out = Vec::new();
        record::append_record(&mut out, 3, 9, Author::None, &b);
        out
    }

    #[test]
    fn records_become_channelstream_events() {
        let u = [7u8; 16];
        let m = rec(
            Action::Custom,
            br#"{"user":"a","message":{"t":1},"timestamp":"2020-01-01T10:00:00+00:00"}"#,
        );
        let v = RecordView::parse_trusted(&m).unwrap();
        assert_eq!(
            frame(&v, Some("room"), u, false).unwrap(),
            json!({"channel": "room", "uuid": uuid_text(&u), "timestamp": "2020-01-01T10:00:00Z",
                   "user": "a", "message": {"t": 1}, "edited": null, "catchup": false, "type": "message"})
        );
        let e = rec(
            Action::Edit,
            br#"{"message":{"t":2},"edited":"2020-01-02T00:00:00"}"#,
        );
        let v = RecordView::parse_trusted(&e).unwrap();
        assert_eq!(
            frame(&v, None, u, false).unwrap(),
            json!({"channel": null, "uuid": uuid_text(&u), "message": {"t": 2},
                   "edited": "2020-01-02T00:00:00", "type": "message:edit"})
        );
        let d = rec(Action::Remove, b"");
        let v = RecordView::parse_trusted(&d).unwrap();
        assert_eq!(
            frame(&v, Some("c"), u, true).unwrap(),
            json!({"channel": "c", "uuid": uuid_text(&u), "type": "message:delete", "catchup": true})
        );
        let p = rec(
            Action::Custom,
            br#"{"type":"presence","user":"b","message":{"action":"joined"}}"#,
        );
        let v = RecordView::parse_trusted(&p).unwrap();
        let f = frame(&v, Some("c"), u, true).unwrap();
        assert_eq!(
            (f["type"].clone(), f["catchup"].clone(), f.get("uuid")),
            (json!("presence"), json!(true), None)
        );
    }
}
