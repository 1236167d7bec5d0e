//! HTTP/1.1 response writing, straight into the connection's output buffer.
//!
//! Every response carries the CORS headers (`Access-Control-Allow-Origin: *`
//! and `Access-Control-Expose-Headers: X-Last-Id`). The origin is the wildcard
//! rather than an echo of `Origin` because the API authenticates with headers
//! and query parameters, never cookies, so no response needs
//! `Access-Control-Allow-Credentials`, and the wildcard keeps responses
//! cacheable by any intermediary (Syncano's `django-cors-headers` setup
//! answered `*` as well).
//!
//! Framing rules: a body always comes with `Content-Length` (also `0`), and
//! with `Content-Type: application/json` when it is not empty; a 204 has
//! neither header and no body (RFC 9110 §8.6). A `HEAD` response carries the
//! headers of the body it does not send.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::io::Write as _;

use crate::http::error::ApiError;
use crate::http::request::{Request, Version};
use crate::time::civil_from_days;

/// `Access-Control-Allow-Methods` of a preflight answer.
pub const CORS_ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
/// `Access-Control-Allow-Headers` of a preflight answer whose request names
/// no (or unusable) `Access-Control-Request-Headers`.
pub const CORS_ALLOW_HEADERS: &str = "X-API-KEY, X-USER-KEY, Authorization, Content-Type";
/// `Access-Control-Max-Age` of a preflight answer, in seconds (24 h).
pub const CORS_MAX_AGE_SECS: u32 = 86_400;

/// How a response is framed, beyond its status, headers and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseOptions {
    /// The request's version; the response uses the same.
    pub version: Version,
    /// Whether the connection stays open. When false, the response says
    /// `Connection: close` and the caller closes after writing it.
    pub keep_alive: bool,
    /// The request was `HEAD`: write the headers, not the body.
    pub head_only: bool,
    /// `Retry-After` seconds (429, 503).
    pub retry_after_secs: Option<u32>,
    /// `X-Last-Id` (poll answers produced by a waiting poll).
    pub last_id: Option<u64>,
    /// `Date`, in microseconds since the epoch (time is an input).
    pub date_us: Option<u64>,
}

impl ResponseOptions {
    /// Options for answering `req`: its version and keep-alive, `HEAD` as
    /// head-only, no extra headers.
    pub fn for_request(req: &Request) -> ResponseOptions {
        ResponseOptions {
            version: req.version,
            keep_alive: req.keep_alive,
            head_only: req.method == crate::http::request::Method::Head,
            ..ResponseOptions::default()
        }
    }

    /// Options for an answer after which the connection closes (framing
    /// errors, shutdown), for a request whose head may not have parsed.
    pub fn closing() -> ResponseOptions {
        ResponseOptions {
            keep_alive: false,
            ..ResponseOptions::default()
        }
    }
}

impl Default for ResponseOptions {
    fn default() -> ResponseOptions {
        ResponseOptions {
            version: Version::Http11,
            keep_alive: true,
            head_only: false,
            retry_after_secs: None,
            last_id: None,
            date_us: None,
        }
    }
}

