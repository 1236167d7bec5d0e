//! `tidewire sub`: follows a channel and prints its messages.

use std::io::{self, Write};

use clap::Args;
use serde_json::json;

use crate::message_cli::print_message;
use crate::{connect, ConnArgs, Failure};
use tidewire::client::{parse_start, ClientError, Event};

#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
    /// Channel name.
    pub(crate) channel: String,
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
    /// Only messages stored under the server's durability policy (under
    /// `batch`: synced), never one a crash could take back.
    #[arg(long)]
    pub(crate) committed: bool,
}

pub(crate) fn subscribe(a: &SubArgs) -> Result<(), Failure> {
    let start = parse_start(&a.from).map_err(Failure::Usage)?;
    if a.count == Some(0) {
        return Ok(());
    }
    let mut c = connect(&a.conn)?;
    let sub = if a.committed {
        c.subscribe_committed(&a.channel, a.room.as_deref(), start)?
    } else {
        c.subscribe(&a.channel, a.room.as_deref(), start)?
    };
    tracing::debug!(
        sub_id = sub.sub_id,
        next_id = sub.next_id,
        head_id = sub.head_id,
        "subscribed"
    );
    let mut out = io::stdout().lock();
    let mut seen = 0u64;
    for event in c.events() {
        match event? {
            Event::Message { message, .. } => {
                print_message(&mut out, &message, a.conn.json)?;
                seen += 1;
                if a.count.is_some_and(|n| seen >= n) {
                    break;
                }
            }
            Event::Gap {
                sub_id,
                wanted_id,
                oldest_id,
            } => {
                eprintln!(
                    "gap: message #{wanted_id} and later ones up to #{oldest_id} are no longer retained; continuing at #{oldest_id}"
                );
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
                    "truncated: a server crash took back the messages after #{kept_id} (this subscription resumed after #{after_id}); continuing at #{next_id}"
                );
                if a.conn.json {
                    let t = json!({ "truncated": { "sub_id": sub_id, "after_id": after_id, "kept_id": kept_id, "next_id": next_id } });
                    writeln!(out, "{t}")?;
                }
            }
            Event::Closed { code, message, .. } => {
                return Err(Failure::Client(ClientError::Server { code, message }));
            }
        }
    }
    out.flush()?;
    Ok(())
}
