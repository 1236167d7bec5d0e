//! The JSON the Syncano v1.1 view answers with: messages (§1.2), history
//! pages (§1.5) and channels (§1.1), appended to an output buffer as
//! compact JSON with the platform's key order.
//!
//! Payloads are rendered by content type: JSON is embedded as it is stored
//! (after a check that it is valid JSON; invalid bytes fall back to a JSON
//! string of their lossy UTF-8 text), text becomes a JSON string, and opaque
//! bytes become a JSON string of their standard base64 encoding (with
//! padding), since a Syncano payload must be JSON and bytes have no other
//! JSON form. Messages published through this shim are always JSON objects.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use base64::Engine as _;
use serde::de::IgnoredAny;

use crate::http::history::Links;
use crate::http::route::{group_url, ChannelPath};
use crate::storage::record::{Action, Author, ContentType, RecordView};
use crate::time::format_rfc3339_us;

/// Rewrites U+2028 and U+2029 in `out[start..]` as `\u2028` / `\u2029`,
/// as DRF's `JSONRenderer` does so that its JSON is also valid JavaScript.
/// In valid JSON these characters can only sit inside strings, where the
/// escape means the same character.
fn escape_line_separators(out: &mut Vec<u8>, start: usize) {
    const SEPARATORS: [([u8; 3], &[u8]); 2] = [
        ([0xE2, 0x80, 0xA8], b"\\u2028"),
        ([0xE2, 0x80, 0xA9], b"\\u2029"),
    ];
    let Some(tail) = out.get(start..) else {
        return;
    };
    if !tail
        .windows(3)
        .any(|w| SEPARATORS.iter().any(|(s, _)| w == s))
    {
        return;
    }
    let mut escaped = Vec::with_capacity(tail.len().saturating_add(16));
    let mut rest = tail;
    while let Some((&b, after)) = rest.split_first() {
        let hit = SEPARATORS
            .iter()
            .find(|(s, _)| rest.starts_with(s))
            .map(|(_, e)| *e);
        match (hit, rest.get(3..)) {
            (Some(e), Some(after_sep)) => {
                escaped.extend_from_slice(e);
                rest = after_sep;
            }
            _ => {
                escaped.push(b);
                rest = after;
            }
        }
    }
    out.truncate(start);
    out.extend_from_slice(&escaped);
}

/// Appends `s` as a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("a string always serializes");
}

/// Appends `n` as a JSON number.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// Appends `"key":`.
fn push_key(out: &mut Vec<u8>, key: &str) {
    push_str(out, key);
    out.push(b':');
}

/// Appends a URL or `null`.
fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends one message object:
/// `{"id","room","created_at","action","author","metadata","payload"[,"links"]}`.
///
/// `room` is the message's room, or `null` (the Syncano guide's history
/// and publish examples show it on every message, `null` on a default
/// channel). `links` names the channel for `links.self`; poll answers pass
/// `None` (Syncano omits `links` there), publish and history pass the
/// channel.
pub fn write_message(out: &mut Vec<u8>, view: &RecordView<'_>, links: Option<&ChannelPath<'_>>) {
    let start = out.len();
    out.extend_from_slice(b"{\"id\":");
    push_u64(out, view.id());
    out.extend_from_slice(b",\"room\":");
    match view.room() {
        Some(room) => push_str(out, &String::from_utf8_lossy(room)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"created_at\":");
    push_str(out, &format_rfc3339_us(view.created_at_us()));
    out.extend_from_slice(b",\"action\":");
    // An edit or deletion of a message is shown as Syncano shows a change
    // of an object: `update` with the new payload, `delete` with the id.
    let amended = match (view.action(), view.ref_id()) {
        (Action::Edit, Some(r)) => Some(("update", r)),
        (Action::Remove, Some(r)) => Some(("delete", r)),
        _ => None,
    };
    push_str(out, amended.map_or(view.action().name(), |(a, _)| a));
    out.extend_from_slice(b",\"author\":");
    write_author(out, view.author());
    out.extend_from_slice(b",\"metadata\":");
    match (view.object_class(), amended) {
        (Some(class), _) => {
            out.extend_from_slice(b"{\"type\":\"object\",\"class\":");
            push_str(out, &String::from_utf8_lossy(class));
            out.push(b'}');
        }
        (None, Some((_, r))) => {
            out.extend_from_slice(b"{\"type\":\"message\",\"message_id\":");
            push_u64(out, r);
            out.push(b'}');
        }
        (None, None) => out.extend_from_slice(b"{\"type\":\"message\"}"),
    }
    out.extend_from_slice(b",\"payload\":");
    match amended {
        Some(("delete", r)) => {
            out.extend_from_slice(b"{\"id\":");
            push_u64(out, r);
            out.push(b'}');
        }
        _ => write_payload(out, view.content_type(), view.payload()),
    }
    if let Some(path) = links {
        out.extend_from_slice(b",\"links\":{\"self\":");
        push_str(out, &path.message_url(view.id()));
        out.push(b'}');
    }
    out.push(b'}');
    escape_line_separators(out, start);
}

/// The message object as a byte vector (see [`write_message`]).
pub fn message_json(view: &RecordView<'_>, links: Option<&ChannelPath<'_>>) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(&mut out, view, links);
    out
}

