//! The Syncano v1.1 request shapes: credentials, request bodies, and the
//! parameters of poll and publish (`legacy-apis.md` §1.3, §1.4, §1.8, §8).
//!
//! Every function takes a parsed [`Request`] (and its parsed body) and
//! returns typed values or the exact [`ApiError`] the platform answers.
//! History parameters live in [`crate::http::history`].
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::render::ChannelType;
use crate::http::request::{parse_pairs, Request};
use crate::limits;

/// A parsed request body: the fields of a JSON object or of a form.
pub type JsonMap = serde_json::Map<String, Value>;

/// The keys a request presents (`legacy-apis.md` §1.8). Empty values count
/// as absent; nothing is checked here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// An account (admin) key or an instance API key.
    pub api_key: Option<String>,
    /// A user key.
    pub user_key: Option<String>,
}

/// The keys of `req`, in Syncano's precedence.
///
/// API key: `X-API-KEY`, else `?api_key=`, else `?apikey=`, else
/// `Authorization: <scheme> <key>` (any scheme word: the Python client sends
/// `token`), else `_api_key` in `body`. User key: `X-USER-KEY`, else
/// `?user_key=`, else `?userkey=`, else `_user_key` in `body`.
///
/// Pass `body` only for requests whose body Syncano reads (`POST`, `PUT`,
/// `PATCH`); the JS client sends `{}` with every `GET`, which must not matter.
pub fn credentials(req: &Request, body: Option<&JsonMap>) -> Credentials {
    let body_str = |name: &str| {
        body.and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let header = |name: &str| req.header(name).filter(|s| !s.is_empty());
    let api_key = header("x-api-key")
        .or_else(|| req.query("api_key"))
        .or_else(|| req.query("apikey"))
        .or_else(|| req.header("authorization").and_then(authorization_key))
        .or_else(|| body_str("_api_key"));
    let user_key = header("x-user-key")
        .or_else(|| req.query("user_key"))
        .or_else(|| req.query("userkey"))
        .or_else(|| body_str("_user_key"));
    Credentials {
        api_key: api_key.map(str::to_owned),
        user_key: user_key.map(str::to_owned),
    }
}

/// The key of an `Authorization: <scheme> <key>` value: exactly two words.
fn authorization_key(value: &str) -> Option<&str> {
    let mut words = value.split_ascii_whitespace();
    let (_scheme, key) = (words.next()?, words.next()?);
    words.next().is_none().then_some(key)
}

/// Parses the body of `req` into its fields.
///
/// An empty body is an empty object whatever its type. `application/json`,
/// and `text/plain` as the platform's `PreflightParser` read it (a browser
/// sends JSON as `text/plain` to avoid a CORS preflight, `legacy-apis.md`
/// §1.8), must be a JSON object no deeper than
/// [`limits::HTTP_JSON_DEPTH_MAX`]; `application/x-www-form-urlencoded`
/// gives string fields (first value of a repeated name wins).
///
/// # Errors
/// 400 for invalid JSON (DRF's `JSON parse error - …`), too deep a nesting,
/// a JSON value that is not an object, or too many form fields; 415 for any
/// other media type.
pub fn parse_body(req: &Request) -> Result<JsonMap, ApiError> {
    if req.body.is_empty() {
        return Ok(JsonMap::new());
    }
    match req.media_type().as_deref() {
        Some("application/json" | "text/plain") => parse_json_object(&req.body),
        Some("application/x-www-form-urlencoded") => {
            let pairs = parse_pairs(&req.body).map_err(|e| e.to_api_error())?;
            let mut map = JsonMap::new();
            for (k, v) in pairs {
                map.entry(k).or_insert(Value::String(v));
            }
            Ok(map)
        }
        _ => Err(ApiError::UnsupportedMediaType(
            req.header("content-type").unwrap_or("").to_owned(),
        )),
    }
}

/// Parses `bytes` as a JSON object, checking the nesting depth first.
fn parse_json_object(bytes: &[u8]) -> Result<JsonMap, ApiError> {
    if !json_depth_within(bytes, limits::HTTP_JSON_DEPTH_MAX) {
        return Err(ApiError::JsonTooDeep);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::NotAnObject(python_type_name(&other))),
        Err(e) => Err(ApiError::JsonParse(e.to_string())),
    }
}

