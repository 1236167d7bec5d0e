//! The Channelstream 0.7.1 face: its signed server API (`/connect`,
//! `/subscribe`, `/unsubscribe`, `/user_state`, `/channel_config`,
//! `/info`, `/disconnect`) over the broker's Channelstream state.
//!
//! Sans-IO: requests come in as bytes, answers go out as a status and a
//! JSON body; the io thread (`net/http`) does the I/O and keeps the state
//! in the broker. Behaviour follows Channelstream 0.7.1 as measured (see
//! README, "The Channelstream API"), including its error bodies.
//!
//! Codemap: `sign` — request signatures; `schema` — request validation;
//! `state` — users, connections, channels, presence; `json` — the JSON
//! layout of its answers.

pub mod json;
pub mod message;
pub mod render;
pub mod schema;
pub mod sign;
pub mod state;

use serde_json::{json, Map, Value};

use schema::{configs_field, info_field, opt_uuid, req_str, state_field, str_list, Errors};
use state::{ConnId, ConnectAsk, Event, State};

/// An answer of the API: a status and a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 200 with this JSON value.
    Ok(Value),
    /// 422 with these validation errors.
    Invalid(Value),
    /// 500 `Internal Server Error` (what Channelstream answers a body that
    /// is not JSON).
    Internal,
}

/// An operation's answer and the events it produced.
pub type Outcome = (Answer, Vec<Event>);

fn object(body: &[u8]) -> Result<Map<String, Value>, Answer> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Answer::Invalid(json!({"_schema": ["Invalid input type."]}))),
        Err(_) => Err(Answer::Internal),
    }
}

fn invalid(e: Value) -> Outcome {
    (Answer::Invalid(e), Vec::new())
}

/// `POST /connect`.
pub fn connect(
    st: &mut State,
    body: &[u8],
    now: u64,
    new_uuid: &mut dyn FnMut() -> [u8; 16],
    history: state::History<'_>,
) -> Outcome {
    let b = match object(body) {
        Ok(b) => b,
        Err(a) => return (a, Vec::new()),
    };
    let mut e = Errors::default();
    let username = req_str(&b, "username", 512, &mut e);
    let conn_id = opt_uuid(&b, "conn_id", &mut e);
    let ask = ConnectAsk {
        username: username.unwrap_or_default(),
        conn_id: conn_id.unwrap_or_else(&mut *new_uuid),
        channels: str_list(&b, "channels", 256, &mut e),
        state_public_keys: str_list(&b, "state_public_keys", 256, &mut e),
        fresh_user_state: state_field(&b, "fresh_user_state", &mut e),
        user_state: state_field(&b, "user_state", &mut e),
        channel_configs: configs_field(&b, "channel_configs", &mut e),
        info: info_field(&b, "info", &mut e),
    };
    match e.into_result(ask) {
        Ok(ask) => match st.connect_checked(&ask, now, new_uuid, history) {
            Ok((body, events)) => (Answer::Ok(body), events),
            Err(e) => invalid(e),
        },
        Err(e) => invalid(e),
    }
}

/// The `conn_id` of a subscribe or unsubscribe: the body's, or the query's.
fn conn_of(
    b: &Map<String, Value>,
    query_conn: Option<&str>,
    st: &State,
    e: &mut Errors,
) -> Option<ConnId> {
    let mut b = b.clone();
    if !b.contains_key("conn_id") {
        b.insert(
            "conn_id".into(),
            query_conn.map_or(Value::Null, |q| json!(q)),
        );
    }
    let id = opt_uuid(&b, "conn_id", e)?;
    if st.conn_user(id).is_none() {
        e.0.insert("conn_id".into(), json!(["Unknown connection"]));
        return None;
    }
    Some(id)
}

