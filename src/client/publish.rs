//! Publishing, pipelined publishing and acknowledgements; edits and
//! deletions of messages.

use super::*;

impl Client {
    /// Checks a publish against the protocol's limits before anything is
    /// written, so a bad batch never poisons the write buffer.
    fn check_publish(&self, channel: &str, bodies: &[&[u8]]) -> Result<()> {
        check_channel(channel)?;
        let count = bodies.len();
        if count == 0 || count > limits::PUBLISH_BATCH_MAX as usize {
            return Err(ClientError::Invalid(format!(
                "a publish carries 1..={} messages, not {count}",
                limits::PUBLISH_BATCH_MAX
            )));
        }
        let body_max = limits::MESSAGE_BODY_LEN_MAX as usize;
        if let Some(bad) = bodies
            .iter()
            .find(|b| b.len() < record::BODY_HEADER_LEN || b.len() > body_max)
        {
            return Err(ClientError::Invalid(format!(
                "a message body must be {}..={body_max} bytes, not {}",
                record::BODY_HEADER_LEN,
                bad.len()
            )));
        }
        let frame_len = publish_frame_len(channel, bodies.iter().map(|b| b.len()));
        if frame_len > self.info.frame_len_max as usize + 4 {
            return Err(ClientError::Invalid(format!(
                "a publish of {frame_len} bytes is over the frame limit of {}; split the batch",
                self.info.frame_len_max
            )));
        }
        Ok(())
    }

    /// Appends a publish of pre-encoded bodies; `pipelined` publishes with an
    /// ack are tracked in the in-flight window.
    fn append_publish(
        &mut self,
        channel: &str,
        bodies: &[&[u8]],
        ack: AckMode,
        pipelined: bool,
    ) -> Result<u32> {
        self.check_publish(channel, bodies)?;
        let rid = self.next_rid();
        encode_publish(&mut self.wbuf, rid, channel, ack, bodies);
        if pipelined && ack != AckMode::None {
            self.inflight.push_back(rid);
        }
        self.flush_if_full()?;
        if self.inflight.len() >= self.max_in_flight {
            self.flush()?;
            while self.inflight.len() >= self.max_in_flight {
                let Some((h, start)) = self.read_frame(Wait::Default)? else {
                    return Err(ClientError::Timeout);
                };
                self.queue_unsolicited(&h, start)?;
            }
        }
        Ok(rid)
    }

    /// Encodes `messages` into the scratch buffer and appends one publish.
    fn publish_messages(
        &mut self,
        channel: &str,
        messages: &[OutgoingMessage<'_>],
        ack: AckMode,
        pipelined: bool,
    ) -> Result<u32> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = match messages {
            // The pipelined hot path: one body in the reused scratch buffer,
            // nothing allocated.
            [one] => one.encode_body(&mut scratch).and_then(|()| {
                let body: &[u8] = &scratch;
                self.append_publish(channel, std::slice::from_ref(&body), ack, pipelined)
            }),
            _ => {
                let mut ends = Vec::with_capacity(messages.len());
                let mut encoded = Ok(());
                for m in messages {
                    encoded = m.encode_body(&mut scratch);
                    if encoded.is_err() {
                        break;
                    }
                    ends.push(scratch.len());
                }
                encoded.and_then(|()| {
                    let mut bodies: Vec<&[u8]> = Vec::with_capacity(ends.len());
                    let mut start = 0;
                    for &end in &ends {
                        bodies.push(&scratch[start..end]);
                        start = end;
                    }
                    self.append_publish(channel, &bodies, ack, pipelined)
                })
            }
        };
        self.scratch = scratch;
        result
    }

    /// Publishes one message and returns its id (the original id when the
    /// idempotency key repeats an earlier publish). With [`AckMode::None`]
    /// the message is sent and 0 returned without waiting.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the server refuses it; the others as
    /// for any request.
    pub fn publish(
        &mut self,
        channel: &str,
        message: &OutgoingMessage<'_>,
        ack: AckMode,
    ) -> Result<u64> {
        let rid = self.publish_messages(channel, std::slice::from_ref(message), ack, false)?;
        if ack == AckMode::None {
            self.flush()?;
            return Ok(0);
        }
        let info = self.await_ack(rid)?;
        info.ids()
            .first()
            .copied()
            .ok_or_else(|| ClientError::Protocol("acknowledgement without ids".into()))
    }