/// The Python type name DRF reports for a JSON value that is not an object.
fn python_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// True when no `[` / `{` in `bytes` (outside strings) nests deeper than
/// `max`. A byte scan that allocates nothing, run before the JSON parser so
/// that a hostile body cannot make it recurse.
pub fn json_depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut scan = JsonScan::default();
    for &b in bytes {
        if !scan.outside_string(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Tracks whether a byte of JSON text is inside a string literal.
#[derive(Debug, Default)]
struct JsonScan {
    in_string: bool,
    escaped: bool,
}

impl JsonScan {
    /// True when `b` (the next byte) is structural: outside every string
    /// literal and not one of its quotes.
    fn outside_string(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return false;
        }
        if b == b'"' {
            self.in_string = true;
            return false;
        }
        true
    }
}

/// Drops the whitespace outside strings from valid JSON text, keeping
/// everything else (key order included) byte for byte.
fn minify_json(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut scan = JsonScan::default();
    for &b in text.as_bytes() {
        if scan.outside_string(b) && matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
    }
    out
}

/// A room from a query parameter or a body field: empty is absent; longer
/// than 128 characters is DRF's max-length error. The limit also holds in
/// bytes ([`limits::ROOM_LEN_MAX`]), because that is what a record can
/// store: a room of 128 characters that are not all ASCII is refused with the
/// same error. A control character is refused as on the binary protocol.
/// The room is returned as sent; its ASCII letters are lower-cased later.
///
/// # Errors
/// [`ApiError::RoomTooLong`], [`ApiError::RoomInvalid`].
pub fn room_param(value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(room) if room.len() > limits::ROOM_LEN_MAX => Err(ApiError::RoomTooLong),
        Some(room) if room.chars().any(char::is_control) => Err(ApiError::RoomInvalid),
        Some(room) => Ok(Some(room.to_owned())),
    }
}

/// The room a request on a channel of type `kind` works on: required (400
/// `RoomRequired`) on `separate_rooms` channels, ignored on `default`
/// channels, for poll, publish and history alike. (The one exception, a
/// history read of a whole `separate_rooms` channel by an admin or
/// `ignore_acl` key, is decided before this is asked.)
///
/// Syncano's history looked a room up even on a `default` channel and so
/// returned an empty page for any room (§1.7); here the room is ignored
/// there as it is by poll and publish, so the page is the channel's.
///
/// # Errors
/// [`ApiError::RoomRequired`].
pub fn channel_room(kind: ChannelType, room: Option<&str>) -> Result<Option<&str>, ApiError> {
    match (kind, room) {
        (ChannelType::Default, _) => Ok(None),
        (ChannelType::SeparateRooms, Some(room)) if !room.is_empty() => Ok(Some(room)),
        (ChannelType::SeparateRooms, _) => Err(ApiError::RoomRequired),
    }
}

/// A whole number as Python's `int()` reads it: surrounding whitespace, an
/// optional sign, decimal digits. Magnitudes past `u64` saturate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PyInt {
    /// Zero or more.
    NonNegative(u64),
    /// Less than zero.
    Negative,
}

/// Parses `s` like Python's `int(s)`; `None` where that raises.
pub(crate) fn parse_py_int(s: &str) -> Option<PyInt> {
    let s = s.trim();
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(b.saturating_sub(b'0')))
    });
    Some(if negative && magnitude > 0 {
        PyInt::Negative
    } else {
        PyInt::NonNegative(magnitude)
    })
}

/// Parses `s` like DRF's `IntegerField`: Python `int()` after dropping a
/// decimal tail of zeros (`"5.0"` and `"5."` are 5).
fn parse_drf_integer(s: &str) -> Option<PyInt> {
    let t = s.trim_end();
    let t = match t.rfind('.') {
        Some(dot) if t.get(dot..)?.bytes().skip(1).all(|b| b == b'0') => t.get(..dot)?,
        _ => t,
    };
    parse_py_int(t)
}

/// The parameters of `GET …/poll/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollParams {
    /// Return the first message with an id greater than this; `None`: only
    /// messages published after the poll is registered. A negative value is
    /// `Some(0)` (every id is greater).
    pub last_id: Option<u64>,
    /// The room (for `separate_rooms` channels), as sent.
    pub room: Option<String>,
}