/// The reason phrase of `status` (RFC 9110 §15, plus 429 and 431 from
/// RFC 6585); an empty phrase for codes this server never sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Appends a whole response to `out`.
///
/// `headers` are extra fields (`Allow`, `Location`, ...); the framing,
/// CORS and `opts` fields are written here and must not be repeated.
///
/// # Panics
/// Panics if a 204 is given a body, or a header name or value holds CR or
/// LF: both are bugs of the caller, never peer data (request values reach
/// headers only through [`write_preflight`], which checks them).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    opts: &ResponseOptions,
) {
    assert!(status != 204 || body.is_empty(), "a 204 has no body");
    write_status_line(out, status, opts.version);
    for (name, value) in headers {
        write_header(out, name, value);
    }
    write_common_headers(out, opts);
    if status != 204 {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
        if !body.is_empty() {
            out.extend_from_slice(b"Content-Type: application/json\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    if !opts.head_only {
        out.extend_from_slice(body);
    }
}

/// Appends the answer for `err`: its status, body and `Retry-After`, plus
/// `headers` (e.g. `Allow` for a 405).
pub fn write_error(
    out: &mut Vec<u8>,
    err: &ApiError,
    headers: &[(&str, &str)],
    opts: &ResponseOptions,
) {
    let opts = ResponseOptions {
        retry_after_secs: err.retry_after_secs().or(opts.retry_after_secs),
        ..*opts
    };
    write_response(out, err.status(), headers, &err.body(), &opts);
}

/// Appends the answer to a CORS preflight (`OPTIONS`): 204 with the allowed
/// methods, the allowed headers and a 24 h max age.
///
/// `request_headers` is the request's `Access-Control-Request-Headers`; it is
/// echoed when it is a plain list of header names, which lets browsers send
/// any header a legacy client adds. Otherwise [`CORS_ALLOW_HEADERS`] is sent.
pub fn write_preflight(out: &mut Vec<u8>, request_headers: Option<&str>, opts: &ResponseOptions) {
    let allow_headers = request_headers
        .map(str::trim)
        .filter(|h| is_header_name_list(h))
        .unwrap_or(CORS_ALLOW_HEADERS);
    let max_age = CORS_MAX_AGE_SECS.to_string();
    let headers = [
        ("Access-Control-Allow-Methods", CORS_ALLOW_METHODS),
        ("Access-Control-Allow-Headers", allow_headers),
        ("Access-Control-Max-Age", max_age.as_str()),
    ];
    write_response(out, 204, &headers, b"", opts);
}

/// True for a non-empty comma-separated list of header-name tokens.
fn is_header_name_list(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b',' | b' ' | b'\t'))
}

