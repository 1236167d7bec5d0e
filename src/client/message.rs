//! Messages as the client sees them: [`Message`] (owned, decoded from a
//! record) and [`OutgoingMessage`] (what a publisher sends).

use serde_json::{json, Map, Value};

use crate::client::error::ClientError;
use crate::limits;
use crate::storage::record::{self, Action, Author, ContentType, MessageFields, RecordView};
use crate::time::format_rfc3339_us;
use crate::wire::format_uuid;

/// One message, owned, decoded from a record (delivery, history or fetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Per-channel sequence number, from 1.
    pub id: u64,
    /// Microseconds since the Unix epoch, set by the server.
    pub created_at_us: u64,
    /// What the message does.
    pub action: Action,
    /// How to read the payload.
    pub content_type: ContentType,
    /// Who published it (filled in by the server).
    pub author: Author,
    /// The room, lower-case.
    pub room: Option<String>,
    /// Data Object class of `{type: object}` metadata.
    pub object_class: Option<String>,
    /// Users who alone may see the message (empty: everyone).
    pub pm_users: Vec<String>,
    /// Users who never see the message.
    pub exclude_users: Vec<String>,
    /// A client-chosen uuid.
    pub uuid: Option<[u8; 16]>,
    /// The id an edit/remove refers to.
    pub ref_id: Option<u64>,
    /// The idempotency key it was published with.
    pub idempotency_key: Option<Vec<u8>>,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        // Writing to a String cannot fail.
        let _ = write!(s, "{byte:02x}");
    }
    s
}

impl Message {
    /// Decodes and CRC-checks one whole record.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the bytes are not exactly one valid record.
    pub fn from_record(raw: &[u8]) -> Result<Message, ClientError> {
        let (view, used) = RecordView::decode(raw)
            .map_err(|e| ClientError::Protocol(format!("bad record: {e}")))?
            .ok_or_else(|| ClientError::Protocol("truncated record".into()))?;
        if used != raw.len() {
            return Err(ClientError::Protocol("bytes after a record".into()));
        }
        Ok(Message::from_view(&view))
    }

    /// Copies the fields of an already checked record.
    pub fn from_view(v: &RecordView<'_>) -> Message {
        Message {
            id: v.id(),
            created_at_us: v.created_at_us(),
            action: v.action(),
            content_type: v.content_type(),
            author: v.author(),
            room: v.room().map(lossy),
            object_class: v.object_class().map(lossy),
            pm_users: v.pm_users().map(lossy).collect(),
            exclude_users: v.exclude_users().map(lossy).collect(),
            uuid: v.uuid(),
            ref_id: v.ref_id(),
            idempotency_key: v.idempotency_key().map(<[u8]>::to_vec),
            payload: v.payload().to_vec(),
        }
    }

    /// `created_at` as RFC 3339 with microseconds (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub fn created_at(&self) -> String {
        format_rfc3339_us(self.created_at_us)
    }

    /// The payload for people: UTF-8 text as is, other bytes as hex.
    pub fn payload_text(&self) -> String {
        match std::str::from_utf8(&self.payload) {
            Ok(s) => s.to_owned(),
            Err(_) => hex(&self.payload),
        }
    }

    /// The message as one JSON object.
    ///
    /// The payload is a JSON value when the content type is JSON and it
    /// parses, a string when it is UTF-8, and otherwise a hex string with
    /// `"payload_encoding": "hex"`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("created_at".into(), json!(self.created_at()));
        m.insert("action".into(), json!(self.action.name()));
        let ct = match self.content_type {
            ContentType::Bytes => "bytes",
            ContentType::Json => "json",
            ContentType::Text => "text",
        };
        m.insert("content_type".into(), json!(ct));
        let author = match self.author {
            Author::None => Value::Null,
            Author::Admin(id) => json!({ "admin": id }),
            Author::ApiKey(id) => json!({ "api_key": id }),
            Author::User { api_key, user } => json!({ "api_key": api_key, "user": user }),
        };
        m.insert("author".into(), author);
        m.insert("room".into(), json!(self.room));
        let metadata = match &self.object_class {
            Some(class) => json!({ "type": "object", "class": class }),
            None => json!({ "type": "message" }),
        };
        m.insert("metadata".into(), metadata);
        if !self.pm_users.is_empty() {
            m.insert("pm_users".into(), json!(self.pm_users));
        }
        if !self.exclude_users.is_empty() {
            m.insert("exclude_users".into(), json!(self.exclude_users));
        }
        if let Some(u) = &self.uuid {
            m.insert("uuid".into(), json!(format_uuid(u)));
        }
        if let Some(r) = self.ref_id {
            m.insert("ref_id".into(), json!(r));
        }
        if let Some(k) = &self.idempotency_key {
            let k = std::str::from_utf8(k).map_or_else(|_| hex(k), str::to_owned);
            m.insert("idempotency_key".into(), json!(k));
        }
        let parsed = match self.content_type {
            ContentType::Json => serde_json::from_slice::<Value>(&self.payload).ok(),
            _ => None,
        };
        let payload = match (parsed, std::str::from_utf8(&self.payload)) {
            (Some(v), _) => v,
            (None, Ok(s)) => json!(s),
            (None, Err(_)) => {
                m.insert("payload_encoding".into(), json!("hex"));
                json!(hex(&self.payload))
            }
        };
        m.insert("payload".into(), payload);
        Value::Object(m)
    }
}

