//! The Channelstream server API on the HTTP listener: its paths, its
//! request signatures and address list, and its answers; the operations
//! run on the broker's Channelstream state (`channelstream`).

use serde_json::json;

use super::super::IoThread;
use crate::channelstream::{self as cs, sign, Answer};
use crate::http::request::{Method, Request};
use crate::http::response::{write_response, ResponseOptions};
use crate::storage::record;

/// The Channelstream paths this build serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsRoute {
    Connect,
    Subscribe,
    Unsubscribe,
    UserState,
    ChannelConfig,
    Info,
    Disconnect,
}

fn cs_route(path: &str) -> Option<CsRoute> {
    Some(match path {
        "/connect" => CsRoute::Connect,
        "/subscribe" => CsRoute::Subscribe,
        "/unsubscribe" => CsRoute::Unsubscribe,
        "/user_state" => CsRoute::UserState,
        "/channel_config" => CsRoute::ChannelConfig,
        "/info" => CsRoute::Info,
        "/disconnect" => CsRoute::Disconnect,
        _ => return None,
    })
}

/// The CORS headers Channelstream adds to its successful answers (with
/// `Access-Control-Allow-Origin: *`, which every answer of this listener has).
const CS_CORS: [(&str, &str); 4] = [
    ("XDomainRequestAllowed", "1"),
    ("Access-Control-Allow-Methods", "GET, POST, OPTIONS, PUT, DELETE, PATCH"),
    (
        "Access-Control-Allow-Headers",
        "Content-Type, Depth, User-Agent, X-File-Size, X-Requested-With, If-Modified-Since, X-File-Name, Cache-Control, Pragma, Origin, Connection, Referer, Cookie",
    ),
    ("Access-Control-Max-Age", "86400"),
];

/// Token ages Channelstream accepts, in seconds.
const TOKEN_MAX_AGE_SECS: u64 = 60;

/// Why a signed request is refused.
enum Refused {
    /// No token, or a peer not on the address list: 403.
    Forbidden,
    /// A token that does not verify: 401.
    BadSignature,
}

impl IoThread {
    /// Answers `req` when it is a Channelstream API request and the API is
    /// on; false otherwise (the Syncano routes answer it).
    pub(super) fn channelstream(
        &mut self,
        index: usize,
        req: &Request,
        opts: &ResponseOptions,
    ) -> bool {
        let Some(settings) = self.broker.channelstream.clone() else {
            return false;
        };
        let Some(route) = cs_route(&req.path) else {
            return false;
        };
        if req.method == Method::Options {
            // Channelstream answers every preflight 200, empty.
            if let Some(conn) = self.conns.get_mut(index) {
                write_response(&mut conn.wbuf, 200, &CS_CORS, b"", opts);
            }
            return true;
        }
        let post_only = !matches!(route, CsRoute::Info | CsRoute::Disconnect);
        let answer = if post_only && req.method != Method::Post {
            (
                404,
                json!({"message": "The resource could not be found.", "code": "404 Not Found", "title": "Not Found"}),
            )
        } else {
            match self.cs_check(index, req, &settings, route == CsRoute::Disconnect) {
                Err(Refused::Forbidden) => (
                    403,
                    json!({"message": "Access was denied to this resource.", "code": "403 Forbidden", "title": "Forbidden"}),
                ),
                Err(Refused::BadSignature) => (401, json!({"request": "Bad Signature"})),
                Ok(()) => self.cs_run(route, req),
            }
        };
        if let Some(conn) = self.conns.get_mut(index) {
            let (status, body) = answer;
            let headers: &[(&str, &str)] = if status == 200 { &CS_CORS } else { &[] };
            write_response(
                &mut conn.wbuf,
                status,
                headers,
                &cs::json::to_vec(&body),
                opts,
            );
            if !opts.keep_alive {
                conn.closing = true;
            }
        }
        true
    }

    /// Channelstream's checks: the peer's address, then the signature (a
    /// bad token is refused even on the unsigned `/disconnect`).
    fn cs_check(
        &self,
        index: usize,
        req: &Request,
        settings: &crate::broker::ChannelstreamSettings,
        unsigned: bool,
    ) -> Result<(), Refused> {
        let peer = self
            .conns
            .get(index)
            .and_then(|c| c.stream.peer_addr().ok())
            .map(|a| a.ip().to_string());
        let allowed = settings
            .allow_posting_from
            .iter()
            .any(|a| a == "0.0.0.0" || peer.as_deref() == Some(a.as_str()));
        if !allowed {
            return if unsigned {
                Ok(())
            } else {
                Err(Refused::Forbidden)
            };
        }
        let token = req
            .header("x-channelstream-secret")
            .or_else(|| req.query_raw("secret"));
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if unsigned {
                Ok(())
            } else {
                Err(Refused::Forbidden)
            };
        };
        let now_secs = self.broker.clock().now_us() / 1_000_000;
        sign::verify(
            &settings.secret,
            token.as_bytes(),
            now_secs,
            Some(TOKEN_MAX_AGE_SECS),
        )
        .map_err(|_| Refused::BadSignature)
    }

    /// Runs one operation on the broker's Channelstream state.
    fn cs_run(&mut self, route: CsRoute, req: &Request) -> (u16, serde_json::Value) {
        let now = self.broker.clock().now_us();
        let mut new_uuid = || record::random_uuid().unwrap_or_default();
        let mut st = self
            .broker
            .cs_state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Idle connections leave their channels (Channelstream collects
        // them once a second; here before each operation).
        let _parted = st.collect(now);
        let body = &req.body;
        let query_conn = req.query_raw("conn_id");
        let (answer, _events) = match route {
            CsRoute::Connect => cs::connect(&mut st, body, now, &mut new_uuid),
            CsRoute::Subscribe => {
                cs::subscription(&mut st, body, query_conn, true, now, &mut new_uuid)
            }
            CsRoute::Unsubscribe => {
                cs::subscription(&mut st, body, query_conn, false, now, &mut new_uuid)
            }
            CsRoute::UserState => cs::user_state(&mut st, body, now),
            CsRoute::ChannelConfig => cs::channel_config(&mut st, body, now, &mut new_uuid),
            CsRoute::Info => (cs::info(&st, body), Vec::new()),
            CsRoute::Disconnect => {
                let post = (req.method == Method::Post).then_some(body.as_slice());
                cs::disconnect(&mut st, post, query_conn, now)
            }
        };
        match answer {
            Answer::Ok(v) => (200, v),
            Answer::Invalid(v) => (422, v),
            Answer::Internal => (500, json!({"message": "Internal Server Error"})),
        }
    }
}
