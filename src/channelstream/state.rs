//! Channelstream's users, connections and channels, and the operations of
//! its server API on them (sans-IO: the caller passes the time and fresh
//! uuids, and delivers the events an operation returns).
//!
//! As in Channelstream 0.7.1: a connection belongs to one user and joins
//! channels; a user has a state (any JSON scalars) of which some keys are
//! public; a channel has a configuration and knows which users are in it
//! through which connections. A user's first connection in a channel makes
//! it *join* (a `presence` event when the channel notifies presence), its
//! last one leaving makes it *part*.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use super::schema::{ChannelConfig, InfoAsk};
use crate::limits;

/// A connection id.
pub type ConnId = [u8; 16];

/// A connection's place in a channel's log (`None`: the user stream):
/// `(channel, after id)`.
pub type Position = (Option<String>, Mark);

/// Where a connection stands in one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Mark {
    /// Its stored events up to this id were sent.
    pub after: u64,
    /// Its live-only messages from this sequence number on are still to send.
    pub live_seq: u64,
}

/// Reads a channel's history for its info: the channel and its
/// configuration in, the stored message objects out.
pub type History<'a> = &'a dyn Fn(&str, ChannelConfig) -> Vec<Value>;

/// Connections idle this long are collected (Channelstream: 15 s).
pub const CONN_IDLE_US: u64 = 15_000_000;
/// Users idle this long are forgotten (Channelstream: a day).
pub const USER_IDLE_US: u64 = 86_400_000_000;

/// An event an operation produced, for the channel's connections.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The channel.
    pub channel: String,
    /// The event object as Channelstream delivers it.
    pub body: Value,
    /// Users who must not get it.
    pub exclude_users: Vec<String>,
}

#[derive(Debug, Clone)]
struct Channel {
    uuid: [u8; 16],
    config: ChannelConfig,
    last_active_us: u64,
    /// Users in the channel with their connections there, in join order.
    users: Vec<(String, Vec<ConnId>)>,
}

#[derive(Debug, Clone, Default)]
struct User {
    state: Map<String, Value>,
    public_keys: Vec<String>,
    conns: Vec<ConnId>,
    last_active_us: u64,
}

#[derive(Debug, Clone)]
struct Conn {
    user: String,
    channels: BTreeSet<String>,
    last_active_us: u64,
    /// Per channel it is in: the id in the channel's log after which its
    /// events are still to be sent (`None` until the io side sets it to the
    /// log's head when the connection joins).
    positions: HashMap<String, Option<Mark>>,
    /// The same in the instance's user stream.
    user_after: Option<Mark>,
}

/// Everything the Channelstream face keeps in memory.
#[derive(Debug, Default)]
pub struct State {
    /// Channel names in creation order.
    order: Vec<String>,
    channels: HashMap<String, Channel>,
    users: HashMap<String, User>,
    conns: HashMap<ConnId, Conn>,
    /// A channel was made or reconfigured since the last snapshot.
    dirty: bool,
}

/// What survives a restart: the channels, their uuids and configurations
/// (users, connections and presence come back as clients do).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The instance the channels belong to.
    pub instance: String,
    /// `(name, uuid, configuration)` in creation order.
    pub channels: Vec<(String, [u8; 16], ChannelConfig)>,
}

fn too_many_channels() -> Value {
    json!({"channels": [format!("Longer than maximum length {}.", limits::CS_CHANNELS_PER_CONNECTION_MAX)]})
}

/// The error of a user state over [`limits::CS_STATE_BYTES_MAX`].
fn state_too_big(state: &Map<String, Value>) -> Option<Value> {
    let len = serde_json::to_vec(state).map_or(usize::MAX, |v| v.len());
    (len > limits::CS_STATE_BYTES_MAX).then(
        || json!({"user_state": [format!("State is over {} bytes.", limits::CS_STATE_BYTES_MAX)]}),
    )
}

