//! Subscriptions and the events they push.

use super::*;

impl Client {
    /// Starts a subscription to `channel` (only `room` when given) at
    /// `start`; its events come from [`Client::next_event`].
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown channel, room required, limit
    /// reached, ...), [`ClientError::Invalid`] for names over their limits.
    pub fn subscribe(
        &mut self,
        channel: &str,
        room: Option<&str>,
        start: Start,
    ) -> Result<SubscriptionInfo> {
        self.subscribe_with(channel, room, start, false)
    }

    /// Starts a subscription that sees only committed records: those stored
    /// under the server's durability policy (under `batch`, after their
    /// sync), so never one a crash could take back.
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe_committed(
        &mut self,
        channel: &str,
        room: Option<&str>,
        start: Start,
    ) -> Result<SubscriptionInfo> {
        self.subscribe_with(channel, room, start, true)
    }

    fn subscribe_with(
        &mut self,
        channel: &str,
        room: Option<&str>,
        start: Start,
        committed: bool,
    ) -> Result<SubscriptionInfo> {
        check_channel(channel)?;
        let room = check_room(room)?;
        let sub_id = self.next_sub_id;
        self.next_sub_id = self.next_sub_id.wrapping_add(1).max(1);
        let rid = self.send(&Request::Subscribe {
            sub_id,
            channel,
            room,
            start,
            committed,
        });
        self.await_reply(rid, |r| match r {
            Response::Subscribed {
                sub_id: got,
                next_id,
                head_id,
            } if got == sub_id => Ok(SubscriptionInfo {
                sub_id,
                next_id,
                head_id,
            }),
            other => Err(unexpected(&other)),
        })
    }

    /// Ends a subscription; events of it still queued are dropped.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UnknownSubscription` for an id not in use.
    pub fn unsubscribe(&mut self, sub_id: u32) -> Result<()> {
        let rid = self.send(&Request::Unsubscribe { sub_id });
        self.await_reply(rid, |r| match r {
            Response::Unsubscribed { sub_id: got } if got == sub_id => Ok(()),
            other => Err(unexpected(&other)),
        })?;
        self.pushes.retain(|p| match p {
            Push::Deliver { sub_id: s, .. } => *s != sub_id,
            Push::Event(e) => e.sub_id() != sub_id,
        });
        Ok(())
    }

    /// The next queued event, decoding one record of a queued delivery.
    fn pop_event(&mut self) -> Result<Option<Event>> {
        let Some(front) = self.pushes.front_mut() else {
            return Ok(None);
        };
        let event = match front {
            Push::Event(_) => match self.pushes.pop_front() {
                Some(Push::Event(e)) => e,
                _ => unreachable!("the front was an event"),
            },
            Push::Deliver {
                sub_id,
                records,
                pos,
            } => {
                let rest = &records[*pos..];
                // `split_records` checked the lengths when the push was queued.
                let total = record::peek_record_len(rest)
                    .ok()
                    .flatten()
                    .ok_or_else(|| ClientError::Protocol("bad record in push".into()))?;
                let message = Message::from_record(&rest[..total])?;
                *pos += total;
                let event = Event::Message {
                    sub_id: *sub_id,
                    message,
                };
                if *pos == records.len() {
                    self.pushes.pop_front();
                }
                event
            }
        };
        Ok(Some(event))
    }

    /// The next subscription event, waiting at most `timeout` (None: until
    /// one arrives; `Some(Duration::ZERO)` polls without waiting).
    /// `Ok(None)` when the timeout passes first. Records are
    /// CRC-checked and decoded one at a time.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the server hangs up; a corrupt record
    /// is [`ClientError::Protocol`].
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        self.flush()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(event) = self.pop_event()? {
                return Ok(Some(event));
            }
            let Some((h, start)) = self.read_frame(Wait::Until(deadline))? else {
                return Ok(None);
            };
            self.queue_unsolicited(&h, start)?;
        }
    }

    /// Events as a blocking iterator; it ends after the first error.
    pub fn events(&mut self) -> Events<'_> {
        Events {
            client: self,
            done: false,
        }
    }

    /// Zero-copy delivery for counting and timing: passes each record of the
    /// next `Deliver` push to `f` as `(sub_id, record bytes)` straight from
    /// the read buffer, without decoding or CRC check (use
    /// [`record::RecordView`] for fields). Gaps and closed subscriptions come
    /// back as [`RawNext::Gap`] and [`RawNext::Closed`]. `Ok(None)` when `timeout` passes first.
    ///
    /// # Errors
    /// As [`Client::next_event`].
    pub fn next_raw(
        &mut self,
        timeout: Option<Duration>,
        mut f: impl FnMut(u32, &[u8]),
    ) -> Result<Option<RawNext>> {
        self.flush()?;
        if let Some(push) = self.pushes.pop_front() {
            return match push {
                Push::Event(e) => Ok(RawNext::from_event(e)),
                Push::Deliver {
                    sub_id,
                    records,
                    pos,
                } => {
                    let mut n = 0u32;
                    // Lengths were checked when the push was queued.
                    split_records_unbounded(&records[pos..], |r| {
                        n += 1;
                        f(sub_id, r);
                    })?;
                    Ok(Some(RawNext::Records(n)))
                }
            };
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let Some((h, start)) = self.read_frame(Wait::Until(deadline))? else {
                return Ok(None);
            };
            if h.opcode == Opcode::Deliver as u8 {
                let body = &self.rbuf[start..start + h.body_len];
                if let Response::Deliver {
                    sub_id,
                    count,
                    records,
                } = decode_response(&h, body)?
                {
                    split_records(records, count, |r| f(sub_id, r))?;
                    return Ok(Some(RawNext::Records(count)));
                }
            }
            self.queue_unsolicited(&h, start)?;
            if let Some(Push::Event(_)) = self.pushes.front() {
                if let Some(Push::Event(e)) = self.pushes.pop_front() {
                    return Ok(RawNext::from_event(e));
                }
            }
        }
    }
}