/// The poll parameters of `req`.
///
/// Only long polling is served. `?transport=websocket` on a request that is
/// not a WebSocket upgrade gets Syncano's own 400 (`Expected WebSocket
/// connection.`); on a real upgrade request it gets 501, as this server
/// does not speak WebSocket. Any other `transport` value is ignored, as
/// Syncano did.
///
/// # Errors
/// [`ApiError::WebSocketExpected`], [`ApiError::WebSocketUnsupported`],
/// [`ApiError::LastIdInvalid`] for a `last_id` DRF would not read as an
/// integer, [`ApiError::RoomTooLong`].
pub fn poll_params(req: &Request) -> Result<PollParams, ApiError> {
    if req.query("transport") == Some("websocket") {
        let upgrade = req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        return Err(if upgrade {
            ApiError::WebSocketUnsupported
        } else {
            ApiError::WebSocketExpected
        });
    }
    let last_id = match req.query("last_id") {
        None => None,
        Some(s) => match parse_drf_integer(s).ok_or(ApiError::LastIdInvalid)? {
            PyInt::NonNegative(n) => Some(n),
            PyInt::Negative => Some(0),
        },
    };
    let room = room_param(req.query("room"))?;
    Ok(PollParams { last_id, room })
}

/// The parameters of `POST …/publish/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishParams {
    /// The payload: a JSON object as compact UTF-8 text, in the key order the
    /// client sent. Store it with content type JSON.
    pub payload: Vec<u8>,
    /// The room, as sent (ignored on `default` channels).
    pub room: Option<String>,
}

/// The publish parameters of `req`, whose body parsed into `body`.
///
/// `payload` is a JSON object, or a string holding one (what both legacy
/// clients send); absent means `{}`. `room` is a string (a number is taken
/// as its text, like DRF's `CharField`); empty means absent.
///
/// # Errors
/// The payload and room errors of §1.4 (and DRF's null / not-a-string field
/// errors).
pub fn publish_params(req: &Request, body: &JsonMap) -> Result<PublishParams, ApiError> {
    let raw = raw_payload(req);
    let payload = payload_bytes(body.get("payload"), raw.as_deref())?;
    let room = match body.get("room") {
        None => None,
        Some(Value::String(s)) => room_param(Some(s))?,
        Some(Value::Number(n)) => room_param(Some(&n.to_string()))?,
        Some(Value::Null) => return Err(ApiError::FieldNull("room")),
        Some(_) => return Err(ApiError::NotAString("room")),
    };
    Ok(PublishParams { payload, room })
}

/// The raw text of the JSON body's `payload`, so that an object payload
/// keeps its key order (`serde_json::Map` sorts keys).
fn raw_payload(req: &Request) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Body {
        payload: Option<Box<RawValue>>,
    }
    if req.media_type().as_deref() != Some("application/json") {
        return None;
    }
    // The body parsed once already; this only fails for a repeated
    // `payload` key, and then the parsed value (the last one) is used.
    serde_json::from_slice::<Body>(&req.body).ok()?.payload
}

