//! HTTP/1.1 request framing: the head (parsed by `httparse`) and a body
//! delimited by `Content-Length`, from a byte buffer.
//!
//! Sans-IO: [`parse_request`] takes the bytes a connection has received so
//! far and returns `Ok(None)` until one whole request is there. Every limit
//! is checked before the bytes it guards are kept: a head that has not ended
//! within [`limits::HTTP_HEAD_LEN_MAX`] bytes fails at once (431), a
//! `Content-Length` over [`limits::HTTP_BODY_LEN_MAX`] fails as soon as the
//! head is complete (413), before any of the body arrives.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::http::error::ApiError;
use crate::limits;

/// The request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// `HEAD`.
    Head,
    /// Any other method token, exactly as sent (methods are case-sensitive).
    Other(String),
}

impl Method {
    /// The method for a request-line token.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The token as it appears on the request line.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Other(s) => s,
        }
    }
}

/// The HTTP version of a request (and of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client
    /// asked for `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side says
    /// `Connection: close`.
    Http11,
}

/// Why a request could not be framed. Every variant means: write the
/// answer of [`HttpError::to_api_error`] and close the connection, because
/// the rest of the byte stream cannot be trusted to start a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The head did not end within [`limits::HTTP_HEAD_LEN_MAX`] bytes, or it
    /// has more than [`limits::HTTP_HEADERS_MAX`] fields (431).
    HeadTooLarge,
    /// `Content-Length` is over [`limits::HTTP_BODY_LEN_MAX`] (413).
    BodyTooLarge,
    /// The request uses `Transfer-Encoding` (chunked bodies are not
    /// supported) (501).
    TransferEncoding,
    /// `Content-Length` is not a decimal number, or two of them disagree (400).
    BadContentLength,
    /// More than [`limits::HTTP_QUERY_PARAMS_MAX`] query parameters (400).
    TooManyParameters,
    /// The head is not valid HTTP/1.x (400); the text says which part.
    Malformed(&'static str),
}

impl HttpError {
    /// The catalogue entry that answers this error.
    pub fn to_api_error(self) -> ApiError {
        match self {
            HttpError::HeadTooLarge => ApiError::HeadTooLarge,
            HttpError::BodyTooLarge => ApiError::PayloadTooLarge,
            HttpError::TransferEncoding => ApiError::TransferEncodingUnsupported,
            HttpError::BadContentLength => ApiError::Malformed("bad Content-Length"),
            HttpError::TooManyParameters => ApiError::TooManyParameters,
            HttpError::Malformed(why) => ApiError::Malformed(why),
        }
    }
    /// The HTTP status of the answer.
    pub fn status(self) -> u16 {
        self.to_api_error().status()
    }
    /// The JSON body of the answer (`{"detail":"..."}`).
    pub fn body(self) -> Vec<u8> {
        self.to_api_error().body()
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_api_error().fmt(f)
    }
}

impl std::error::Error for HttpError {}

/// One complete request, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path of the request target, still percent-encoded, without the
    /// query (`/v1.1/instances/i/channels/`). An absolute-form target
    /// (`http://host/path`) is reduced to its path.
    pub path: String,
    /// The protocol version.
    pub version: Version,
    /// Whether the connection stays open after the response (see [`Version`]).
    pub keep_alive: bool,
    /// The body (`Content-Length` bytes; empty without one).
    pub body: Vec<u8>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of query parameter `name`, percent-decoded with `+`
    /// as a space. An empty value counts as absent: legacy clients send
    /// `?last_id=&room=` to mean "none".
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_raw(name).filter(|v| !v.is_empty())
    }

    /// The first value of query parameter `name`, empty values included.
    pub fn query_raw(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every query parameter in request order, repeats included.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The first header named `name` (give it lower-case). Headers whose
    /// value is not UTF-8 are not kept, so they read as absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path's segments, percent-decoded; see [`path_segments`].
    pub fn path_segments(&self) -> Option<Vec<String>> {
        path_segments(&self.path)
    }

    /// The media type of the body (`content-type` without parameters,
    /// lower-cased), if the request names one.
    pub fn media_type(&self) -> Option<String> {
        let ct = self.header("content-type")?;
        let media = ct.split(';').next().unwrap_or("").trim();
        (!media.is_empty()).then(|| media.to_ascii_lowercase())
    }
}

