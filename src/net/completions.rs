//! Acknowledgements and failures of publishes coming back from the log
//! writer: each becomes a `PublishAck` or `Error` frame (or an HTTP answer)
//! on the connection that sent the publish.

use super::conn::ConnKind;
use super::IoThread;
use crate::broker::writer::{Completion, ConnRef};
use crate::limits;
use crate::wire::{self, ErrorCode, Response};

impl IoThread {
    pub(super) fn drain_completions(&mut self) {
        while let Some(c) = self.link.completions.pop() {
            let (conn_ref, frame) = match c {
                Completion::Published {
                    conn,
                    request_id,
                    ack,
                    count,
                    first_id,
                    duplicates,
                } => {
                    let resp = (ack != wire::AckMode::None)
                        .then_some((request_id, count, first_id, duplicates));
                    (conn, Ok(resp))
                }
                Completion::Failed {
                    conn,
                    request_id,
                    code,
                    message,
                } => (conn, Err((request_id, code, message))),
            };
            let ConnRef {
                index, generation, ..
            } = conn_ref;
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            let was_full = conn.awaiting() >= limits::CONNECTION_INFLIGHT_REQUESTS_MAX;
            if conn.kind == ConnKind::Http {
                conn.inflight = conn.inflight.saturating_sub(1);
                let outcome = match frame {
                    Ok(Some((_, _, first_id, _))) => Ok(first_id),
                    Ok(None) => Err(crate::http::ApiError::ServerError),
                    Err((_, code, message)) => Err(http_publish_error(code, message)),
                };
                self.http_published(index, outcome);
                continue;
            }
            match frame {
                Ok(Some((request_id, count, first_id, duplicates))) => wire::encode_response(
                    &mut conn.wbuf,
                    request_id,
                    &Response::PublishAck {
                        count,
                        first_id,
                        duplicates,
                    },
                ),
                Ok(None) => {}
                Err((request_id, code, message)) => {
                    wire::encode_error(&mut conn.wbuf, request_id, code, &message);
                }
            }
            conn.complete_one();
            // Requests wait for every publish to be answered; reading waits
            // while too many are in flight.
            let resumes = conn.inflight == 0
                || (was_full && conn.awaiting() < limits::CONNECTION_INFLIGHT_REQUESTS_MAX);
            if resumes {
                self.push_again(index);
            }
            self.mark_dirty(index);
        }
    }
}

/// What an HTTP publish's failure is answered with.
fn http_publish_error(code: ErrorCode, message: String) -> crate::http::ApiError {
    use crate::http::ApiError;
    match code {
        ErrorCode::ChannelNotFound => ApiError::NotFound,
        ErrorCode::StorageFull | ErrorCode::StorageFailed | ErrorCode::ShuttingDown => {
            ApiError::Unavailable(message)
        }
        _ => ApiError::ServerError,
    }
}