    /// Publishes `messages` in one frame and returns their ids in order
    /// (empty with [`AckMode::None`]).
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an empty batch or one over the frame
    /// limit; otherwise as [`Client::publish`].
    pub fn publish_batch(
        &mut self,
        channel: &str,
        messages: &[OutgoingMessage<'_>],
        ack: AckMode,
    ) -> Result<Vec<u64>> {
        let rid = self.publish_messages(channel, messages, ack, false)?;
        if ack == AckMode::None {
            self.flush()?;
            return Ok(Vec::new());
        }
        let info = self.await_ack(rid)?;
        if info.count as usize != messages.len() {
            return Err(ClientError::Protocol(format!(
                "acknowledgement counts {} messages, {} were sent",
                info.count,
                messages.len()
            )));
        }
        Ok(info.ids())
    }

    fn await_ack(&mut self, rid: u32) -> Result<PublishAckInfo> {
        self.await_reply(rid, |r| match r {
            Response::PublishAck {
                count,
                first_id,
                duplicates,
                uuids,
            } => Ok(PublishAckInfo {
                request_id: rid,
                count,
                first_id,
                duplicates,
                uuids,
            }),
            other => Err(unexpected(&other)),
        })
    }

    /// Pipelining: appends a publish of one message to the write buffer and
    /// returns its request id without waiting. Collect the acknowledgement
    /// with [`Client::recv_ack`] (unless `ack` is [`AckMode::None`]).
    ///
    /// The buffer is flushed past [`WRITE_FLUSH_BYTES`]; when
    /// [`ConnectOptions::max_in_flight`] acknowledgements are outstanding,
    /// this waits for one and queues it.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for fields over their limits; I/O errors.
    pub fn send_publish(
        &mut self,
        channel: &str,
        message: &OutgoingMessage<'_>,
        ack: AckMode,
    ) -> Result<u32> {
        self.publish_messages(channel, std::slice::from_ref(message), ack, true)
    }

    /// Pipelining: as [`Client::send_publish`] for a batch in one frame.
    ///
    /// # Errors
    /// As [`Client::publish_batch`].
    pub fn send_publish_batch(
        &mut self,
        channel: &str,
        messages: &[OutgoingMessage<'_>],
        ack: AckMode,
    ) -> Result<u32> {
        self.publish_messages(channel, messages, ack, true)
    }

    /// Pipelining fast path: one `Publish` frame of message bodies encoded
    /// beforehand with [`OutgoingMessage::encode_body`]; nothing is allocated.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an empty batch, one over the frame limit
    /// or a body shorter than its header; I/O errors.
    pub fn send_publish_bodies(
        &mut self,
        channel: &str,
        bodies: &[&[u8]],
        ack: AckMode,
    ) -> Result<u32> {
        self.append_publish(channel, bodies, ack, true)
    }

    /// Pipelined publishes whose acknowledgement has not been returned by
    /// [`Client::recv_ack`] yet.
    pub fn acks_pending(&self) -> usize {
        self.inflight.len() + self.acks.len()
    }

    /// The next acknowledgement of a pipelined publish, in arrival order
    /// (which is send order), flushing first. Pushes that arrive meanwhile
    /// are queued for [`Client::next_event`].
    ///
    /// # Errors
    /// [`ClientError::Server`] when that publish failed (its error takes the
    /// acknowledgement's place; this includes errors of publishes sent with
    /// [`AckMode::None`]); [`ClientError::Invalid`] when nothing is pending.
    pub fn recv_ack(&mut self) -> Result<PublishAckInfo> {
        loop {
            if let Some(ack) = self.acks.pop_front() {
                return ack;
            }
            if self.inflight.is_empty() {
                return Err(ClientError::Invalid(
                    "no publish is awaiting an acknowledgement".into(),
                ));
            }
            self.flush()?;
            let Some((h, start)) = self.read_frame(Wait::Default)? else {
                return Err(ClientError::Timeout);
            };
            self.queue_unsolicited(&h, start)?;
        }
    }

    /// Collects the next `n` acknowledgements in order.
    ///
    /// # Errors
    /// The first failed publish, as [`Client::recv_ack`]; the
    /// acknowledgements after it stay pending.
    pub fn wait_acks(&mut self, n: usize) -> Result<Vec<PublishAckInfo>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.recv_ack()?);
        }
        Ok(out)
    }

    /// Publishes a message and returns its acknowledgement: its id and (from
    /// a server speaking protocol version 2) its uuid.
    ///
    /// # Errors
    /// As [`Client::publish`]; [`ClientError::Invalid`] with
    /// [`AckMode::None`] (there is no acknowledgement to return).
    pub fn publish_acked(
        &mut self,
        channel: &str,
        message: &OutgoingMessage<'_>,
        ack: AckMode,
    ) -> Result<PublishAckInfo> {
        if ack == AckMode::None {
            return Err(ClientError::Invalid(
                "an acknowledgement needs ack mode append or durable".into(),
            ));
        }
        let rid = self.publish_messages(channel, std::slice::from_ref(message), ack, false)?;
        self.await_ack(rid)
    }

    /// Edits message `target` of `channel`: its new version has
    /// `content_type` and `payload`. Returns the acknowledgement: `first_id`
    /// is the id of the edit record, `uuids` holds the message's uuid.
    ///
    /// # Errors
    /// [`ClientError::Server`]: `MessageNotFound` (unknown or expired),
    /// `MessageDeleted`, `PermissionDenied` (not the message's author, and
    /// not an admin key or an API key with `ignore_acl`), `BadRequest` (a
    /// payload that breaks its content type, or an id that names an edit).
    pub fn edit(
        &mut self,
        channel: &str,
        target: AmendTarget,
        content_type: record::ContentType,
        payload: &[u8],
        ack: AckMode,
    ) -> Result<PublishAckInfo> {
        self.amend(channel, target, Some((content_type as u8, payload)), ack)
    }

    /// Deletes message `target` of `channel`; the acknowledgement is as for
    /// [`Client::edit`].
    ///
    /// # Errors
    /// As [`Client::edit`].
    pub fn delete(
        &mut self,
        channel: &str,
        target: AmendTarget,
        ack: AckMode,
    ) -> Result<PublishAckInfo> {
        self.amend(channel, target, None, ack)
    }

    fn amend(
        &mut self,
        channel: &str,
        target: AmendTarget,
        edit: Option<(u8, &[u8])>,
        ack: AckMode,
    ) -> Result<PublishAckInfo> {
        check_channel(channel)?;
        if ack == AckMode::None {
            return Err(ClientError::Invalid(
                "an edit or delete waits for its acknowledgement: use ack mode append or durable"
                    .into(),
            ));
        }
        if edit.is_some_and(|(_, p)| p.len() > limits::PAYLOAD_LEN_MAX as usize) {
            return Err(ClientError::Invalid("payload over PAYLOAD_LEN_MAX".into()));
        }
        let rid = self.send(&Request::Amend {
            channel,
            ack,
            target,
            edit,
        });
        self.await_ack(rid)
    }
}