fn write_author(out: &mut Vec<u8>, author: Author) {
    match author {
        Author::None => out.extend_from_slice(b"{}"),
        Author::Admin(id) => {
            out.extend_from_slice(b"{\"admin\":");
            push_u64(out, id);
            out.push(b'}');
        }
        Author::ApiKey(id) => {
            out.extend_from_slice(b"{\"api_key\":");
            push_u64(out, id);
            out.push(b'}');
        }
        Author::User { api_key, user } => {
            out.extend_from_slice(b"{\"api_key\":");
            push_u64(out, api_key);
            out.extend_from_slice(b",\"user\":");
            push_u64(out, user);
            out.push(b'}');
        }
    }
}

fn write_payload(out: &mut Vec<u8>, content_type: ContentType, payload: &[u8]) {
    match content_type {
        ContentType::Json if serde_json::from_slice::<IgnoredAny>(payload).is_ok() => {
            out.extend_from_slice(payload.trim_ascii());
        }
        ContentType::Json | ContentType::Text => {
            push_str(out, &String::from_utf8_lossy(payload));
        }
        ContentType::Bytes => {
            push_str(
                out,
                &base64::engine::general_purpose::STANDARD.encode(payload),
            );
        }
    }
}

/// Appends a history page, `{"next":…,"prev":…,"objects":[…]}`, with every
/// message carrying `links.self` into `path`.
pub fn write_history_page<'a>(
    out: &mut Vec<u8>,
    links: &Links,
    messages: impl IntoIterator<Item = RecordView<'a>>,
    path: &ChannelPath<'_>,
) {
    write_page(out, links, messages, |out, view| {
        write_message(out, &view, Some(path));
    });
}

/// Appends a page envelope, `{"next":…,"prev":…,"objects":[…]}`, with
/// `each` writing one object.
fn write_page<T>(
    out: &mut Vec<u8>,
    links: &Links,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    out.extend_from_slice(b"{\"next\":");
    push_opt_str(out, links.next.as_deref());
    out.extend_from_slice(b",\"prev\":");
    push_opt_str(out, links.prev.as_deref());
    out.extend_from_slice(b",\"objects\":[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.extend_from_slice(b"]}");
}

/// A channel's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelType {
    /// `default`: one stream, `room` ignored.
    Default,
    /// `separate_rooms`: every request names a room.
    SeparateRooms,
}

impl ChannelType {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            ChannelType::Default => "default",
            ChannelType::SeparateRooms => "separate_rooms",
        }
    }
}

/// A channel permission level (`none` < `subscribe` < `publish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// No access.
    None,
    /// Poll and history.
    Subscribe,
    /// Subscribe and publish.
    Publish,
}

impl Permission {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Subscribe => "subscribe",
            Permission::Publish => "publish",
        }
    }
}

/// What the Syncano view shows of a channel; plain values, so this module
/// needs no broker types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelFields<'a> {
    /// The channel name.
    pub name: &'a str,
    /// Free text.
    pub description: &'a str,
    /// `default` or `separate_rooms`.
    pub kind: ChannelType,
    /// The group whose members get `group_permissions`.
    pub group: Option<u64>,
    /// Access of the group's members.
    pub group_permissions: Permission,
    /// Access of every other user.
    pub other_permissions: Permission,
    /// Whether `publish/` is allowed at all.
    pub custom_publish: bool,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    /// Last change, µs since the epoch.
    pub updated_at_us: u64,
}

/// Appends a channel object: `{"name","description","type","group",
/// "group_permissions","other_permissions","custom_publish","created_at",
/// "updated_at","links":{"self"[,"group"],"poll","publish","history"}}`.
pub fn write_channel(out: &mut Vec<u8>, instance: &str, ch: &ChannelFields<'_>) {
    let start = out.len();
    out.push(b'{');
    push_key(out, "name");
    push_str(out, ch.name);
    out.push(b',');
    push_key(out, "description");
    push_str(out, ch.description);
    out.push(b',');
    push_key(out, "type");
    push_str(out, ch.kind.name());
    out.push(b',');
    push_key(out, "group");
    match ch.group {
        Some(g) => push_u64(out, g),
        None => out.extend_from_slice(b"null"),
    }
    for (key, value) in [
        ("group_permissions", ch.group_permissions.name()),
        ("other_permissions", ch.other_permissions.name()),
    ] {
        out.push(b',');
        push_key(out, key);
        push_str(out, value);
    }
    out.push(b',');
    push_key(out, "custom_publish");
    out.extend_from_slice(if ch.custom_publish { b"true" } else { b"false" });
    for (key, us) in [
        ("created_at", ch.created_at_us),
        ("updated_at", ch.updated_at_us),
    ] {
        out.push(b',');
        push_key(out, key);
        push_str(out, &format_rfc3339_us(us));
    }
    out.push(b',');
    write_channel_links(out, instance, ch);
    out.push(b'}');
    escape_line_separators(out, start);
}

