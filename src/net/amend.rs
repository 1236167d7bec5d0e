//! `Edit` and `Delete` requests: checked here, appended by the writer (which
//! checks the message itself), answered with a `PublishAck` of one message
//! in request order like a publish.

use bytes::Bytes;

use super::conn::PendingAck;
use super::handle::Next;
use super::IoThread;
use crate::broker::writer::{AmendReq, ConnRef, WriterMsg};
use crate::storage::record::ContentType;
use crate::storage::AmendTarget;
use crate::wire::{self, AckMode, ErrorCode, WireError};

impl IoThread {
    /// Queues an edit (`edit: Some((content_type, payload))`) or deletion of
    /// a message of `channel` for the writer.
    pub(super) fn amend(
        &mut self,
        index: usize,
        id: u32,
        channel: &str,
        ack: AckMode,
        target: wire::AmendTarget,
        edit: Option<(u8, &[u8])>,
    ) -> Result<Next, WireError> {
        let ch = self.message_channel(index, channel)?;
        if ch.is_eventlog() {
            return Err(WireError::new(
                ErrorCode::PermissionDenied,
                "nothing may be changed in the eventlog channel",
            ));
        }
        self.access(index, &ch)?.check_publish()?;
        let caller = self.caller(index)?;
        let author = caller.author();
        let any_author = caller.reads_every_room();
        let edit = match edit {
            Some((ct, payload)) => {
                let content_type = ContentType::from_u8(ct).ok_or_else(|| {
                    WireError::new(ErrorCode::BadRequest, format!("content_type {ct}"))
                })?;
                let mut body = vec![0, ct, 0, 0];
                body.extend_from_slice(payload);
                wire::check_payload(&body, payload.len())?;
                Some((content_type, Bytes::copy_from_slice(payload)))
            }
            None => None,
        };
        let bytes = edit.as_ref().map_or(0, |(_, p)| p.len());
        let thread = self.id;
        let conn = self
            .conns
            .get_mut(index)
            .ok_or_else(|| WireError::new(ErrorCode::BadRequest, "gone"))?;
        let seq = conn.ack_seq + conn.acks.len() as u64;
        let msg = WriterMsg::Amend(AmendReq {
            channel_id: ch.id,
            author,
            target: match target {
                wire::AmendTarget::Id(n) => AmendTarget::Id(n),
                wire::AmendTarget::Uuid(u) => AmendTarget::Uuid(u),
            },
            edit,
            any_author,
            ack,
            conn: ConnRef {
                thread,
                index,
                generation: conn.generation,
            },
            seq,
        });
        conn.inflight += 1;
        conn.acks.push_back(PendingAck {
            request_id: id,
            count: 1,
            ack,
            channel: ch.id,
            outcome: None,
        });
        if let Err(back) = self.broker.try_append(msg, bytes) {
            // Retried like a stalled publish; nothing after it is read
            // until it is queued.
            conn.stalled = Some(back);
            conn.stalled_bytes = bytes;
            self.push_again(index);
            return Ok(Next::Pause);
        }
        Ok(Next::Continue)
    }
}
