//! Entry point of the fuzz target `fuzz/fuzz_targets/http_request.rs`, kept in
//! the crate so that unit tests run the same code over pseudo-random inputs.
//!
//! The property under test is that no input panics, loops forever or
//! allocates beyond the limits, through the whole pure pipeline an HTTP
//! connection runs: framing, routing, body, credentials, parameters and
//! history planning.

use crate::http::history::{history_params, HistoryPlan};
use crate::http::request::parse_request;
use crate::http::route::{route, ChannelPath, Route};
use crate::http::syncano::{credentials, parse_body, poll_params, publish_params};

/// Parses `data` as a stream of pipelined requests, as a connection's read
/// loop would, and runs every pure step on each request.
pub fn http_request(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((req, used))) = parse_request(rest) {
        let body = parse_body(&req).ok();
        let _ = credentials(&req, body.as_ref());
        match route(&req.method, &req.path) {
            Route::Poll { .. } => {
                // Either outcome is fine; only a panic is a finding.
                let _ = poll_params(&req);
            }
            Route::Publish { .. } => {
                if let Some(body) = &body {
                    let _ = publish_params(&req, body);
                }
            }
            Route::History { instance, channel } => {
                if let Ok(params) = history_params(&req) {
                    let plan = HistoryPlan::new(&params);
                    let page = plan.page(vec![1u64, 2, 3]);
                    let path = ChannelPath {
                        instance: &instance,
                        channel: &channel,
                    };
                    let _ = plan.links(&path, Some((1, 3)), page.more);
                }
            }
            _ => {}
        }
        match rest.get(used..) {
            Some(next) if used > 0 => rest = next,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn pseudo_random_requests_never_panic(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            target in "/v1\\.1/instances/[a-z%]{1,4}/channels/[a-z]{1,3}/(poll|publish|history)/\\?[a-z_=&%+0-9-]{0,40}",
        ) {
            let mut raw = format!("POST {target} HTTP/1.1\r\nContent-Type: application/json\r\n").into_bytes();
            raw.extend_from_slice(&tail);
            http_request(&raw);
            let mut get = format!("GET {target} HTTP/1.1\r\n\r\n").into_bytes();
            get.extend_from_slice(&tail);
            http_request(&get);
        }

        #[test]
        fn pseudo_random_publish_bodies_never_panic(
            body in "[\\{\\}\\[\\]\",:a-z0-9 \\\\_]{0,64}",
            form in proptest::bool::ANY,
        ) {
            let ct = if form { "application/x-www-form-urlencoded" } else { "application/json" };
            let raw = format!(
                "POST /v1.1/instances/i/channels/c/publish/ HTTP/1.1\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            http_request(raw.as_bytes());
            let wrapped = format!(r#"{{"payload":{body:?},"room":"r"}}"#);
            let raw = format!(
                "POST /v1.1/instances/i/channels/c/publish/ HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{wrapped}",
                wrapped.len()
            );
            http_request(raw.as_bytes());
        }
    }
}