/// A message to publish: a payload and the envelope fields a publisher sets.
///
/// ```
/// use tidewire::client::OutgoingMessage;
/// let m = OutgoingMessage::new(b"hello").room("lobby").idempotency_key(b"order-17");
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage<'a> {
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The envelope fields.
    pub fields: MessageFields<'a>,
}

impl<'a> OutgoingMessage<'a> {
    /// A message with `payload`, no room, action `custom`, content type bytes.
    pub fn new(payload: &'a [u8]) -> OutgoingMessage<'a> {
        OutgoingMessage {
            payload,
            fields: MessageFields::default(),
        }
    }
    /// A message whose payload is a JSON document (content type JSON).
    pub fn json(payload: &'a str) -> OutgoingMessage<'a> {
        OutgoingMessage::new(payload.as_bytes()).content_type(ContentType::Json)
    }
    /// A message whose payload is UTF-8 text (content type text).
    pub fn text(payload: &'a str) -> OutgoingMessage<'a> {
        OutgoingMessage::new(payload.as_bytes()).content_type(ContentType::Text)
    }
    /// Sets the room.
    pub fn room(mut self, room: &'a str) -> Self {
        self.fields.room = Some(room);
        self
    }
    /// Sets the action.
    pub fn action(mut self, action: Action) -> Self {
        self.fields.action = Some(action);
        self
    }
    /// Sets the content type.
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.fields.content_type = Some(content_type);
        self
    }
    /// Sets the Data Object class (`{type: object}` metadata).
    pub fn object_class(mut self, class: &'a str) -> Self {
        self.fields.object_class = Some(class);
        self
    }
    /// Only these users may see the message.
    pub fn pm_users(mut self, users: &'a [&'a str]) -> Self {
        self.fields.pm_users = users;
        self
    }
    /// These users never see the message.
    pub fn exclude_users(mut self, users: &'a [&'a str]) -> Self {
        self.fields.exclude_users = users;
        self
    }
    /// Sets the uuid.
    pub fn uuid(mut self, uuid: [u8; 16]) -> Self {
        self.fields.uuid = Some(uuid);
        self
    }
    /// Names the earlier message an edit/remove refers to.
    pub fn ref_id(mut self, id: u64) -> Self {
        self.fields.ref_id = Some(id);
        self
    }
    /// Sets the idempotency key: a repeat inside retention returns the original id.
    pub fn idempotency_key(mut self, key: &'a [u8]) -> Self {
        self.fields.idempotency_key = Some(key);
        self
    }

    /// Checks every field against `limits`.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] naming the first field out of its limits.
    pub fn validate(&self) -> Result<(), ClientError> {
        let f = &self.fields;
        let short = |v: Option<&[u8]>, max: usize, what: &str| match v {
            Some(b) if b.is_empty() || b.len() > max => Err(ClientError::Invalid(format!(
                "{what} must be 1..={max} bytes, not {}",
                b.len()
            ))),
            _ => Ok(()),
        };
        short(f.room.map(str::as_bytes), limits::ROOM_LEN_MAX, "room")?;
        short(
            f.object_class.map(str::as_bytes),
            limits::OBJECT_CLASS_LEN_MAX,
            "object class",
        )?;
        short(
            f.idempotency_key,
            limits::IDEMPOTENCY_KEY_LEN_MAX,
            "idempotency key",
        )?;
        for (list, what) in [(f.pm_users, "pm_users"), (f.exclude_users, "exclude_users")] {
            if list.len() > limits::TARGET_USERS_MAX {
                return Err(ClientError::Invalid(format!(
                    "{what} holds more than {} names",
                    limits::TARGET_USERS_MAX
                )));
            }
            for name in list {
                short(Some(name.as_bytes()), limits::TARGET_USER_LEN_MAX, what)?;
            }
        }
        if self.payload.len() > limits::PAYLOAD_LEN_MAX as usize {
            return Err(ClientError::Invalid(format!(
                "payload of {} bytes is over the limit of {}",
                self.payload.len(),
                limits::PAYLOAD_LEN_MAX
            )));
        }
        Ok(())
    }