/// `POST /subscribe` (`subscribe`) and `POST /unsubscribe`.
pub fn subscription(
    st: &mut State,
    body: &[u8],
    query_conn: Option<&str>,
    subscribe: bool,
    now: u64,
    new_uuid: &mut dyn FnMut() -> [u8; 16],
    history: state::History<'_>,
) -> Outcome {
    let b = match object(body) {
        Ok(b) => b,
        Err(a) => return (a, Vec::new()),
    };
    let mut e = Errors::default();
    let conn = conn_of(&b, query_conn, st, &mut e);
    if !b.contains_key("channels") {
        e.0.insert("channels".into(), json!([schema::MISSING]));
    }
    let channels = str_list(&b, "channels", 256, &mut e);
    if b.contains_key("channels") && channels.is_empty() && !e.0.contains_key("channels") {
        e.0.insert("channels".into(), json!(["Shorter than minimum length 1."]));
    }
    let configs = configs_field(&b, "channel_configs", &mut e);
    let info = info_field(&b, "info", &mut e);
    let (Some(conn), true) = (conn, e.is_empty()) else {
        return invalid(Value::Object(e.0));
    };
    let ask = state::SubscriptionAsk {
        channels,
        channel_configs: configs,
        info,
    };
    match st.subscription(conn, &ask, subscribe, now, new_uuid, history) {
        Some(Ok((body, events))) => (Answer::Ok(body), events),
        Some(Err(e)) => invalid(e),
        None => invalid(json!({"conn_id": ["Unknown connection"]})),
    }
}

/// `POST /user_state`.
pub fn user_state(st: &mut State, body: &[u8], now: u64) -> Outcome {
    let b = match object(body) {
        Ok(b) => b,
        Err(a) => return (a, Vec::new()),
    };
    let mut e = Errors::default();
    let user = req_str(&b, "user", 512, &mut e);
    let changes = state_field(&b, "user_state", &mut e);
    let keys = b
        .contains_key("state_public_keys")
        .then(|| str_list(&b, "state_public_keys", 256, &mut e));
    let Some(user) = user.filter(|_| e.is_empty()) else {
        return invalid(Value::Object(e.0));
    };
    match st.user_state(&user, &changes, keys.as_deref(), now) {
        Some(Ok((body, events))) => (Answer::Ok(body), events),
        Some(Err(e)) => invalid(e),
        None => invalid(json!({"user": ["Unknown user"]})),
    }
}

/// `POST /channel_config`.
pub fn channel_config(
    st: &mut State,
    body: &[u8],
    now: u64,
    new_uuid: &mut dyn FnMut() -> [u8; 16],
) -> Outcome {
    let b = match object(body) {
        Ok(b) => b,
        Err(a) => return (a, Vec::new()),
    };
    let mut configs = Vec::new();
    for (name, v) in &b {
        match schema::ChannelConfig::parse(v) {
            Ok(c) => configs.push((name.clone(), c)),
            Err(errs) => return invalid(Value::Object(errs)),
        }
    }
    (
        Answer::Ok(st.channel_config(&configs, now, new_uuid)),
        Vec::new(),
    )
}

/// `/info` (any method): the state of the channels asked for.
pub fn info(st: &State, body: &[u8], history: state::History<'_>) -> Answer {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Answer::Ok(st.channels_info(None, &schema::InfoAsk::default(), history));
    }
    let b = match object(body) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let mut e = Errors::default();
    if !b.contains_key("info") {
        return Answer::Invalid(json!({"info": [schema::MISSING]}));
    }
    let ask = info_field(&b, "info", &mut e);
    if !e.is_empty() {
        return Answer::Invalid(Value::Object(e.0));
    }
    let names = ask.channels.clone();
    Answer::Ok(st.channels_info(names.as_deref(), &ask, history))
}

/// `/disconnect`: `conn_id` from the JSON body of a `POST`, from the query
/// otherwise; answers `true` or `false`.
pub fn disconnect(
    st: &mut State,
    post_body: Option<&[u8]>,
    query_conn: Option<&str>,
    now: u64,
) -> Outcome {
    let conn = match post_body {
        Some(body) => match object(body) {
            Ok(b) => b.get("conn_id").cloned(),
            Err(a) => return (a, Vec::new()),
        },
        None => query_conn.map(|q| json!(q)),
    };
    let mut m = Map::new();
    m.insert("conn_id".into(), conn.unwrap_or(Value::Null));
    let mut e = Errors::default();
    let Some(id) = opt_uuid(&m, "conn_id", &mut e) else {
        return invalid(Value::Object(e.0));
    };
    let (existed, events) = st.disconnect(id, now);
    (Answer::Ok(json!(existed)), events)
}

/// The tidewire channel of Channelstream channel `name`: the same name when
/// it is a tidewire name already, otherwise `cs-` and 40 hex digits of its
/// SHA-256 (Channelstream names are any 1 to 256 characters).
pub fn tidewire_channel(name: &str) -> String {
    if crate::broker::is_slug(name, crate::limits::CHANNEL_NAME_LEN_MAX) {
        return name.to_string();
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(name.as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("cs-{hex}")
}