/// Python's `datetime.utcnow().isoformat()` of a time in µs: naive UTC,
/// microseconds left out when they are 0.
pub fn naive_iso(us: u64) -> String {
    let s = crate::time::format_rfc3339_us(us);
    let s = s.trim_end_matches('Z');
    match s.strip_suffix(".000000") {
        Some(whole) => whole.to_string(),
        None => s.to_string(),
    }
}

/// The canonical text of a uuid.
pub fn uuid_text(u: &[u8; 16]) -> String {
    crate::wire::format_uuid(u)
}

/// What `/connect` asks.
#[derive(Debug, Clone, Default)]
pub struct ConnectAsk {
    /// The user.
    pub username: String,
    /// The connection id (the caller's, or a fresh one).
    pub conn_id: ConnId,
    /// Channels to join.
    pub channels: Vec<String>,
    /// The user's public state keys (replaced).
    pub state_public_keys: Vec<String>,
    /// State for a user that does not exist yet.
    pub fresh_user_state: Map<String, Value>,
    /// State merged in.
    pub user_state: Map<String, Value>,
    /// Configs of channels this call creates.
    pub channel_configs: Vec<(String, ChannelConfig)>,
    /// What `channels_info` holds.
    pub info: InfoAsk,
}

/// What `/subscribe` and `/unsubscribe` ask.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionAsk {
    /// The channels.
    pub channels: Vec<String>,
    /// Configs of channels a subscribe creates.
    pub channel_configs: Vec<(String, ChannelConfig)>,
    /// What `channels_info` holds.
    pub info: InfoAsk,
}