/// Checks a payload field and returns it as compact JSON text.
fn payload_bytes(value: Option<&Value>, raw: Option<&RawValue>) -> Result<Vec<u8>, ApiError> {
    match value {
        None => Ok(b"{}".to_vec()),
        Some(Value::Null) => Err(ApiError::FieldNull("payload")),
        Some(obj @ Value::Object(_)) => Ok(match raw {
            Some(raw) if serde_json::from_str::<Value>(raw.get()).ok().as_ref() == Some(obj) => {
                minify_json(raw.get())
            }
            // Serializing a parsed value cannot fail.
            _ => serde_json::to_vec(obj).expect("a JSON value always serializes"),
        }),
        Some(Value::String(text)) => {
            if !json_depth_within(text.as_bytes(), limits::HTTP_JSON_DEPTH_MAX) {
                return Err(ApiError::PayloadNotJson);
            }
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(_)) => Ok(minify_json(text)),
                Ok(_) => Err(ApiError::PayloadInvalidFormat),
                Err(_) => Err(ApiError::PayloadNotJson),
            }
        }
        Some(_) => Err(ApiError::PayloadInvalidFormat),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::http::request::parse_request;

    fn req(head_and_body: &str) -> Request {
        parse_request(head_and_body.as_bytes())
            .expect("valid request")
            .expect("complete request")
            .0
    }

    fn get(target: &str, headers: &str) -> Request {
        req(&format!("GET {target} HTTP/1.1\r\n{headers}\r\n"))
    }

    fn post(content_type: &str, body: &str) -> Request {
        req(&format!(
            "POST /p HTTP/1.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn json_post(body: &str) -> (Request, JsonMap) {
        let r = post("application/json", body);
        let map = parse_body(&r).expect("body parses");
        (r, map)
    }

    #[test]
    fn each_api_key_source_is_read_in_precedence_order() {
        let body: JsonMap =
            serde_json::from_str(r#"{"_api_key":"body","_user_key":"ubody"}"#).unwrap();
        let all = "X-API-KEY: header\r\nAuthorization: token auth\r\nX-USER-KEY: uheader\r\n";
        // (target, headers, body, api key, user key)
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a JsonMap>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let table: &[Case<'_>] = &[
            (
                "/?api_key=q1&apikey=q2&user_key=uq1&userkey=uq2",
                all,
                Some(&body),
                Some("header"),
                Some("uheader"),
            ),
            (
                "/?api_key=q1&apikey=q2&user_key=uq1&userkey=uq2",
                "Authorization: token auth\r\n",
                Some(&body),
                Some("q1"),
                Some("uq1"),
            ),
            (
                "/?apikey=q2&userkey=uq2",
                "Authorization: token auth\r\n",
                Some(&body),
                Some("q2"),
                Some("uq2"),
            ),
            (
                "/",
                "Authorization: token auth\r\n",
                Some(&body),
                Some("auth"),
                Some("ubody"),
            ),
            (
                "/",
                "Authorization: Bearer b-1\r\n",
                None,
                Some("b-1"),
                None,
            ),
            ("/", "", Some(&body), Some("body"), Some("ubody")),
            ("/", "", None, None, None),
            // Empty values are absent and fall through to the next source.
            (
                "/?api_key=&apikey=q2&user_key=",
                "X-API-KEY: \r\n",
                Some(&body),
                Some("q2"),
                Some("ubody"),
            ),
            // Authorization needs exactly a scheme and a key.
            ("/", "Authorization: justakey\r\n", None, None, None),
            ("/", "Authorization: token a b\r\n", None, None, None),
        ];
        for (target, headers, body, api, user) in table {
            let c = credentials(&get(target, headers), *body);
            assert_eq!(c.api_key.as_deref(), *api, "{target} {headers:?}");
            assert_eq!(c.user_key.as_deref(), *user, "{target} {headers:?}");
        }
    }

    #[test]
    fn body_keys_must_be_non_empty_strings() {
        let body: JsonMap = serde_json::from_str(r#"{"_api_key":7,"_user_key":""}"#).unwrap();
        assert_eq!(
            credentials(&get("/", ""), Some(&body)),
            Credentials::default()
        );
    }

    #[test]
    fn bodies_parse_by_media_type() {
        let (_, m) = json_post(r#"{"payload":{"a":1},"room":"r"}"#);
        assert_eq!(m.get("room"), Some(&Value::String("r".into())));
        let r = post(
            "application/x-www-form-urlencoded; charset=utf-8",
            "room=r+1&room=r2&payload=%7B%7D",
        );
        let m = parse_body(&r).unwrap();
        assert_eq!(m.get("room"), Some(&Value::String("r 1".into())));
        assert_eq!(m.get("payload"), Some(&Value::String("{}".into())));
        // JSON sent as text/plain (no CORS preflight) is JSON.
        let m = parse_body(&post("text/plain;charset=UTF-8", r#"{"room":"r"}"#)).unwrap();
        assert_eq!(m.get("room"), Some(&Value::String("r".into())));
        // An empty body is {} whatever its type.
        assert!(parse_body(&get("/", "Content-Type: text/plain\r\n"))
            .unwrap()
            .is_empty());
        // The JS client's GET with a {} body.
        let r =
            req("GET / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        assert!(parse_body(&r).unwrap().is_empty());
    }

    #[test]
    fn bad_bodies_get_drf_errors() {
        let table: &[(&str, &str, &str)] = &[
            (
                "application/json",
                "{",
                r#"{"detail":"JSON parse error - EOF while parsing an object at line 1 column 1"}"#,
            ),
            (
                "application/json",
                "[1]",
                r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#,
            ),
            (
                "application/json",
                "\"s\"",
                r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got str."]}"#,
            ),
            (
                "text/plain",
                "hi",
                r#"{"detail":"JSON parse error - expected value at line 1 column 1"}"#,
            ),
            (
                "text/html",
                "hi",
                r#"{"detail":"Unsupported media type \"text/html\" in request."}"#,
            ),
        ];
        for (ct, body, want) in table {
            let err = parse_body(&post(ct, body)).unwrap_err();
            assert_eq!(err.status(), if *ct == "text/html" { 415 } else { 400 });
            assert_eq!(String::from_utf8(err.body()).unwrap(), *want, "{body}");
        }
    }

    #[test]
    fn nesting_is_limited_before_parsing() {
        let max = limits::HTTP_JSON_DEPTH_MAX;
        let nested = |n: usize| format!(r#"{{"a":{}1{}}}"#, "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(parse_body(&post("application/json", &nested(max))).is_ok());
        assert_eq!(
            parse_body(&post("application/json", &nested(max + 1))),
            Err(ApiError::JsonTooDeep)
        );
        // Brackets inside strings do not count, escaped quotes do not end strings.
        let in_string = format!(r#"{{"a":"\"{}"}}"#, "[".repeat(max * 2));
        assert!(parse_body(&post("application/json", &in_string)).is_ok());
        assert!(json_depth_within(b"[[]][[]]", 2));
        assert!(!json_depth_within(b"[[[]]]", 2));
    }

    #[test]
    fn poll_params_follow_drf() {
        let table: &[(&str, Result<PollParams, ApiError>)] = &[
            ("/?last_id=&room=", Ok(PollParams::default())),
            ("/", Ok(PollParams::default())),
            (
                "/?last_id=41&room=Lobby",
                Ok(PollParams {
                    last_id: Some(41),
                    room: Some("Lobby".into()),
                }),
            ),
            (
                "/?last_id=+7",
                Ok(PollParams {
                    last_id: Some(7),
                    room: None,
                }),
            ),
            (
                "/?last_id=%207%20",
                Ok(PollParams {
                    last_id: Some(7),
                    room: None,
                }),
            ),
            (
                "/?last_id=7.0",
                Ok(PollParams {
                    last_id: Some(7),
                    room: None,
                }),
            ),
            (
                "/?last_id=7.",
                Ok(PollParams {
                    last_id: Some(7),
                    room: None,
                }),
            ),
            (
                "/?last_id=-3",
                Ok(PollParams {
                    last_id: Some(0),
                    room: None,
                }),
            ),
            (
                "/?last_id=99999999999999999999999",
                Ok(PollParams {
                    last_id: Some(u64::MAX),
                    room: None,
                }),
            ),
            ("/?last_id=abc", Err(ApiError::LastIdInvalid)),
            ("/?last_id=7.5", Err(ApiError::LastIdInvalid)),
            ("/?last_id=0x10", Err(ApiError::LastIdInvalid)),
            ("/?last_id=-", Err(ApiError::LastIdInvalid)),
            ("/?transport=websocket", Err(ApiError::WebSocketExpected)),
            (
                "/?transport=longpoll&last_id=1",
                Ok(PollParams {
                    last_id: Some(1),
                    room: None,
                }),
            ),
        ];
        for (target, want) in table {
            assert_eq!(&poll_params(&get(target, "")), want, "{target}");
        }
        let upgrade = get(
            "/?transport=websocket",
            "Upgrade: websocket\r\nConnection: Upgrade\r\n",
        );
        assert_eq!(poll_params(&upgrade), Err(ApiError::WebSocketUnsupported));
    }

    #[test]
    fn rooms_are_limited_to_128() {
        let ok = "r".repeat(128);
        assert_eq!(
            poll_params(&get(&format!("/?room={ok}"), "")).unwrap().room,
            Some(ok.clone())
        );
        let long = "r".repeat(129);
        assert_eq!(
            poll_params(&get(&format!("/?room={long}"), "")),
            Err(ApiError::RoomTooLong)
        );
        // 100 characters, 200 bytes: more than a record can hold.
        assert_eq!(
            room_param(Some(&"\u{e9}".repeat(100))),
            Err(ApiError::RoomTooLong)
        );
        let (r, m) = json_post(&format!(r#"{{"room":"{long}"}}"#));
        assert_eq!(publish_params(&r, &m), Err(ApiError::RoomTooLong));
        // The binary protocol's room rule: no control characters.
        assert_eq!(
            poll_params(&get("/?room=a%0Ab", "")),
            Err(ApiError::RoomInvalid)
        );
        assert_eq!(
            String::from_utf8(ApiError::RoomInvalid.body()).unwrap(),
            r#"{"room":["Rooms may not contain control characters."]}"#
        );
    }

    #[test]
    fn payloads_are_objects_or_strings_holding_objects() {
        let table: &[(&str, Result<&str, ApiError>)] = &[
            (r#"{}"#, Ok("{}")),
            (
                r#"{"payload":{"z":1, "a":[1, 2]}}"#,
                Ok(r#"{"z":1,"a":[1,2]}"#),
            ),
            (
                r#"{"payload":"{\"z\": \"a b\", \"a\": 2}"}"#,
                Ok(r#"{"z":"a b","a":2}"#),
            ),
            (
                r#"{"payload":"{\"s\": \"q\\\" x\"}"}"#,
                Ok(r#"{"s":"q\" x"}"#),
            ),
            (r#"{"payload":[1]}"#, Err(ApiError::PayloadInvalidFormat)),
            (r#"{"payload":5}"#, Err(ApiError::PayloadInvalidFormat)),
            (r#"{"payload":"[1]"}"#, Err(ApiError::PayloadInvalidFormat)),
            (r#"{"payload":"5"}"#, Err(ApiError::PayloadInvalidFormat)),
            (r#"{"payload":"{nope"}"#, Err(ApiError::PayloadNotJson)),
            (r#"{"payload":""}"#, Err(ApiError::PayloadNotJson)),
            (r#"{"payload":null}"#, Err(ApiError::FieldNull("payload"))),
        ];
        for (body, want) in table {
            let (r, m) = json_post(body);
            let got = publish_params(&r, &m).map(|p| String::from_utf8(p.payload).unwrap());
            assert_eq!(got.as_deref().map_err(Clone::clone), want.clone(), "{body}");
        }
        let deep = format!(r#"{{"payload":"{}{}"}}"#, "[".repeat(100), "]".repeat(100));
        let (r, m) = json_post(&deep);
        assert_eq!(publish_params(&r, &m), Err(ApiError::PayloadNotJson));
    }

    #[test]
    fn publish_reads_form_bodies_and_room_types() {
        let r = post(
            "application/x-www-form-urlencoded",
            "payload=%7B%22a%22%3A+1%7D&room=Lobby",
        );
        let m = parse_body(&r).unwrap();
        let p = publish_params(&r, &m).unwrap();
        assert_eq!(p.payload, br#"{"a":1}"#);
        assert_eq!(p.room.as_deref(), Some("Lobby"));
        let table: &[(&str, Result<Option<&str>, ApiError>)] = &[
            (r#"{"room":""}"#, Ok(None)),
            (r#"{"room":12}"#, Ok(Some("12"))),
            (r#"{"room":true}"#, Err(ApiError::NotAString("room"))),
            (r#"{"room":null}"#, Err(ApiError::FieldNull("room"))),
        ];
        for (body, want) in table {
            let (r, m) = json_post(body);
            let got = publish_params(&r, &m).map(|p| p.room);
            assert_eq!(
                got.as_ref().map(|o| o.as_deref()),
                want.as_ref().map(|o| *o),
                "{body}"
            );
        }
    }

    #[test]
    fn rooms_are_required_only_on_separate_rooms_channels() {
        use ChannelType::*;
        let table = [
            (Default, None, Ok(None)),
            (Default, Some("r"), Ok(None)),
            (SeparateRooms, Some("r"), Ok(Some("r"))),
            (SeparateRooms, None, Err(ApiError::RoomRequired)),
            (SeparateRooms, Some(""), Err(ApiError::RoomRequired)),
        ];
        for (kind, room, want) in table {
            assert_eq!(channel_room(kind, room), want, "{kind:?} {room:?}");
        }
    }

    #[test]
    fn py_int_matches_python() {
        let table: &[(&str, Option<PyInt>)] = &[
            ("0", Some(PyInt::NonNegative(0))),
            (" 12 ", Some(PyInt::NonNegative(12))),
            ("+3", Some(PyInt::NonNegative(3))),
            ("-0", Some(PyInt::NonNegative(0))),
            ("-1", Some(PyInt::Negative)),
            ("", None),
            ("1e3", None),
            ("1.0", None),
            ("++1", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_py_int(s), *want, "{s:?}");
        }
    }
}