    /// Validates and appends the message body to `out` (the bytes a
    /// `Publish` frame carries per message; see
    /// [`Client::send_publish_bodies`](crate::client::Client::send_publish_bodies)).
    ///
    /// # Errors
    /// As [`OutgoingMessage::validate`]; nothing is appended then.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), ClientError> {
        self.validate()?;
        record::encode_body(out, &self.fields, self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::{record_len, write_record};

    fn record(msg: &OutgoingMessage<'_>, id: u64, at: u64, author: Author) -> Vec<u8> {
        let mut body = Vec::new();
        msg.encode_body(&mut body).unwrap();
        let mut dst = vec![0u8; record_len(author, body.len())];
        write_record(&mut dst, id, at, author, &body);
        dst
    }

    #[test]
    fn decodes_every_field_of_a_record() {
        let pm = ["alice"];
        let ex = ["bob", "carol"];
        let out = OutgoingMessage::json(r#"{"n":1}"#)
            .room("lobby")
            .action(Action::Edit)
            .object_class("books")
            .pm_users(&pm)
            .exclude_users(&ex)
            .uuid([0xab; 16])
            .ref_id(3)
            .idempotency_key(b"k1");
        let raw = record(&out, 12, 1_447_948_399_281_155, Author::Admin(4));
        let m = Message::from_record(&raw).unwrap();
        assert_eq!(m.id, 12);
        assert_eq!(m.created_at(), "2015-11-19T15:53:19.281155Z");
        assert_eq!(m.action, Action::Edit);
        assert_eq!(m.content_type, ContentType::Json);
        assert_eq!(m.author, Author::Admin(4));
        assert_eq!(m.room.as_deref(), Some("lobby"));
        assert_eq!(m.object_class.as_deref(), Some("books"));
        assert_eq!(m.pm_users, vec!["alice"]);
        assert_eq!(m.exclude_users, vec!["bob", "carol"]);
        assert_eq!(m.uuid, Some([0xab; 16]));
        assert_eq!(m.ref_id, Some(3));
        assert_eq!(m.idempotency_key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(m.payload, br#"{"n":1}"#);
    }

    #[test]
    fn a_corrupt_or_padded_record_is_a_protocol_error() {
        let mut raw = record(&OutgoingMessage::new(b"x"), 1, 0, Author::None);
        raw.push(0);
        assert!(matches!(
            Message::from_record(&raw),
            Err(ClientError::Protocol(_))
        ));
        raw.pop();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(
            Message::from_record(&raw),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            Message::from_record(&raw[..10]),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn json_payloads_render_as_json_values() {
        let out = OutgoingMessage::json(r#"{"n":[1,2]}"#).uuid([0x11; 16]);
        let m = Message::from_record(&record(&out, 7, 0, Author::ApiKey(2))).unwrap();
        assert_eq!(
            m.to_json(),
            json!({
                "id": 7,
                "created_at": "1970-01-01T00:00:00.000000Z",
                "action": "custom",
                "content_type": "json",
                "author": {"api_key": 2},
                "room": null,
                "metadata": {"type": "message"},
                "uuid": "11111111-1111-1111-1111-111111111111",
                "payload": {"n": [1, 2]},
            })
        );
    }

    #[test]
    fn text_invalid_json_and_binary_payloads_render_as_strings() {
        let text = Message::from_record(&record(&OutgoingMessage::text("hi"), 1, 0, Author::None));
        assert_eq!(text.unwrap().to_json()["payload"], json!("hi"));
        let bad_json = OutgoingMessage::json("{not json").room("r1");
        let m = Message::from_record(&record(&bad_json, 1, 0, Author::None)).unwrap();
        assert_eq!(m.to_json()["payload"], json!("{not json"));
        assert_eq!(m.to_json()["room"], json!("r1"));
        let bin = Message::from_record(&record(
            &OutgoingMessage::new(&[0xff, 0x00]),
            1,
            0,
            Author::None,
        ))
        .unwrap();
        let v = bin.to_json();
        assert_eq!(v["payload"], json!("ff00"));
        assert_eq!(v["payload_encoding"], json!("hex"));
        assert_eq!(bin.payload_text(), "ff00");
    }

    #[test]
    fn fields_over_their_limits_are_rejected_before_encoding() {
        let long_room = "r".repeat(limits::ROOM_LEN_MAX + 1);
        let mut out = Vec::new();
        let err = OutgoingMessage::new(b"x")
            .room(&long_room)
            .encode_body(&mut out);
        assert!(matches!(err, Err(ClientError::Invalid(_))));
        assert!(out.is_empty());
        let err = OutgoingMessage::new(b"x").idempotency_key(b"").validate();
        assert!(matches!(err, Err(ClientError::Invalid(_))));
        let many: Vec<&str> = vec!["u"; limits::TARGET_USERS_MAX + 1];
        let err = OutgoingMessage::new(b"x").pm_users(&many).validate();
        assert!(matches!(err, Err(ClientError::Invalid(_))));
    }
}