impl User {
    fn public_state(&self) -> Map<String, Value> {
        self.state
            .iter()
            .filter(|(k, _)| self.public_keys.iter().any(|p| p == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Merges `changes`; the keys whose value changed, as `{key, value}`.
    fn apply(&mut self, changes: &Map<String, Value>) -> Vec<Value> {
        let mut changed = Vec::new();
        for (k, v) in changes {
            if (self.state.contains_key(k) || !v.is_null()) && self.state.get(k) != Some(v) {
                self.state.insert(k.clone(), v.clone());
                changed.push(json!({"key": k, "value": v}));
            }
        }
        changed
    }
}

impl State {
    fn channel_or_create(
        &mut self,
        name: &str,
        config: Option<ChannelConfig>,
        uuid: [u8; 16],
        now: u64,
    ) {
        if self.channels.contains_key(name) {
            return;
        }
        self.dirty = true;
        self.order.push(name.to_string());
        self.channels.insert(
            name.to_string(),
            Channel {
                uuid,
                config: config.unwrap_or_default(),
                last_active_us: now,
                users: Vec::new(),
            },
        );
    }

    /// Adds connection `id` of `user` to `channel`; a `joined` event when
    /// it is the user's first connection there and the channel notifies
    /// presence. Returns whether the connection was added.
    fn join(&mut self, channel: &str, id: ConnId, now: u64, events: &mut Vec<Event>) -> bool {
        let Some(user) = self.conns.get(&id).map(|c| c.user.clone()) else {
            return false;
        };
        let public = self
            .users
            .get(&user)
            .map(User::public_state)
            .unwrap_or_default();
        let Some(ch) = self.channels.get_mut(channel) else {
            return false;
        };
        ch.last_active_us = now;
        let first = !ch.users.iter().any(|(u, _)| *u == user);
        if first {
            ch.users.push((user.clone(), Vec::new()));
        }
        let Some((_, conns)) = ch.users.iter_mut().find(|(u, _)| *u == user) else {
            return false;
        };
        if conns.contains(&id) {
            return false;
        }
        conns.push(id);
        if first && ch.config.notify_presence {
            events.push(self.presence(channel, &user, "joined", Some(Value::Object(public)), now));
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.channels.insert(channel.to_string());
            c.positions.entry(channel.to_string()).or_insert(None);
        }
        true
    }

    /// Removes connection `id` from `channel`; a `parted` event when it was
    /// the user's last one there (or the user was not there at all, as
    /// Channelstream does) and the channel notifies presence.
    fn leave(&mut self, channel: &str, id: ConnId, now: u64, events: &mut Vec<Event>) -> bool {
        let Some(user) = self.conns.get(&id).map(|c| c.user.clone()) else {
            return false;
        };
        let Some(ch) = self.channels.get_mut(channel) else {
            return false;
        };
        ch.last_active_us = now;
        let mut removed = false;
        if let Some(i) = ch.users.iter().position(|(u, _)| *u == user) {
            let conns = &mut ch.users[i].1;
            let before = conns.len();
            conns.retain(|c| *c != id);
            removed = conns.len() < before;
            if conns.is_empty() {
                ch.users.remove(i);
            }
        }
        let still_there = ch.users.iter().any(|(u, _)| *u == user);
        if !still_there && ch.config.notify_presence {
            events.push(self.presence(channel, &user, "parted", None, now));
        }
        if let Some(c) = self.conns.get_mut(&id) {
            c.channels.remove(channel);
            c.positions.remove(channel);
        }
        removed
    }

    fn presence(
        &self,
        channel: &str,
        user: &str,
        action: &str,
        state: Option<Value>,
        now: u64,
    ) -> Event {
        let ch = &self.channels[channel];
        let users: Vec<Value> = if ch.config.broadcast_presence_with_user_lists {
            ch.users
                .iter()
                .map(|(u, _)| {
                    let st = self
                        .users
                        .get(u)
                        .map(User::public_state)
                        .unwrap_or_default();
                    json!({"user": u, "state": st})
                })
                .collect()
        } else {
            Vec::new()
        };
        Event {
            channel: channel.to_string(),
            body: json!({
                "type": "presence",
                "user": user,
                "users": users,
                "timestamp": naive_iso(now),
                "channel": channel,
                "message": {"action": action},
                "state": state,
                "catchup": false,
            }),
            exclude_users: vec![user.to_string()],
        }
    }

    /// Why `/connect` cannot be done within the limits, as Channelstream
    /// words validation errors.
    fn connect_limits(&self, ask: &ConnectAsk) -> Option<Value> {
        let user = self.users.get(&ask.username);
        if user.is_none() && self.users.len() >= limits::CS_USERS_MAX {
            return Some(json!({"username": ["Too many users."]}));
        }
        if user.is_some_and(|u| u.conns.len() >= limits::CS_CONNECTIONS_PER_USER_MAX) {
            return Some(json!({"conn_id": ["Too many connections for this user."]}));
        }
        if ask.channels.len() > limits::CS_CHANNELS_PER_CONNECTION_MAX {
            return Some(too_many_channels());
        }
        if self.new_channels(&ask.channels) + self.order.len() > limits::CS_CHANNELS_MAX {
            return Some(json!({"channels": ["Too many channels."]}));
        }
        let mut state = user.map_or_else(|| ask.fresh_user_state.clone(), |u| u.state.clone());
        state.extend(ask.user_state.clone());
        state_too_big(&state)
    }

    fn new_channels(&self, names: &[String]) -> usize {
        names
            .iter()
            .filter(|n| !self.channels.contains_key(*n))
            .count()
    }

    /// `/connect`: the response body and the events, or the 422 errors of a
    /// limit it would pass.
    ///
    /// # Errors
    /// The errors.
    pub fn connect_checked(
        &mut self,
        ask: &ConnectAsk,
        now: u64,
        new_uuid: &mut dyn FnMut() -> [u8; 16],
        history: History<'_>,
    ) -> Result<(Value, Vec<Event>), Value> {
        if let Some(e) = self.connect_limits(ask) {
            return Err(e);
        }
        Ok(self.connect(ask, now, new_uuid, history))
    }

    /// `/connect`: the response body and the events.
    pub fn connect(
        &mut self,
        ask: &ConnectAsk,
        now: u64,
        new_uuid: &mut dyn FnMut() -> [u8; 16],
        history: History<'_>,
    ) -> (Value, Vec<Event>) {
        let mut events = Vec::new();
        let user = self
            .users
            .entry(ask.username.clone())
            .or_insert_with(|| User {
                state: ask.fresh_user_state.clone(),
                ..User::default()
            });
        user.public_keys.clone_from(&ask.state_public_keys);
        user.apply(&ask.user_state);
        user.last_active_us = now;
        if !user.conns.contains(&ask.conn_id) {
            user.conns.push(ask.conn_id);
        }
        self.conns.entry(ask.conn_id).or_insert_with(|| Conn {
            user: ask.username.clone(),
            channels: BTreeSet::new(),
            last_active_us: now,
            positions: HashMap::new(),
            user_after: None,
        });
        let mut sorted = ask.channels.clone();
        sorted.sort();
        for name in &sorted {
            let config = ask
                .channel_configs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| *c);
            self.channel_or_create(name, config, new_uuid(), now);
            self.join(name, ask.conn_id, now, &mut events);
        }
        let user = &self.users[&ask.username];
        let body = json!({
            "conn_id": uuid_text(&ask.conn_id),
            "state": user.state,
            "username": ask.username,
            "public_state": user.public_state(),
            "channels": sorted,
            "channels_info": self.channels_info(Some(&sorted), &ask.info, history),
        });
        (body, events)
    }

    /// `/subscribe` (`subscribe`) or `/unsubscribe`: `None` for an unknown
    /// connection.
    pub fn subscription(
        &mut self,
        conn: ConnId,
        ask: &SubscriptionAsk,
        subscribe: bool,
        now: u64,
        new_uuid: &mut dyn FnMut() -> [u8; 16],
        history: History<'_>,
    ) -> Option<Result<(Value, Vec<Event>), Value>> {
        let (channels, configs, info) = (&ask.channels, &ask.channel_configs, &ask.info);
        let user = self.conns.get(&conn)?.user.clone();
        if subscribe {
            let now_in = &self.conns[&conn].channels;
            let joining = channels.iter().filter(|c| !now_in.contains(*c)).count();
            if now_in.len() + joining > limits::CS_CHANNELS_PER_CONNECTION_MAX {
                return Some(Err(too_many_channels()));
            }
            if self.new_channels(channels) + self.order.len() > limits::CS_CHANNELS_MAX {
                return Some(Err(json!({"channels": ["Too many channels."]})));
            }
        }
        let mut events = Vec::new();
        let mut changed = BTreeSet::new();
        if self.users.contains_key(&user) {
            for name in channels.iter() {
                let done = if subscribe {
                    let config = configs.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
                    self.channel_or_create(name, config, new_uuid(), now);
                    self.join(name, conn, now, &mut events)
                } else {
                    self.channels.contains_key(name) && self.leave(name, conn, now, &mut events)
                };
                if done {
                    changed.insert(name.clone());
                }
            }
        }
        let now_in: Vec<String> = self.conns[&conn].channels.iter().cloned().collect();
        let key = if subscribe {
            "subscribed_to"
        } else {
            "unsubscribed_from"
        };
        let body = json!({
            "channels": now_in,
            "channels_info": self.channels_info(Some(&now_in), info, history),
            key: changed,
        });
        Some(Ok((body, events)))
    }

    /// `/user_state`: `None` for an unknown user.
    pub fn user_state(
        &mut self,
        user: &str,
        changes: &Map<String, Value>,
        public_keys: Option<&[String]>,
        now: u64,
    ) -> Option<Result<(Value, Vec<Event>), Value>> {
        let u = self.users.get_mut(user)?;
        let mut after = u.state.clone();
        after.extend(changes.clone());
        if let Some(e) = state_too_big(&after) {
            return Some(Err(e));
        }
        if let Some(keys) = public_keys {
            u.public_keys = keys.to_vec();
        }
        let changed = u.apply(changes);
        u.last_active_us = now;
        let (state, public, keys) = (u.state.clone(), u.public_state(), u.public_keys.clone());
        let mut events = Vec::new();
        if !changed.is_empty() {
            let public_changed: Vec<Value> = changed
                .iter()
                .filter(|c| {
                    c["key"]
                        .as_str()
                        .is_some_and(|k| keys.iter().any(|p| p == k))
                })
                .cloned()
                .collect();
            for name in &self.order {
                let ch = &self.channels[name];
                if ch.config.notify_state && ch.users.iter().any(|(n, _)| n == user) {
                    events.push(Event {
                        channel: name.clone(),
                        body: json!({
                            "type": "user_state_change",
                            "user": user,
                            "timestamp": naive_iso(now),
                            "catchup": false,
                            "channel": name,
                            "message": {"state": public, "changed": public_changed},
                        }),
                        exclude_users: Vec::new(),
                    });
                }
            }
        }
        let body = json!({"user_state": state, "changed_state": changed, "public_keys": keys});
        Some(Ok((body, events)))
    }

    /// `/channel_config`: creates or reconfigures the channels.
    pub fn channel_config(
        &mut self,
        configs: &[(String, ChannelConfig)],
        now: u64,
        new_uuid: &mut dyn FnMut() -> [u8; 16],
    ) -> Value {
        let mut names = Vec::new();
        for (name, config) in configs {
            match self.channels.get_mut(name) {
                Some(ch) => {
                    self.dirty |= ch.config != *config;
                    ch.config = *config;
                }
                None => self.channel_or_create(name, Some(*config), new_uuid(), now),
            }
            names.push(name.clone());
        }
        let ask = InfoAsk {
            include_history: false,
            include_users: false,
            ..InfoAsk::default()
        };
        self.channels_info(Some(&names), &ask, &|_, _| Vec::new())
    }

    /// `/disconnect`: whether the connection existed. It leaves its channels
    /// at once (Channelstream: at the next collection, within a second).
    pub fn disconnect(&mut self, conn: ConnId, now: u64) -> (bool, Vec<Event>) {
        let Some(c) = self.conns.get(&conn) else {
            return (false, Vec::new());
        };
        let channels: Vec<String> = c.channels.iter().cloned().collect();
        let user = c.user.clone();
        let mut events = Vec::new();
        for ch in channels {
            self.leave(&ch, conn, now, &mut events);
        }
        self.conns.remove(&conn);
        if let Some(u) = self.users.get_mut(&user) {
            u.conns.retain(|c| *c != conn);
        }
        (true, events)
    }

    /// Notes activity of a connection (and its user).
    pub fn touch(&mut self, conn: ConnId, now: u64) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.last_active_us = now;
        if let Some(u) = self.users.get_mut(&c.user) {
            u.last_active_us = now;
        }
        true
    }

    /// The user a connection belongs to.
    pub fn conn_user(&self, conn: ConnId) -> Option<&str> {
        self.conns.get(&conn).map(|c| c.user.as_str())
    }

    /// The channels a connection is in, sorted.
    pub fn conn_channels(&self, conn: ConnId) -> Vec<String> {
        self.conns
            .get(&conn)
            .map(|c| c.channels.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets every position not set yet (of connections that joined a
    /// channel, or were made) to what `head` says: where a channel's log
    /// (`Some(name)`) or the user stream (`None`) stands now.
    pub fn fill_positions(&mut self, head: &mut dyn FnMut(Option<&str>) -> Mark) {
        for c in self.conns.values_mut() {
            if c.user_after.is_none() {
                c.user_after = Some(head(None));
            }
            for (name, pos) in c.positions.iter_mut() {
                if pos.is_none() {
                    *pos = Some(head(Some(name)));
                }
            }
        }
    }

    /// A connection's user and positions, channels sorted by name, the user
    /// stream last.
    pub fn positions(&self, conn: ConnId) -> Option<(String, Vec<Position>)> {
        let c = self.conns.get(&conn)?;
        let mut out: Vec<Position> = c
            .positions
            .iter()
            .filter_map(|(n, p)| p.map(|p| (Some(n.clone()), p)))
            .collect();
        out.sort();
        if let Some(u) = c.user_after {
            out.push((None, u));
        }
        Some((c.user.clone(), out))
    }

    /// Moves a connection's position in a channel (`None`: the user stream).
    pub fn advance(&mut self, conn: ConnId, channel: Option<&str>, to: Mark) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let slot = match channel {
            Some(name) => match c.positions.get_mut(name) {
                Some(p) => p,
                None => return,
            },
            None => &mut c.user_after,
        };
        *slot = Some(slot.map_or(to, |p| Mark {
            after: p.after.max(to.after),
            live_seq: p.live_seq.max(to.live_seq),
        }));
    }

    /// The snapshot to save when channels changed since the last one.
    pub fn take_snapshot(&mut self, instance: &str) -> Option<Snapshot> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(Snapshot {
            instance: instance.to_string(),
            channels: self
                .order
                .iter()
                .map(|n| (n.clone(), self.channels[n].uuid, self.channels[n].config))
                .collect(),
        })
    }

    /// The channels of a snapshot (made at start-up, before any request).
    pub fn restore(&mut self, snap: &Snapshot, now: u64) {
        for (name, uuid, config) in &snap.channels {
            self.channel_or_create(name, Some(*config), *uuid, now);
        }
        self.dirty = false;
    }

    /// The configuration of a channel, if it exists.
    pub fn channel_config_of(&self, name: &str) -> Option<ChannelConfig> {
        self.channels.get(name).map(|c| c.config)
    }

    /// Collects connections in a channel idle for [`CONN_IDLE_US`] (parting
    /// them) and users idle for [`USER_IDLE_US`].
    pub fn collect(&mut self, now: u64) -> Vec<Event> {
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                !c.channels.is_empty() && now.saturating_sub(c.last_active_us) > CONN_IDLE_US
            })
            .map(|(id, _)| *id)
            .collect();
        let mut events = Vec::new();
        for id in idle {
            events.extend(self.disconnect(id, now).1);
        }
        self.users
            .retain(|_, u| now.saturating_sub(u.last_active_us) <= USER_IDLE_US);
        events
    }

