//! `tidewire sub`: follows a channel and prints its messages.
//!
//! When the connection is lost or the server shuts down, it reconnects with
//! a growing wait and resumes after the last message it printed, so nothing
//! is skipped and nothing repeats (unless `--no-reconnect`). What it does is
//! said on stderr.

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::message_cli::{print_live, print_message};
use crate::{connect, ConnArgs, Failure};
use tidewire::client::{parse_start, Client, ClientError, Event};
use tidewire::wire::{ErrorCode, Start};

/// First wait before a reconnect attempt; it doubles up to the maximum.
const RECONNECT_WAIT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two reconnect attempts.
const RECONNECT_WAIT_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// Channel name.
    #[arg(required_unless_present = "user_stream")]
    pub(crate) channel: Option<String>,
    /// Follow the caller's user stream (user-directed messages) instead of a
    /// channel: needs a user key.
    #[arg(long, conflicts_with = "channel")]
    pub(crate) user_stream: bool,
    /// Where to start: new, earliest, a message id (inclusive), an RFC 3339
    /// time (2026-11-22T10:00:00Z) or @<unix-seconds>.
    #[arg(long, default_value = "new", value_name = "WHERE")]
    pub(crate) from: String,
    /// Only this room.
    #[arg(long)]
    pub(crate) room: Option<String>,
    /// Exit after this many messages (default: follow forever).
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Exit when the connection is lost or the server shuts down, instead of
    /// reconnecting and resuming after the last message printed.
    #[arg(long)]
    pub(crate) no_reconnect: bool,
    /// Only messages stored under the server's durability policy (under
    /// `batch`: synced), never one a crash could take back.
    #[arg(long)]
    pub(crate) committed: bool,
}

/// Where a follow stands, across reconnects.
#[derive(Debug, Default)]
struct Follow {
    /// Messages printed.
    seen: u64,
    /// The id after which to resume: the last message printed, or the one
    /// before the first the subscription could deliver. `None` until the
    /// first subscription started.
    after: Option<u64>,
}

/// Why one connection's follow ended.
enum Ended {
    /// `--count` was reached.
    Done,
    /// The connection is gone for a reason a reconnect can cure.
    Lost(ClientError),
}

pub(crate) fn subscribe(a: &SubArgs) -> Result<(), Failure> {
    let start = parse_start(&a.from).map_err(Failure::Usage)?;
    if a.count == Some(0) {
        return Ok(());
    }
    let mut follow = Follow::default();
    let mut c = connect(&a.conn)?;
    loop {
        let from = follow.after.map_or(start, Start::AfterId);
        let lost = match follow_on(a, &mut c, from, &mut follow)? {
            Ended::Done => return Ok(()),
            Ended::Lost(e) => e,
        };
        if a.no_reconnect {
            return Err(Failure::Client(lost));
        }
        eprintln!(
            "tidewire sub: {}; reconnecting to {}",
            why_lost(&lost),
            a.conn.server
        );
        c = reconnect(a)?;
        match follow.after {
            Some(id) => eprintln!(
                "tidewire sub: reconnected to {}; resuming after #{id}",
                a.conn.server
            ),
            None => eprintln!("tidewire sub: reconnected to {}", a.conn.server),
        }
    }
}

/// Subscribes on `c` from `from` and prints until `--count` is reached or
/// the connection is lost.
///
/// # Errors
/// Errors a reconnect cannot cure (the channel is gone, access was
/// revoked, output failed).
fn follow_on(
    a: &SubArgs,
    c: &mut Client,
    from: Start,
    follow: &mut Follow,
) -> Result<Ended, Failure> {
    let channel = a
        .channel
        .as_deref()
        .unwrap_or(tidewire::client::USER_STREAM);
    let subscribed = if a.committed {
        c.subscribe_committed(channel, a.room.as_deref(), from)
    } else {
        c.subscribe(channel, a.room.as_deref(), from)
    };
    let sub = match subscribed {
        Ok(sub) => sub,
        Err(e) if can_reconnect(&e) => return Ok(Ended::Lost(e)),
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(sub_id = sub.sub_id, next_id = sub.next_id, "subscribed");
    follow.after = Some(follow.after.unwrap_or(sub.next_id.saturating_sub(1)));
    let mut out = io::stdout().lock();
    loop {
        let event = match c.next_event(None) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(e) if can_reconnect(&e) => return Ok(Ended::Lost(e)),
            Err(e) => return Err(e.into()),
        };
        match event {
            Event::Message { message, .. } => {
                print_message(&mut out, &message, a.conn.json)?;
                follow.after = Some(message.id);
                follow.seen += 1;
                if a.count.is_some_and(|n| follow.seen >= n) {
                    out.flush()?;
                    return Ok(Ended::Done);
                }
            }
            Event::Live { message, .. } => print_live(&mut out, &message, a.conn.json)?,
            Event::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            } => {
                eprintln!(
                    "gap: messages #{wanted_id} to #{} are no longer retained; continuing at #{oldest_id}",
                    oldest_id.saturating_sub(1)
                );
                follow.after = Some(oldest_id.saturating_sub(1));
                if a.conn.json {
                    let gap = json!({ "gap": { "sub_id": sub_id, "wanted_id": wanted_id, "oldest_id": oldest_id } });
                    writeln!(out, "{gap}")?;
                }
            }
            Event::Truncated {
                sub_id,
                after_id,
                kept_id,
                next_id,
            } => {
                eprintln!(
                    "truncated: a server crash took back the messages after #{kept_id} (this follow was after #{after_id}); continuing at #{next_id}"
                );
                follow.after = Some(next_id.saturating_sub(1));
                if a.conn.json {
                    let t = json!({ "truncated": { "sub_id": sub_id, "after_id": after_id, "kept_id": kept_id, "next_id": next_id } });
                    writeln!(out, "{t}")?;
                }
            }
            Event::Closed { code, message, .. } => {
                let e = ClientError::Server { code, message };
                if can_reconnect(&e) {
                    return Ok(Ended::Lost(e));
                }
                return Err(e.into());
            }
        }
    }
}

/// Connects again, waiting longer after each failure, until it works or a
/// failure no wait can cure (a refused key, a bad address).
///
/// # Errors
/// That failure.
fn reconnect(a: &SubArgs) -> Result<Client, Failure> {
    let mut wait = RECONNECT_WAIT_FIRST;
    loop {
        std::thread::sleep(wait);
        match connect(&a.conn) {
            Ok(c) => return Ok(c),
            Err(Failure::Client(e)) if can_reconnect(&e) => {
                wait = (wait * 2).min(RECONNECT_WAIT_MAX);
                eprintln!(
                    "tidewire sub: cannot reach {} ({}); retrying in {:.1} s",
                    a.conn.server,
                    why_lost(&e),
                    wait.as_secs_f64()
                );
            }
            Err(other) => return Err(other),
        }
    }
}

/// True for the failures a new connection may cure: the connection broke,
/// timed out or was refused, or the server is shutting down.
fn can_reconnect(e: &ClientError) -> bool {
    match e {
        ClientError::Io(_) | ClientError::Closed | ClientError::Timeout => true,
        ClientError::Server { code, .. } => *code == ErrorCode::ShuttingDown,
        ClientError::Protocol(_) | ClientError::Invalid(_) => false,
    }
}

fn why_lost(e: &ClientError) -> String {
    match e {
        ClientError::Server {
            code: ErrorCode::ShuttingDown,
            ..
        } => "the server is shutting down".into(),
        ClientError::Closed => "the server closed the connection".into(),
        other => other.to_string(),
    }
}
