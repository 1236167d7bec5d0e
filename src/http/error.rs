//! The error catalogue of the Syncano v1.1 shim: every error answer, with the
//! status and the exact body bytes the Syncano platform (Django REST
//! framework) sends (`legacy-apis.md` §1.9).
//!
//! Bodies are compact JSON serialized by `serde_json`, as DRF's
//! `JSONRenderer` emits them: `{"detail":"Not found."}`. Field errors are a
//! list of strings for serializer errors (`{"room":["..."]}`) and a bare
//! string for Syncano's own exceptions (`{"room":"..."}`).

use serde_json::{json, Value};

use crate::limits;

/// One error answer of the HTTP shim. [`ApiError::status`] and
/// [`ApiError::body`] give the response; [`ApiError::retry_after_secs`] the
/// `Retry-After` header, for the variants that carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `{"room": "This field is required for channels with separate rooms."}`.
    RoomRequired,
    /// 400 `{"last_id": ["A valid integer is required."]}` (poll only).
    LastIdInvalid,
    /// 400 `{"room": ["Ensure this field has no more than 128 characters."]}`.
    RoomTooLong,
    /// 400 `{"room": ["Rooms may not contain control characters."]}` (the
    /// room rule of the binary protocol, on every path).
    RoomInvalid,
    /// 400 `{"payload": ["Payload passed in invalid format."]}`.
    PayloadInvalidFormat,
    /// 400 `{"payload": ["Not a valid JSON string."]}`.
    PayloadNotJson,
    /// 400 `{"detail": "Incorrect page parameter provided."}`.
    BadPageParameter,
    /// 400 `{"<field>": ["<message>"], ...}`: DRF serializer errors, one
    /// message per field, rendered in the given (declaration) order.
    Validation(Vec<(String, String)>),
    /// 400 `{"detail": "JSON parse error - <message>"}`: the body is not JSON.
    JsonParse(String),
    /// 400 `{"detail": "JSON parse error - nesting deeper than 64 levels"}`.
    JsonTooDeep,
    /// 400 `{"non_field_errors": ["Invalid data. Expected a dictionary, but
    /// got <type>."]}`: the body is valid JSON but not an object; the text is
    /// the Python type name DRF reports (`list`, `str`, `int`, ...).
    NotAnObject(&'static str),
    /// 400 `{"<field>": ["This field may not be null."]}`.
    FieldNull(&'static str),
    /// 400 `{"<field>": ["Not a valid string."]}`.
    NotAString(&'static str),
    /// 400 `{"detail": "Expected WebSocket connection."}`: `?transport=websocket`
    /// on a plain HTTP request.
    WebSocketExpected,
    /// 400 `{"detail": "Malformed request: <why>"}`: the HTTP framing is broken.
    Malformed(&'static str),
    /// 400 `{"detail": "Too many query parameters."}`.
    TooManyParameters,
    /// 403 `{"detail": "No such API Key."}`.
    NoSuchApiKey,
    /// 403 `{"detail": "You do not have permission to perform this action."}`.
    PermissionDenied,
    /// 403 `{"detail": "Custom publish not allowed on this channel."}`.
    CustomPublishDisabled,
    /// 403 `{"detail": "You do not have permission to publish data to specified channel."}`.
    ObjectPublishDenied,
    /// 404 `{"detail": "Not found."}` (DRF's default: unknown path, or an
    /// unknown channel on poll, publish and detail).
    NotFound,
    /// 404 `{"detail": "Channel was not found."}` (history on an unknown channel).
    ChannelNotFound,
    /// 404 `{"detail": "Instance was not found."}`.
    InstanceNotFound,
    /// 405 `{"detail": "Method \"<method>\" not allowed."}`; the response also
    /// carries `Allow`.
    MethodNotAllowed(String),
    /// 408 `{"detail": "Request timeout."}`: the request's head or body did
    /// not arrive in time; the connection is closed.
    RequestTimeout,
    /// 413 `{"detail": "Request size limit exceeded (65536)."}`.
    PayloadTooLarge,
    /// 415 `{"detail": "Unsupported media type \"<type>\" in request."}`.
    UnsupportedMediaType(String),
    /// 429 DRF's throttle body, `Request was throttled. Expected available
    /// in N second(s).`, with `Retry-After: N`.
    Throttled {
        /// Seconds until the client may try again.
        retry_after_secs: u32,
    },
    /// 431 `{"detail": "Request header fields too large."}`.
    HeadTooLarge,
    /// 501 `{"detail": "Transfer-Encoding is not supported; send Content-Length."}`.
    TransferEncodingUnsupported,
    /// 501 `{"detail": "WebSocket transport is not supported; use long polling."}`.
    WebSocketUnsupported,
    /// 503 `{"detail": "<why>"}`: the server cannot store now (storage full
    /// or failed, shutting down).
    Unavailable(String),
    /// 500 `{"detail": "A server error occurred."}` (DRF's text).
    ServerError,
    /// 503 `{"detail": "Too many parked polls; retry later."}` with `Retry-After`.
    TooManyPolls {
        /// Seconds until the client may try again.
        retry_after_secs: u32,
    },
}

const ROOM_REQUIRED: &str = "This field is required for channels with separate rooms.";
const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";

impl ApiError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            RoomRequired | LastIdInvalid | RoomTooLong | RoomInvalid | PayloadInvalidFormat
            | PayloadNotJson | BadPageParameter | Validation(_) | JsonParse(_) | JsonTooDeep
            | NotAnObject(_) | FieldNull(_) | NotAString(_) | WebSocketExpected | Malformed(_)
            | TooManyParameters => 400,
            NoSuchApiKey | PermissionDenied | CustomPublishDisabled | ObjectPublishDenied => 403,
            NotFound | ChannelNotFound | InstanceNotFound => 404,
            MethodNotAllowed(_) => 405,
            RequestTimeout => 408,
            PayloadTooLarge => 413,
            UnsupportedMediaType(_) => 415,
            Throttled { .. } => 429,
            HeadTooLarge => 431,
            TransferEncodingUnsupported | WebSocketUnsupported => 501,
            TooManyPolls { .. } | Unavailable(_) => 503,
            ServerError => 500,
        }
    }

    /// Seconds for the `Retry-After` header, for 429 and 503.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            ApiError::Throttled { retry_after_secs }
            | ApiError::TooManyPolls { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The body as a JSON value (see [`ApiError::body`] for the bytes, which
    /// keep the field order of [`ApiError::Validation`]; this value does not).
    pub fn to_json(&self) -> Value {
        use ApiError::*;
        let field_list = |field: &str, msg: &str| json!({ field: [msg] });
        match self {
            RoomRequired => json!({ "room": ROOM_REQUIRED }),
            LastIdInvalid => field_list("last_id", "A valid integer is required."),
            RoomInvalid => field_list("room", "Rooms may not contain control characters."),
            RoomTooLong => field_list(
                "room",
                &format!(
                    "Ensure this field has no more than {} characters.",
                    limits::ROOM_LEN_MAX
                ),
            ),
            PayloadInvalidFormat => field_list("payload", "Payload passed in invalid format."),
            PayloadNotJson => field_list("payload", "Not a valid JSON string."),
            NotAnObject(found) => field_list(
                "non_field_errors",
                &format!("Invalid data. Expected a dictionary, but got {found}."),
            ),
            FieldNull(field) => field_list(field, "This field may not be null."),
            Validation(errors) => {
                let map = errors
                    .iter()
                    .map(|(field, msg)| (field.clone(), json!([msg])))
                    .collect();
                Value::Object(map)
            }
            NotAString(field) => field_list(field, "Not a valid string."),
            _ => json!({ "detail": self.detail() }),
        }
    }

    /// The `detail` text of the errors whose body is `{"detail": ...}`.
    fn detail(&self) -> String {
        use ApiError::*;
        let s = match self {
            BadPageParameter => "Incorrect page parameter provided.",
            JsonParse(msg) => return format!("JSON parse error - {msg}"),
            JsonTooDeep => {
                return format!(
                    "JSON parse error - nesting deeper than {} levels",
                    limits::HTTP_JSON_DEPTH_MAX
                )
            }
            WebSocketExpected => "Expected WebSocket connection.",
            Malformed(why) => return format!("Malformed request: {why}"),
            TooManyParameters => "Too many query parameters.",
            NoSuchApiKey => "No such API Key.",
            PermissionDenied => PERMISSION_DENIED,
            CustomPublishDisabled => "Custom publish not allowed on this channel.",
            ObjectPublishDenied => {
                "You do not have permission to publish data to specified channel."
            }
            NotFound => "Not found.",
            ChannelNotFound => "Channel was not found.",
            InstanceNotFound => "Instance was not found.",
            MethodNotAllowed(m) => return format!("Method \"{m}\" not allowed."),
            RequestTimeout => "Request timeout.",
            PayloadTooLarge => {
                return format!(
                    "Request size limit exceeded ({}).",
                    limits::HTTP_BODY_LEN_MAX
                )
            }
            UnsupportedMediaType(t) => {
                return format!("Unsupported media type \"{t}\" in request.")
            }
            Throttled { retry_after_secs } => {
                let unit = if *retry_after_secs == 1 {
                    "second"
                } else {
                    "seconds"
                };
                return format!(
                    "Request was throttled. Expected available in {retry_after_secs} {unit}."
                );
            }
            HeadTooLarge => "Request header fields too large.",
            TransferEncodingUnsupported => {
                "Transfer-Encoding is not supported; send Content-Length."
            }
            WebSocketUnsupported => "WebSocket transport is not supported; use long polling.",
            TooManyPolls { .. } => "Too many parked polls; retry later.",
            Unavailable(why) => return why.clone(),
            ServerError => "A server error occurred.",
            // The field errors are built in `to_json` and never get here.
            RoomRequired | LastIdInvalid | RoomTooLong | RoomInvalid | PayloadInvalidFormat
            | PayloadNotJson | NotAnObject(_) | FieldNull(_) | NotAString(_) | Validation(_) => "",
        };
        s.to_owned()
    }

    /// The exact body bytes: compact JSON, as DRF renders it.
    pub fn body(&self) -> Vec<u8> {
        if let ApiError::Validation(errors) = self {
            // Built by hand: a `serde_json::Map` would sort the fields.
            let mut out = vec![b'{'];
            for (i, (field, msg)) in errors.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Serializing strings into a Vec cannot fail.
                serde_json::to_writer(&mut out, field).expect("a string always serializes");
                out.extend_from_slice(b":[");
                serde_json::to_writer(&mut out, msg).expect("a string always serializes");
                out.extend_from_slice(b"]");
            }
            out.push(b'}');
            return out;
        }
        // Serializing a `Value` built from strings cannot fail.
        serde_json::to_vec(&self.to_json()).expect("a JSON value always serializes")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.to_json())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_entry_has_its_exact_status_and_body() {
        let table: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::RoomRequired,
                400,
                r#"{"room":"This field is required for channels with separate rooms."}"#,
            ),
            (
                ApiError::LastIdInvalid,
                400,
                r#"{"last_id":["A valid integer is required."]}"#,
            ),
            (
                ApiError::RoomTooLong,
                400,
                r#"{"room":["Ensure this field has no more than 128 characters."]}"#,
            ),
            (
                ApiError::PayloadInvalidFormat,
                400,
                r#"{"payload":["Payload passed in invalid format."]}"#,
            ),
            (
                ApiError::PayloadNotJson,
                400,
                r#"{"payload":["Not a valid JSON string."]}"#,
            ),
            (
                ApiError::BadPageParameter,
                400,
                r#"{"detail":"Incorrect page parameter provided."}"#,
            ),
            (
                ApiError::JsonParse("expected value at line 1 column 1".into()),
                400,
                r#"{"detail":"JSON parse error - expected value at line 1 column 1"}"#,
            ),
            (
                ApiError::JsonTooDeep,
                400,
                r#"{"detail":"JSON parse error - nesting deeper than 64 levels"}"#,
            ),
            (
                ApiError::NotAnObject("list"),
                400,
                r#"{"non_field_errors":["Invalid data. Expected a dictionary, but got list."]}"#,
            ),
            (
                ApiError::FieldNull("payload"),
                400,
                r#"{"payload":["This field may not be null."]}"#,
            ),
            (
                ApiError::NotAString("room"),
                400,
                r#"{"room":["Not a valid string."]}"#,
            ),
            (
                ApiError::WebSocketExpected,
                400,
                r#"{"detail":"Expected WebSocket connection."}"#,
            ),
            (
                ApiError::NoSuchApiKey,
                403,
                r#"{"detail":"No such API Key."}"#,
            ),
            (
                ApiError::PermissionDenied,
                403,
                r#"{"detail":"You do not have permission to perform this action."}"#,
            ),
            (
                ApiError::CustomPublishDisabled,
                403,
                r#"{"detail":"Custom publish not allowed on this channel."}"#,
            ),
            (
                ApiError::ObjectPublishDenied,
                403,
                r#"{"detail":"You do not have permission to publish data to specified channel."}"#,
            ),
            (ApiError::NotFound, 404, r#"{"detail":"Not found."}"#),
            (
                ApiError::ChannelNotFound,
                404,
                r#"{"detail":"Channel was not found."}"#,
            ),
            (
                ApiError::InstanceNotFound,
                404,
                r#"{"detail":"Instance was not found."}"#,
            ),
            (
                ApiError::MethodNotAllowed("PATCH".into()),
                405,
                r#"{"detail":"Method \"PATCH\" not allowed."}"#,
            ),
            (
                ApiError::PayloadTooLarge,
                413,
                r#"{"detail":"Request size limit exceeded (65536)."}"#,
            ),
            (
                ApiError::UnsupportedMediaType("text/plain".into()),
                415,
                r#"{"detail":"Unsupported media type \"text/plain\" in request."}"#,
            ),
            (
                ApiError::Throttled {
                    retry_after_secs: 1,
                },
                429,
                r#"{"detail":"Request was throttled. Expected available in 1 second."}"#,
            ),
            (
                ApiError::Throttled {
                    retry_after_secs: 3,
                },
                429,
                r#"{"detail":"Request was throttled. Expected available in 3 seconds."}"#,
            ),
            (
                ApiError::HeadTooLarge,
                431,
                r#"{"detail":"Request header fields too large."}"#,
            ),
            (
                ApiError::TransferEncodingUnsupported,
                501,
                r#"{"detail":"Transfer-Encoding is not supported; send Content-Length."}"#,
            ),
            (
                ApiError::TooManyPolls {
                    retry_after_secs: 2,
                },
                503,
                r#"{"detail":"Too many parked polls; retry later."}"#,
            ),
        ];
        for (err, status, body) in table {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(String::from_utf8(err.body()).unwrap(), body, "{err:?}");
        }
    }

    #[test]
    fn only_throttling_answers_carry_retry_after() {
        assert_eq!(
            ApiError::Throttled {
                retry_after_secs: 7
            }
            .retry_after_secs(),
            Some(7)
        );
        assert_eq!(
            ApiError::TooManyPolls {
                retry_after_secs: 1
            }
            .retry_after_secs(),
            Some(1)
        );
        assert_eq!(ApiError::NotFound.retry_after_secs(), None);
        assert_eq!(ApiError::PayloadTooLarge.retry_after_secs(), None);
    }

    #[test]
    fn validation_errors_keep_their_field_order() {
        let e = ApiError::Validation(vec![
            ("type".into(), "\"x\" is not a valid choice.".into()),
            (
                "custom_publish".into(),
                "\"y\" is not a valid boolean.".into(),
            ),
        ]);
        assert_eq!(e.status(), 400);
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"type":["\"x\" is not a valid choice."],"custom_publish":["\"y\" is not a valid boolean."]}"#
        );
        assert_eq!(e.to_json()["type"][0], "\"x\" is not a valid choice.");
    }

    #[test]
    fn messages_with_quotes_are_escaped() {
        let e = ApiError::JsonParse("bad \"x\"\n".into());
        assert_eq!(
            e.body(),
            br#"{"detail":"JSON parse error - bad \"x\"\n"}"#.to_vec()
        );
    }
}
