//! The HTTP/1.1 shim's protocol layer: request framing, response writing,
//! and the Syncano v1.1 Channels request and response shapes
//! (`legacy-apis.md` §1, §7, §8).
//!
//! Owns: every byte of HTTP on the wire (head and `Content-Length` body
//! framing, status lines, CORS and framing headers), the Syncano routes, the
//! rules for reading keys, query parameters and request bodies, the history
//! keyset arithmetic, and every Syncano JSON shape and error body.
//!
//! Never touches sockets, threads, clocks, the broker or storage files: every
//! function takes byte slices and plain values and returns bytes, typed
//! values or an [`ApiError`]. Whether a key is valid, a channel exists or a
//! caller may subscribe is the broker's to decide; this module only says how
//! each answer looks.
//!
//! # Driving it from an event loop
//!
//! For each readable connection, with `buf` holding the bytes read so far:
//!
//! 1. [`parse_request`]`(buf)`: `Ok(None)` → read more (call again when new
//!    bytes arrive; the head is re-scanned, at most 16 KiB; if
//!    [`request::expects_continue`]`(buf)`, write
//!    [`request::CONTINUE_RESPONSE`] once first). `Err(e)` → write
//!    [`write_error`]`(out, &e.to_api_error(), &[], &ResponseOptions::closing())`
//!    and close after flushing. `Ok(Some((req, used)))` → drop `used` bytes
//!    and go on; pipelined requests must be answered in order.
//! 2. `let opts = ResponseOptions::for_request(&req)` (version, keep-alive,
//!    `HEAD`); set `opts.date_us` from the clock.
//! 3. [`route()`]`(&req.method, &req.path)`: [`Route::Preflight`] →
//!    [`write_preflight`]`(out, req.header("access-control-request-headers"), &opts)`;
//!    [`Route::NotFound`] → [`ApiError::NotFound`];
//!    [`Route::MethodNotAllowed`]` { allow }` →
//!    `ApiError::MethodNotAllowed(req.method.as_str().into())` with
//!    `[("Allow", allow)]`.
//! 4. For `POST`, `PUT` and `PATCH`: `let body = `[`syncano::parse_body`]`(&req)?`
//!    (400 / 415). Other methods pass no body on: the JS client sends `{}`
//!    with every `GET`.
//! 5. [`syncano::credentials`]`(&req, body.as_ref())` → the broker resolves
//!    the keys (404 unknown instance, 403 `NoSuchApiKey`, ...), in the
//!    precedence of §1.9.
//! 6. Parameters: [`syncano::poll_params`], [`syncano::publish_params`]`(&req, &body)`
//!    or [`history::history_params`] (for channel create / update:
//!    [`channel::channel_params`]`(&body, write)`); then, once the broker knows the
//!    channel's type, [`syncano::channel_room`] (400 `RoomRequired`).
//! 7. The broker works:
//!    * poll: register the waiter, read the first id > `last_id`; answer
//!      200 with [`render::write_message`]`(out, &view, None)` (no `links`)
//!      and `opts.last_id = Some(id)`, or 204 at the timeout; too many parked
//!      polls → [`ApiError::TooManyPolls`] (503 with `Retry-After`);
//!    * publish: append with content type JSON and `params.payload`; answer
//!      201 with `write_message(out, &view, Some(&path))`;
//!    * history: `let plan = `[`history::HistoryPlan::new`]`(&params)`; read
//!      ids in `(plan.after_id, plan.before_id)` in `plan.newest_first` order,
//!      at most `plan.limit`; `let page = plan.page(records)`;
//!      `let links = plan.links(&path, first_last_ids, page.more)`; answer
//!      200 with [`render::write_history_page`];
//!    * channels: [`render::write_channel`] / [`render::write_channel_list`]
//!      from a [`render::ChannelFields`].
//! 8. [`write_response`]`(out, status, &[], &body, &opts)` or
//!    [`write_error`]; if `!opts.keep_alive`, close once `out` is flushed.

pub mod channel;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
pub mod render;
pub mod request;
pub mod response;
pub mod route;
pub mod syncano;

pub use error::ApiError;
pub use request::{parse_request, HttpError, Method, Request, Version};
pub use response::{write_error, write_preflight, write_response, ResponseOptions};
pub use route::{route, ChannelPath, Route};