/// Splits a still-encoded `path` into percent-decoded segments. One trailing
/// slash is ignored, so `/a/b/` and `/a/b` give the same segments.
///
/// Returns `None` for a path that no route can match: one not starting with
/// `/`, with an empty segment (`//`), a segment that decodes to something
/// holding `/` or to invalid UTF-8, or more than
/// [`limits::HTTP_PATH_SEGMENTS_MAX`] segments.
pub fn path_segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for raw in rest.split('/') {
        if raw.is_empty() || out.len() >= limits::HTTP_PATH_SEGMENTS_MAX {
            return None;
        }
        let seg = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        if seg.contains('/') {
            return None;
        }
        out.push(seg.into_owned());
    }
    Some(out)
}

/// Parses one request from the start of `buf`.
///
/// Returns `Ok(None)` while the head or the body is incomplete, otherwise
/// the request and the bytes it used (head and body); bytes after those
/// belong to the next request on the connection.
///
/// # Errors
/// An [`HttpError`] when the bytes cannot be a valid request within the
/// limits; answer it and close the connection.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some((head, head_len)) = parse_head(buf)? else {
        return Ok(None);
    };
    let total = head_len
        .checked_add(head.content_len)
        .ok_or(HttpError::BadContentLength)?;
    let Some(body) = buf.get(head_len..total) else {
        return Ok(None);
    };
    let request = Request {
        method: head.method,
        path: head.path,
        version: head.version,
        keep_alive: head.keep_alive,
        body: body.to_vec(),
        query: head.query,
        headers: head.headers,
    };
    Ok(Some((request, total)))
}

/// The interim response a client waiting on `Expect: 100-continue` needs
/// before it sends the body (curl waits a second for it otherwise).
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Whether `buf` holds a complete, acceptable HTTP/1.1 head that asks for
/// `Expect: 100-continue` and a body that has not fully arrived: then write
/// [`CONTINUE_RESPONSE`] once for this request (before its final answer)
/// and keep reading. False for anything [`parse_request`] would reject or
/// could already answer.
pub fn expects_continue(buf: &[u8]) -> bool {
    let Ok(Some((head, head_len))) = parse_head(buf) else {
        return false;
    };
    let wants = head.version == Version::Http11
        && head
            .headers
            .iter()
            .any(|(k, v)| k == "expect" && v.eq_ignore_ascii_case("100-continue"));
    let body_pending = head_len
        .checked_add(head.content_len)
        .is_some_and(|total| buf.len() < total);
    wants && body_pending
}

/// True when `buf` starts with a whole request head (its body may still be
/// on its way); false while the head is incomplete or malformed.
pub fn head_complete(buf: &[u8]) -> bool {
    matches!(parse_head(buf), Ok(Some(_)))
}

/// A parsed head, before the body is there.
struct Head {
    method: Method,
    path: String,
    version: Version,
    keep_alive: bool,
    content_len: usize,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete
/// and shorter than the limit.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    // Only the first HTTP_HEAD_LEN_MAX bytes can hold a head we accept, so
    // an incomplete head of that length already fails.
    let window = buf.get(..limits::HTTP_HEAD_LEN_MAX).unwrap_or(buf);
    let mut fields = [httparse::EMPTY_HEADER; limits::HTTP_HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut fields);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if window.len() >= limits::HTTP_HEAD_LEN_MAX => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(e) => return Err(HttpError::Malformed(httparse_reason(e))),
    };
    let method = Method::from_token(parsed.method.ok_or(HttpError::Malformed("no method"))?);
    let target = parsed.path.ok_or(HttpError::Malformed("no target"))?;
    let version = match parsed.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HttpError::Malformed("unsupported HTTP version")),
    };
    let (path, query) = split_target(target)?;
    let framing = Framing::from_headers(parsed.headers)?;
    let keep_alive = match version {
        Version::Http11 => !framing.close,
        Version::Http10 => framing.keep_alive && !framing.close,
    };
    let head = Head {
        method,
        path,
        version,
        keep_alive,
        content_len: framing.content_len,
        query,
        headers: kept_headers(parsed.headers),
    };
    Ok(Some((head, head_len)))
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Splits a request target into its path and parsed query.
fn split_target(target: &str) -> Result<(String, Vec<(String, String)>), HttpError> {
    let target = strip_authority(target);
    let target = target.split('#').next().unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    Ok((path.to_owned(), parse_pairs(query.as_bytes())?))
}

