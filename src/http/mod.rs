//! The HTTP/1.1 shim's protocol layer: request framing, response writing,
//! and the Syncano v1.1 Channels request and response shapes.
//!
//! Owns: every byte of HTTP on the wire and every Syncano JSON shape.
//! Never touches sockets, threads, the broker or storage files: it takes
//! byte slices and plain values and returns bytes, typed values or
//! [`ApiError`]s.

pub mod error;
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