fn write_status_line(out: &mut Vec<u8>, status: u16, version: Version) {
    let version = match version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{version} {status} {}\r\n", reason_phrase(status));
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let clean = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n');
    assert!(clean(name) && clean(value), "CR or LF in a header");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_common_headers(out: &mut Vec<u8>, opts: &ResponseOptions) {
    if let Some(us) = opts.date_us {
        out.extend_from_slice(b"Date: ");
        write_http_date(out, us);
        out.extend_from_slice(b"\r\n");
    }
    match (opts.keep_alive, opts.version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
    out.extend_from_slice(b"Access-Control-Expose-Headers: X-Last-Id\r\n");
    // Writing into a Vec cannot fail.
    if let Some(secs) = opts.retry_after_secs {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    if let Some(id) = opts.last_id {
        let _ = write!(out, "X-Last-Id: {id}\r\n");
    }
}

/// Appends `us` (microseconds since the epoch) as an IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
pub fn write_http_date(out: &mut Vec<u8>, us: u64) {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = us / 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // `days` is at most u64::MAX / 86_400_000_000, far inside i64.
    let (y, m, d) = civil_from_days(days as i64);
    let weekday = WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("");
    let month = m
        .checked_sub(1)
        .and_then(|i| MONTHS.get(i as usize))
        .copied()
        .unwrap_or("");
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn a_json_answer_has_length_type_and_cors() {
        let mut out = Vec::new();
        write_response(&mut out, 200, &[], b"{}", &ResponseOptions::default());
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: X-Last-Id\r\n\
             Content-Length: 2\r\n\
             Content-Type: application/json\r\n\r\n{}"
        );
    }

    #[test]
    fn a_204_has_no_length_type_or_body() {
        let mut out = Vec::new();
        let opts = ResponseOptions {
            last_id: Some(41),
            ..ResponseOptions::default()
        };
        write_response(&mut out, 204, &[], b"", &opts);
        assert_eq!(
            text(&out),
            "HTTP/1.1 204 No Content\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Access-Control-Expose-Headers: X-Last-Id\r\n\
             X-Last-Id: 41\r\n\r\n"
        );
    }

    #[test]
    fn connection_headers_follow_version_and_keep_alive() {
        let table = [
            (Version::Http11, true, None),
            (Version::Http11, false, Some("Connection: close\r\n")),
            (Version::Http10, true, Some("Connection: keep-alive\r\n")),
            (Version::Http10, false, Some("Connection: close\r\n")),
        ];
        for (version, keep_alive, want) in table {
            let mut out = Vec::new();
            let opts = ResponseOptions {
                version,
                keep_alive,
                ..ResponseOptions::default()
            };
            write_response(&mut out, 200, &[], b"", &opts);
            let t = text(&out);
            assert_eq!(t.contains("Connection:"), want.is_some(), "{t}");
            if let Some(line) = want {
                assert!(t.contains(line), "{t}");
            }
            let prefix = if version == Version::Http10 {
                "HTTP/1.0 "
            } else {
                "HTTP/1.1 "
            };
            assert!(t.starts_with(prefix));
            assert!(t.contains("Content-Length: 0\r\n"));
            assert!(!t.contains("Content-Type"));
        }
    }

    #[test]
    fn errors_carry_retry_after_and_extra_headers() {
        let mut out = Vec::new();
        let err = ApiError::TooManyPolls {
            retry_after_secs: 5,
        };
        write_error(&mut out, &err, &[], &ResponseOptions::default());
        let t = text(&out);
        assert!(t.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(t.contains("\r\nRetry-After: 5\r\n"));
        assert!(t.ends_with("\r\n\r\n{\"detail\":\"Too many parked polls; retry later.\"}"));

        let mut out = Vec::new();
        let err = ApiError::MethodNotAllowed("PUT".into());
        write_error(
            &mut out,
            &err,
            &[("Allow", "GET, POST")],
            &ResponseOptions::closing(),
        );
        let t = text(&out);
        assert!(t.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, POST\r\n"));
        assert!(t.contains("Connection: close\r\n"));
        assert!(!t.contains("Retry-After"));
    }

    #[test]
    fn head_answers_keep_the_length_but_drop_the_body() {
        let mut out = Vec::new();
        let opts = ResponseOptions {
            head_only: true,
            ..ResponseOptions::default()
        };
        write_response(&mut out, 200, &[], b"{\"a\":1}", &opts);
        let t = text(&out);
        assert!(t.contains("Content-Length: 7\r\n"));
        assert!(t.ends_with("\r\n\r\n"));
    }

    #[test]
    fn preflight_echoes_a_clean_header_list_only() {
        let table = [
            (Some("x-api-key, content-type"), "x-api-key, content-type"),
            (None, CORS_ALLOW_HEADERS),
            (Some(""), CORS_ALLOW_HEADERS),
            (Some("x-api-key; evil=1"), CORS_ALLOW_HEADERS),
        ];
        for (asked, want) in table {
            let mut out = Vec::new();
            write_preflight(&mut out, asked, &ResponseOptions::default());
            let t = text(&out);
            assert!(t.starts_with("HTTP/1.1 204 No Content\r\n"), "{t}");
            assert!(
                t.contains(&format!("Access-Control-Allow-Headers: {want}\r\n")),
                "{t}"
            );
            assert!(t.contains(
                "Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
            ));
            assert!(t.contains("Access-Control-Max-Age: 86400\r\n"));
            assert!(t.contains("Access-Control-Allow-Origin: *\r\n"));
            assert!(!t.contains("Content-Length"));
        }
    }

    #[test]
    fn dates_are_imf_fixdates() {
        let table = [
            (0u64, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777_000_000, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400_999_999, "Tue, 29 Feb 2000 00:00:00 GMT"),
        ];
        for (us, want) in table {
            let mut out = Vec::new();
            write_http_date(&mut out, us);
            assert_eq!(text(&out), want);
        }
        let mut out = Vec::new();
        let opts = ResponseOptions {
            date_us: Some(0),
            ..ResponseOptions::default()
        };
        write_response(&mut out, 404, &[], b"{}", &opts);
        assert!(text(&out).contains("\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"));
    }

    #[test]
    #[should_panic(expected = "a 204 has no body")]
    fn a_204_with_a_body_is_a_caller_bug() {
        write_response(&mut Vec::new(), 204, &[], b"x", &ResponseOptions::default());
    }

    #[test]
    fn every_status_the_catalogue_uses_has_a_reason() {
        for s in [
            200, 201, 204, 400, 403, 404, 405, 413, 415, 429, 431, 501, 503,
        ] {
            assert!(!reason_phrase(s).is_empty(), "{s}");
        }
    }
}