/// Reduces an absolute-form target (`http://host:80/p?q`) to `/p?q`.
fn strip_authority(target: &str) -> &str {
    let after_scheme = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"));
    match after_scheme {
        Some(rest) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/"),
        None => target,
    }
}

/// Parses `application/x-www-form-urlencoded` bytes (a query string or a
/// form body) into decoded pairs, at most [`limits::HTTP_QUERY_PARAMS_MAX`].
///
/// # Errors
/// [`HttpError::TooManyParameters`] past the limit.
pub fn parse_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if out.len() >= limits::HTTP_QUERY_PARAMS_MAX {
            return Err(HttpError::TooManyParameters);
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// What the framing headers say.
#[derive(Debug, Default)]
struct Framing {
    content_len: usize,
    close: bool,
    keep_alive: bool,
}

impl Framing {
    fn from_headers(fields: &[httparse::Header<'_>]) -> Result<Framing, HttpError> {
        let mut framing = Framing::default();
        let mut content_len: Option<usize> = None;
        for field in fields {
            if field.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(HttpError::TransferEncoding);
            }
            if field.name.eq_ignore_ascii_case("content-length") {
                let n = parse_content_length(field.value)?;
                if content_len.is_some_and(|old| old != n) {
                    return Err(HttpError::BadContentLength);
                }
                content_len = Some(n);
            }
            if field.name.eq_ignore_ascii_case("connection") {
                for token in field.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    framing.close |= token.eq_ignore_ascii_case(b"close");
                    framing.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        framing.content_len = content_len.unwrap_or(0);
        Ok(framing)
    }
}

/// Parses a `Content-Length` value: decimal digits only, checked against
/// [`limits::HTTP_BODY_LEN_MAX`] without overflowing on long inputs.
fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    let mut n: usize = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d.saturating_sub(b'0'))))
            .filter(|&n| n <= limits::HTTP_BODY_LEN_MAX)
            .ok_or(HttpError::BodyTooLarge)?;
    }
    Ok(n)
}

