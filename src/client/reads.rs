//! History, fetch, channels, admin commands and ping.

use super::*;

impl Client {
    /// A page of history.
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown channel, room required, ...).
    pub fn history(&mut self, channel: &str, query: &HistoryQuery) -> Result<Vec<Message>> {
        check_channel(channel)?;
        let room = check_room(query.room.as_deref())?;
        let rid = self.send(&Request::History {
            channel,
            room,
            newest_first: query.newest_first,
            after_id: query.after_id,
            before_id: query.before_id,
            limit: query.limit.min(limits::HISTORY_PAGE_MAX),
            raw: query.raw,
        });
        self.await_reply(rid, |r| match r {
            Response::HistoryPage { count, records } => {
                let mut out = Vec::with_capacity(count.min(limits::HISTORY_PAGE_MAX) as usize);
                let mut bad = None;
                split_records(records, count, |raw| match Message::from_record(raw) {
                    Ok(m) => out.push(m),
                    Err(e) => bad = bad.take().or(Some(e)),
                })?;
                bad.map_or(Ok(out), Err)
            }
            other => Err(unexpected(&other)),
        })
    }

    /// One message by id, in its current version (with its latest edit).
    ///
    /// # Errors
    /// [`ClientError::Server`] with `MessageNotFound` when it is not
    /// retained, was deleted or is an edit or deletion record.
    pub fn fetch(&mut self, channel: &str, id: u64) -> Result<Message> {
        self.fetch_view(channel, id, false)
    }

    /// The record with id `id` as stored (an edit or a deletion included).
    ///
    /// # Errors
    /// [`ClientError::Server`] with `MessageNotFound` when it is not retained.
    pub fn fetch_raw(&mut self, channel: &str, id: u64) -> Result<Message> {
        self.fetch_view(channel, id, true)
    }

    fn fetch_view(&mut self, channel: &str, id: u64, raw: bool) -> Result<Message> {
        check_channel(channel)?;
        let rid = self.send(&Request::Fetch { channel, id, raw });
        self.await_reply(rid, |r| match r {
            Response::Message { record } => Message::from_record(record),
            other => Err(unexpected(&other)),
        })
    }

    fn json_reply(&mut self, rid: u32) -> Result<Value> {
        self.await_reply(rid, |r| match r {
            Response::Channel { json }
            | Response::Channels { json }
            | Response::AdminResult { json } => serde_json::from_slice(json)
                .map_err(|e| ClientError::Protocol(format!("bad JSON from the server: {e}"))),
            other => Err(unexpected(&other)),
        })
    }

    fn json_body(fields: &Value) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(fields)
            .map_err(|e| ClientError::Invalid(format!("request fields: {e}")))?;
        if json.len() > limits::ADMIN_JSON_LEN_MAX {
            return Err(ClientError::Invalid(format!(
                "request fields are over {} bytes",
                limits::ADMIN_JSON_LEN_MAX
            )));
        }
        Ok(json)
    }

    /// Creates a channel from a JSON object (`name`, `type`, `description`,
    /// permissions, `custom_publish`, ...) and returns it as stored.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`ChannelExists`, `InvalidName`, `BadRequest`).
    pub fn channel_create(&mut self, fields: &Value) -> Result<Value> {
        let json = Client::json_body(fields)?;
        let rid = self.send(&Request::ChannelCreate { json: &json });
        self.json_reply(rid)
    }

    /// One channel's settings.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `ChannelNotFound`.
    pub fn channel_get(&mut self, name: &str) -> Result<Value> {
        check_name(name, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let rid = self.send(&Request::ChannelGet { name });
        self.json_reply(rid)
    }

    /// Every channel the key may see.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the server's answer is not a JSON array.
    pub fn channel_list(&mut self) -> Result<Vec<Value>> {
        let rid = self.send(&Request::ChannelList);
        match self.json_reply(rid)? {
            Value::Array(list) => Ok(list),
            _ => Err(ClientError::Protocol(
                "channel list is not a JSON array".into(),
            )),
        }
    }

    /// Changes the given fields of a channel and returns it as stored.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`ChannelNotFound`, `BadRequest`).
    pub fn channel_update(&mut self, name: &str, fields: &Value) -> Result<Value> {
        check_name(name, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let json = Client::json_body(fields)?;
        let rid = self.send(&Request::ChannelUpdate { name, json: &json });
        self.json_reply(rid)
    }

    /// Deletes a channel and its log; its subscriptions are closed.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `ChannelNotFound`.
    pub fn channel_delete(&mut self, name: &str) -> Result<()> {
        check_name(name, limits::CHANNEL_NAME_LEN_MAX, "channel name")?;
        let rid = self.send(&Request::ChannelDelete { name });
        self.await_reply(rid, |r| match r {
            Response::Ok => Ok(()),
            other => Err(unexpected(&other)),
        })
    }

    /// Runs an administrative command: a JSON object with an `op`
    /// (`instance.create`, `key.create`, `user.create`, `group.add_member`,
    /// ...; `protocol.md`, section "Admin") and its fields.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`PermissionDenied`, `IdentityNotFound`, ...).
    pub fn admin(&mut self, command: &Value) -> Result<Value> {
        let json = Client::json_body(command)?;
        let rid = self.send(&Request::Admin { json: &json });
        self.json_reply(rid)
    }

    /// Round trip of a `Ping`.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the echo differs.
    pub fn ping(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let token = u64::from(self.next_request_id).to_le_bytes();
        let rid = self.send(&Request::Ping { data: &token });
        self.await_reply(rid, |r| match r {
            Response::Pong { data } if data == token => Ok(()),
            Response::Pong { .. } => Err(ClientError::Protocol("pong echoes other bytes".into())),
            other => Err(unexpected(&other)),
        })?;
        Ok(started.elapsed())
    }
}