    /// The `channels_info` object: the channels asked for (`None`: every
    /// one) with their settings, users and (through `history`) history.
    pub fn channels_info(
        &self,
        names: Option<&[String]>,
        ask: &InfoAsk,
        history: History<'_>,
    ) -> Value {
        let names: Vec<&String> = match names {
            Some(n) => n.iter().collect(),
            None => self.order.iter().collect(),
        };
        let mut channels = Map::new();
        let mut users: Vec<&str> = Vec::new();
        for name in names {
            if ask.exclude_channels.contains(name) {
                continue;
            }
            let Some(ch) = self.channels.get(name) else {
                continue;
            };
            let mut in_channel: Vec<&str> = if ask.include_users {
                ch.users.iter().map(|(u, _)| u.as_str()).collect()
            } else {
                Vec::new()
            };
            in_channel.sort_unstable();
            for u in &in_channel {
                if !users.contains(u) {
                    users.push(u);
                }
            }
            let total_connections: usize = ch.users.iter().map(|(_, c)| c.len()).sum();
            channels.insert(
                name.clone(),
                json!({
                    "uuid": uuid_text(&ch.uuid),
                    "name": name,
                    "long_name": null,
                    "settings": ch.config.to_json(),
                    "history": if ask.include_history { history(name, ch.config) } else { Vec::new() },
                    "last_active": naive_iso(ch.last_active_us),
                    "total_connections": total_connections,
                    "total_users": in_channel.len(),
                    "users": in_channel,
                }),
            );
        }
        let users: Vec<Value> = users
            .iter()
            .filter_map(|u| {
                let user = self.users.get(*u)?;
                let state = if ask.return_public_state {
                    user.public_state()
                } else {
                    user.state.clone()
                };
                Some(json!({"user": u, "state": state}))
            })
            .collect();
        json!({"channels": channels, "users": users})
    }
}