/// The headers kept on a [`Request`]: all of them with lower-case names,
/// except those whose value is not UTF-8.
fn kept_headers(fields: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|h| {
            let value = std::str::from_utf8(h.value).ok()?;
            Some((h.name.to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn parse_ok(bytes: &[u8]) -> (Request, usize) {
        parse_request(bytes)
            .expect("valid request")
            .expect("complete request")
    }

    #[test]
    fn a_simple_get_parses_with_its_query_and_headers() {
        let raw = b"GET /v1.1/instances/i/channels/c/poll/?last_id=&room=&x=a+b%21 HTTP/1.1\r\n\
                    Host: h\r\nX-API-KEY: k1\r\nContent-Type: application/json\r\n\r\n";
        let (r, used) = parse_ok(raw);
        assert_eq!(used, raw.len());
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/v1.1/instances/i/channels/c/poll/");
        assert_eq!(r.version, Version::Http11);
        assert!(r.keep_alive);
        assert_eq!(r.query("last_id"), None);
        assert_eq!(r.query_raw("last_id"), Some(""));
        assert_eq!(r.query("room"), None);
        assert_eq!(r.query("x"), Some("a b!"));
        assert_eq!(r.header("x-api-key"), Some("k1"));
        assert_eq!(r.media_type().as_deref(), Some("application/json"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn a_get_with_a_json_body_parses() {
        let raw =
            b"GET /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}";
        let (r, used) = parse_ok(raw);
        assert_eq!(used, raw.len());
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn every_prefix_of_a_request_needs_more_bytes() {
        let raw = b"POST /p?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
        for cut in 0..raw.len() {
            assert_eq!(parse_request(&raw[..cut]), Ok(None), "cut {cut}");
        }
        let (r, used) = parse_ok(raw);
        assert_eq!(used, raw.len());
        assert_eq!(r.body, b"hello world");
    }

    #[test]
    fn pipelined_requests_are_consumed_one_at_a_time() {
        let raw = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (first, used) = parse_ok(raw);
        assert_eq!(first.path, "/a");
        let (second, used2) = parse_ok(&raw[used..]);
        assert_eq!(second.path, "/b");
        assert_eq!(used + used2, raw.len());
    }

    #[test]
    fn repeated_query_keys_keep_the_first_value() {
        let (r, _) = parse_ok(b"GET /p?room=a&room=b&k=%E2%9C%93 HTTP/1.1\r\n\r\n");
        assert_eq!(r.query("room"), Some("a"));
        assert_eq!(r.query("k"), Some("\u{2713}"));
        assert_eq!(r.query_pairs().len(), 3);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let table: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false),
        ];
        for (raw, keep) in table {
            let (r, _) = parse_ok(raw);
            assert_eq!(r.keep_alive, *keep, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(
            parse_ok(b"GET / HTTP/1.0\r\n\r\n").0.version,
            Version::Http10
        );
    }

    #[test]
    fn framing_errors_map_to_their_statuses() {
        let table: &[(&[u8], HttpError, u16)] = &[
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::TransferEncoding,
                501,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
                HttpError::BodyTooLarge,
                413,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
                HttpError::BodyTooLarge,
                413,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                HttpError::BadContentLength,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
                HttpError::BadContentLength,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
                HttpError::BadContentLength,
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HttpError::BadContentLength,
                400,
            ),
            (
                b"GET / HTTP/2.0\r\n\r\n",
                HttpError::Malformed("invalid HTTP version"),
                400,
            ),
            (
                b"GET\x01 / HTTP/1.1\r\n\r\n",
                HttpError::Malformed("invalid method or target"),
                400,
            ),
        ];
        for (raw, err, status) in table {
            let got = parse_request(raw).unwrap_err();
            assert_eq!(got, *err, "{}", String::from_utf8_lossy(raw));
            assert_eq!(got.status(), *status);
        }
    }

    #[test]
    fn an_oversized_body_fails_from_its_head_alone() {
        let raw = b"POST /p HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
        let err = parse_request(raw).unwrap_err();
        assert_eq!(err.status(), 413);
        assert_eq!(
            err.body(),
            br#"{"detail":"Request size limit exceeded (65536)."}"#.to_vec()
        );
    }

    #[test]
    fn a_body_of_exactly_the_limit_is_accepted() {
        let mut raw = b"POST /p HTTP/1.1\r\nContent-Length: 65536\r\n\r\n".to_vec();
        let head = raw.len();
        raw.resize(head + limits::HTTP_BODY_LEN_MAX, b'x');
        assert_eq!(parse_request(&raw[..raw.len() - 1]), Ok(None));
        let (r, used) = parse_ok(&raw);
        assert_eq!(used, raw.len());
        assert_eq!(r.body.len(), limits::HTTP_BODY_LEN_MAX);
    }

    #[test]
    fn duplicate_equal_content_lengths_are_accepted() {
        let (r, _) =
            parse_ok(b"POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx");
        assert_eq!(r.body, b"x");
    }

    fn head_of_len(len: usize, complete: bool) -> Vec<u8> {
        let mut raw = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        let tail: &[u8] = if complete { b"\r\n\r\n" } else { b"" };
        raw.resize(len - tail.len(), b'a');
        raw.extend_from_slice(tail);
        raw
    }

    #[test]
    fn the_head_limit_fires_at_exactly_16_kib() {
        let max = limits::HTTP_HEAD_LEN_MAX;
        assert_eq!(parse_request(&head_of_len(max - 1, false)), Ok(None));
        assert_eq!(
            parse_request(&head_of_len(max, false)),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
        // A head that ends exactly at the limit is fine.
        let (_, used) = parse_ok(&head_of_len(max, true));
        assert_eq!(used, max);
        // One byte more is not, even with the head complete.
        assert_eq!(
            parse_request(&head_of_len(max + 1, true)),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn more_than_64_headers_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=limits::HTTP_HEADERS_MAX {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&raw), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn too_many_query_parameters_is_400() {
        let q: Vec<String> = (0..=limits::HTTP_QUERY_PARAMS_MAX)
            .map(|i| format!("k{i}=v"))
            .collect();
        let raw = format!("GET /?{} HTTP/1.1\r\n\r\n", q.join("&"));
        assert_eq!(
            parse_request(raw.as_bytes()),
            Err(HttpError::TooManyParameters)
        );
    }

    #[test]
    fn absolute_targets_are_reduced_to_their_path() {
        let (r, _) = parse_ok(b"GET http://example.com:8080/v1.1/x/?a=1 HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/v1.1/x/");
        assert_eq!(r.query("a"), Some("1"));
        let (r, _) = parse_ok(b"GET http://example.com HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/");
    }

    #[test]
    fn methods_keep_unknown_tokens() {
        let table = [
            ("GET", Method::Get),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("PATCH", Method::Patch),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("HEAD", Method::Head),
            ("BREW", Method::Other("BREW".into())),
            ("get", Method::Other("get".into())),
        ];
        for (token, method) in table {
            let raw = format!("{token} / HTTP/1.1\r\n\r\n");
            let (r, _) = parse_ok(raw.as_bytes());
            assert_eq!(r.method, method);
            assert_eq!(r.method.as_str(), token);
        }
    }

    #[test]
    fn path_segments_decode_and_reject_what_no_route_matches() {
        let table: &[(&str, Option<&[&str]>)] = &[
            ("/", Some(&[])),
            ("/a/b", Some(&["a", "b"])),
            ("/a/b/", Some(&["a", "b"])),
            ("/a%20b/c%2Dd", Some(&["a b", "c-d"])),
            ("/a//b", None),
            ("/a/b//", None),
            ("a/b", None),
            ("/a%2Fb", None),
            ("/%FF", None),
        ];
        for (path, want) in table {
            let got = path_segments(path);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{path}");
        }
        let long = "/a".repeat(limits::HTTP_PATH_SEGMENTS_MAX + 1);
        assert_eq!(path_segments(&long), None);
        let ok = "/a".repeat(limits::HTTP_PATH_SEGMENTS_MAX);
        assert_eq!(
            path_segments(&ok).map(|v| v.len()),
            Some(limits::HTTP_PATH_SEGMENTS_MAX)
        );
    }

    #[test]
    fn continue_is_wanted_only_while_an_expected_body_is_missing() {
        let head = "POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let table: &[(String, bool)] = &[
            (head.to_owned(), true),
            (format!("{head}ab"), true),
            (format!("{head}abc"), false),
            (head[..head.len() - 2].to_owned(), false),
            (head.replace("HTTP/1.1", "HTTP/1.0"), false),
            (head.replace("100-continue", "nothing"), false),
            (
                head.replace("Content-Length: 3", "Content-Length: 70000"),
                false,
            ),
            (
                head.replace("Content-Length: 3", "Content-Length: 0"),
                false,
            ),
        ];
        for (raw, want) in table {
            assert_eq!(expects_continue(raw.as_bytes()), *want, "{raw:?}");
        }
        assert!(CONTINUE_RESPONSE.starts_with(b"HTTP/1.1 100 "));
    }

    #[test]
    fn non_utf8_header_values_read_as_absent() {
        let (r, _) = parse_ok(b"GET / HTTP/1.1\r\nX-API-KEY: \xff\xfe\r\nX-USER-KEY: u\r\n\r\n");
        assert_eq!(r.header("x-api-key"), None);
        assert_eq!(r.header("x-user-key"), Some("u"));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn random_bytes_after_a_valid_request_line_never_panic(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512)
        ) {
            let mut raw = b"POST /v1.1/instances/i/channels/c/publish/?a=%zz HTTP/1.1\r\n".to_vec();
            raw.extend_from_slice(&tail);
            if let Ok(Some((_, used))) = parse_request(&raw) {
                proptest::prop_assert!(used <= raw.len());
            }
        }
    }
}