fn write_channel_links(out: &mut Vec<u8>, instance: &str, ch: &ChannelFields<'_>) {
    let path = ChannelPath {
        instance,
        channel: ch.name,
    };
    push_key(out, "links");
    out.push(b'{');
    push_key(out, "self");
    push_str(out, &path.channel_url());
    if let Some(group) = ch.group {
        out.push(b',');
        push_key(out, "group");
        push_str(out, &group_url(instance, group));
    }
    for action in ["poll", "publish", "history"] {
        out.push(b',');
        push_key(out, action);
        push_str(out, &path.action_url(action));
    }
    out.push(b'}');
}

/// Appends a channel list page, `{"next":…,"prev":…,"objects":[…]}`.
pub fn write_channel_list(
    out: &mut Vec<u8>,
    instance: &str,
    links: &Links,
    channels: &[ChannelFields<'_>],
) {
    write_page(out, links, channels, |out, ch| {
        write_channel(out, instance, ch)
    });
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::storage::record::{encode_body, record_len, write_record, Action, MessageFields};

    /// Builds a record the way the broker does and calls `f` with its view.
    fn with_record<R>(
        id: u64,
        created_at_us: u64,
        author: Author,
        fields: &MessageFields<'_>,
        payload: &[u8],
        f: impl FnOnce(&RecordView<'_>) -> R,
    ) -> R {
        let mut body = Vec::new();
        encode_body(&mut body, fields, payload);
        crate::storage::record::check_body(&mut body).unwrap();
        let mut raw = vec![0u8; record_len(author, body.len())];
        write_record(&mut raw, id, created_at_us, author, &body);
        let (view, _) = RecordView::decode(&raw).unwrap().unwrap();
        f(&view)
    }

    fn json_fields() -> MessageFields<'static> {
        MessageFields {
            content_type: Some(ContentType::Json),
            ..MessageFields::default()
        }
    }

    const PATH: ChannelPath<'static> = ChannelPath {
        instance: "i",
        channel: "c",
    };

    #[test]
    fn an_admin_message_renders_byte_exact() {
        let got = with_record(
            8,
            1_432_050_799_281_155,
            Author::Admin(12),
            &json_fields(),
            br#"{"content":"hello!"}"#,
            |v| message_json(v, Some(&PATH)),
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"id":8,"room":null,"created_at":"2015-05-19T15:53:19.281155Z","action":"custom","author":{"admin":12},"metadata":{"type":"message"},"payload":{"content":"hello!"},"links":{"self":"/v1.1/instances/i/channels/c/history/8/"}}"#
        );
    }

    #[test]
    fn an_api_key_and_user_message_renders_byte_exact_without_links() {
        let author = Author::User {
            api_key: 2805,
            user: 1,
        };
        let got = with_record(9, 0, author, &json_fields(), br#"{"a":[1,2]}"#, |v| {
            message_json(v, None)
        });
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"id":9,"room":null,"created_at":"1970-01-01T00:00:00.000000Z","action":"custom","author":{"api_key":2805,"user":1},"metadata":{"type":"message"},"payload":{"a":[1,2]}}"#
        );
    }

    #[test]
    fn an_object_message_renders_byte_exact() {
        let fields = MessageFields {
            action: Some(Action::Update),
            content_type: Some(ContentType::Json),
            object_class: Some("books"),
            room: Some("Lobby"),
            ..MessageFields::default()
        };
        let got = with_record(
            10,
            1_000_001,
            Author::ApiKey(4),
            &fields,
            br#"{"id":3,"title":"x"}"#,
            |v| message_json(v, Some(&PATH)),
        );
        assert_eq!(
            String::from_utf8(got).unwrap(),
            r#"{"id":10,"room":"lobby","created_at":"1970-01-01T00:00:01.000001Z","action":"update","author":{"api_key":4},"metadata":{"type":"object","class":"books"},"payload":{"id":3,"title":"x"},"links":{"self":"/v1.1/instances/i/channels/c/history/10/"}}"#
        );
    }

    #[test]
    fn payloads_render_by_content_type() {
        let table: &[(ContentType, &[u8], &str)] = &[
            (ContentType::Json, br#"{"a":1}"#, r#"{"a":1}"#),
            (ContentType::Json, b" [1, 2] ", "[1, 2]"),
            (ContentType::Json, b"{broken", r#""{broken""#),
            (ContentType::Text, b"say \"hi\"", r#""say \"hi\"""#),
            (ContentType::Bytes, b"\x00\xff\x10", r#""AP8Q""#),
            (ContentType::Bytes, b"", r#""""#),
        ];
        for (ct, payload, want) in table {
            let mut out = Vec::new();
            write_payload(&mut out, *ct, payload);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "{ct:?}");
        }
    }

    #[test]
    fn line_separators_are_escaped_like_drf() {
        let payload = "{\"t\":\"a\u{2028}b\u{2029}c\u{e9}\"}";
        let got = with_record(
            1,
            0,
            Author::None,
            &json_fields(),
            payload.as_bytes(),
            |v| {
                let mut out = b"prefix \xe2\x80\xa8".to_vec();
                write_message(&mut out, v, None);
                out
            },
        );
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.starts_with("prefix \u{2028}{"),
            "only the appended part changes"
        );
        assert!(
            text.ends_with("\"payload\":{\"t\":\"a\\u2028b\\u2029c\u{e9}\"}}"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&text["prefix \u{2028}".len()..]).unwrap();
        assert_eq!(json["payload"]["t"], "a\u{2028}b\u{2029}c\u{e9}");
    }

    #[test]
    fn authors_render_as_syncano_does() {
        let table = [
            (Author::None, "{}"),
            (Author::Admin(1), r#"{"admin":1}"#),
            (Author::ApiKey(2), r#"{"api_key":2}"#),
            (
                Author::User {
                    api_key: 2,
                    user: 3,
                },
                r#"{"api_key":2,"user":3}"#,
            ),
        ];
        for (author, want) in table {
            let mut out = Vec::new();
            write_author(&mut out, author);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn a_history_page_wraps_its_messages() {
        let links = Links {
            next: Some("/n?x=1".into()),
            prev: None,
        };
        let got = with_record(3, 0, Author::None, &json_fields(), b"{}", |v| {
            let mut out = Vec::new();
            write_history_page(&mut out, &links, [*v, *v], &PATH);
            out
        });
        let one = r#"{"id":3,"room":null,"created_at":"1970-01-01T00:00:00.000000Z","action":"custom","author":{},"metadata":{"type":"message"},"payload":{},"links":{"self":"/v1.1/instances/i/channels/c/history/3/"}}"#;
        assert_eq!(
            String::from_utf8(got).unwrap(),
            format!(r#"{{"next":"/n?x=1","prev":null,"objects":[{one},{one}]}}"#)
        );
        let mut out = Vec::new();
        write_history_page(&mut out, &Links::default(), [], &PATH);
        assert_eq!(out, br#"{"next":null,"prev":null,"objects":[]}"#);
    }

    #[test]
    fn channels_render_with_links() {
        let ch = ChannelFields {
            name: "chat",
            description: "say \"hi\"",
            kind: ChannelType::SeparateRooms,
            group: Some(5),
            group_permissions: Permission::Publish,
            other_permissions: Permission::Subscribe,
            custom_publish: true,
            created_at_us: 0,
            updated_at_us: 1_000_000,
        };
        let mut out = Vec::new();
        write_channel(&mut out, "inst", &ch);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"name":"chat","description":"say \"hi\"","type":"separate_rooms","group":5,"#,
                r#""group_permissions":"publish","other_permissions":"subscribe","custom_publish":true,"#,
                r#""created_at":"1970-01-01T00:00:00.000000Z","updated_at":"1970-01-01T00:00:01.000000Z","#,
                r#""links":{"self":"/v1.1/instances/inst/channels/chat/","group":"/v1.1/instances/inst/groups/5/","#,
                r#""poll":"/v1.1/instances/inst/channels/chat/poll/","publish":"/v1.1/instances/inst/channels/chat/publish/","#,
                r#""history":"/v1.1/instances/inst/channels/chat/history/"}}"#
            )
        );
        let plain = ChannelFields {
            group: None,
            kind: ChannelType::Default,
            custom_publish: false,
            group_permissions: Permission::None,
            other_permissions: Permission::None,
            ..ch
        };
        let mut out = Vec::new();
        write_channel_list(&mut out, "inst", &Links::default(), &[plain]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"next":null,"prev":null,"objects":[{"name":"chat""#));
        assert!(text.contains(r#""type":"default","group":null,"group_permissions":"none""#));
        assert!(text.contains(r#""custom_publish":false"#));
        assert!(text.contains(r#""links":{"self":"/v1.1/instances/inst/channels/chat/","poll":"#));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["objects"][0]["description"], "say \"hi\"");
    }
}
