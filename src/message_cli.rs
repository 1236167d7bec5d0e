//! `tidewire pub`, `history` and `fetch`: publishing and reading messages.

use std::io::{self, BufRead, Write};

use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{connect, usage, ConnArgs, Failure};
use tidewire::client::{format_uuid, Client, HistoryQuery, Message, OutgoingMessage};
use tidewire::limits;
use tidewire::storage::record::ContentType;
use tidewire::wire::AckMode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AckArg {
    /// Do not wait for acknowledgements.
    None,
    /// Acknowledge once appended to the log.
    Append,
    /// Acknowledge once stored under the durability policy.
    Durable,
}

impl From<AckArg> for AckMode {
    fn from(a: AckArg) -> AckMode {
        match a {
            AckArg::None => AckMode::None,
            AckArg::Append => AckMode::Append,
            AckArg::Durable => AckMode::Durable,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name (not with --to: then the first argument is MESSAGE).
    #[arg(value_name = "CHANNEL")]
    channel: Option<String>,
    /// The message; without it, every line of stdin is one message.
    message: Option<String>,
    /// User-directed: send the messages to these users (repeat it, or
    /// separate names with commas), whatever they subscribe to, through the
    /// instance's user stream; no channel is named. Keys without a user.
    #[arg(long, value_name = "USER", value_delimiter = ',')]
    to: Vec<String>,
    /// Only these users may see the messages (repeatable).
    #[arg(long, value_name = "USER", value_delimiter = ',')]
    pm_user: Vec<String>,
    /// These users never see the messages (repeatable; wins over --pm-user).
    #[arg(long, value_name = "USER", value_delimiter = ',')]
    exclude_user: Vec<String>,
    /// Room of the messages.
    #[arg(long)]
    room: Option<String>,
    /// Acknowledgement mode.
    #[arg(long, value_enum, default_value_t = AckArg::Append)]
    ack: AckArg,
    /// Idempotency key: a repeat inside retention returns the original id.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The payload is JSON (checked before sending; content type json).
    #[arg(long)]
    json_payload: bool,
    /// Publish the MESSAGE this many times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    count: u64,
    /// The message's uuid (8-4-4-4-12 hex); without it the server assigns
    /// one. A uuid a retained message has makes the publish a duplicate.
    #[arg(long, value_parser = parse_uuid_arg)]
    uuid: Option<[u8; 16]>,
    /// Live-only: delivered to the subscribers following the channel now,
    /// never stored (no id, not in history, not replayed).
    #[arg(long, conflicts_with = "idempotency_key")]
    no_history: bool,
}

fn parse_uuid_arg(s: &str) -> Result<[u8; 16], String> {
    tidewire::client::parse_uuid(s).ok_or_else(|| format!("{s:?} is not a uuid"))
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// Only this room.
    #[arg(long)]
    room: Option<String>,
    /// Most messages (server default page when absent); more than one
    /// page's worth is read page by page.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Oldest message first (default: newest first).
    #[arg(long)]
    oldest_first: bool,
    /// Only ids greater than this.
    #[arg(long, value_name = "ID")]
    after: Option<u64>,
    /// Only ids less than this.
    #[arg(long, value_name = "ID")]
    before: Option<u64>,
    /// The raw records: edits and deletions as records of their own (as
    /// subscribers get them), deleted messages included. Default: each
    /// message in its latest version, deleted ones left out.
    #[arg(long)]
    raw: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// Message id.
    id: u64,
    /// The record as stored (an edit or deletion record included); default:
    /// the message in its latest version.
    #[arg(long)]
    raw: bool,
}

pub(crate) fn print_message(out: &mut impl Write, m: &Message, json: bool) -> Result<(), Failure> {
    if json {
        writeln!(out, "{}", m.to_json())?;
    } else {
        let room = m
            .room
            .as_deref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        writeln!(
            out,
            "#{} {}{room} {}",
            m.id,
            m.created_at(),
            m.payload_text()
        )?;
    }
    Ok(())
}

/// Prints a live-only message: like [`print_message`], marked `live` (it has
/// no id: `"live": true` and `"id": 0` in JSON, `#live` in text).
pub(crate) fn print_live(out: &mut impl Write, m: &Message, json: bool) -> Result<(), Failure> {
    if json {
        let mut v = m.to_json();
        v["live"] = json!(true);
        writeln!(out, "{v}")?;
    } else {
        let room = m
            .room
            .as_deref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        writeln!(out, "#live {}{room} {}", m.created_at(), m.payload_text())?;
    }
    Ok(())
}

/// Lines of stdin published between two collections of acknowledgements.
pub(crate) const PUB_STDIN_CHUNK: usize = 1024;

/// The channel and the message argument of `pub`: with `--to` no channel is
/// named (the user stream) and the one argument is the message.
fn pub_target(a: &PubArgs) -> Result<(&str, Option<&str>), Failure> {
    match (&a.channel, &a.message, a.to.is_empty()) {
        (Some(c), m, true) => Ok((c, m.as_deref())),
        (None, _, true) => Err(usage("name a CHANNEL, or users with --to")),
        (m, None, false) => Ok((tidewire::client::USER_STREAM, m.as_deref())),
        (_, Some(_), false) => Err(usage(
            "with --to no channel is named: tidewire pub --to USER [MESSAGE]",
        )),
    }
}

pub(crate) fn publish(a: &PubArgs) -> Result<(), Failure> {
    let (channel, message) = pub_target(a)?;
    let pm_users: Vec<&str> = a.to.iter().chain(&a.pm_user).map(String::as_str).collect();
    let exclude: Vec<&str> = a.exclude_user.iter().map(String::as_str).collect();
    let ack = AckMode::from(a.ack);
    let content_type = if a.json_payload {
        ContentType::Json
    } else {
        ContentType::Text
    };
    let check = |payload: &str, what: &str| {
        if a.json_payload {
            serde_json::from_str::<serde::de::IgnoredAny>(payload)
                .map_err(|e| Failure::Usage(format!("{what} is not JSON: {e}")))?;
        }
        Ok::<(), Failure>(())
    };
    let mut c = connect(&a.conn)?;
    let mut out = io::stdout().lock();
    let mut sent = 0u64;
    fn target<'a>(
        m: OutgoingMessage<'a>,
        pm_users: &'a [&'a str],
        exclude: &'a [&'a str],
    ) -> OutgoingMessage<'a> {
        let mut m = m;
        m.fields.pm_users = pm_users;
        m.fields.exclude_users = exclude;
        m
    }
    if let Some(payload) = message {
        check(payload, "MESSAGE")?;
        let m = target(outgoing(a, payload, content_type), &pm_users, &exclude);
        for _ in 0..a.count {
            c.send_publish(channel, &m, ack)?;
            sent += 1;
        }
        print_acks(&mut c, &mut out, a.conn.json)?;
    } else {
        let mut stdin = io::BufReader::with_capacity(64 * 1024, io::stdin().lock());
        let mut line = String::new();
        let mut since_acks = 0usize;
        loop {
            line.clear();
            if stdin
                .read_line(&mut line)
                .map_err(|e| usage(format!("reading stdin: {e}")))?
                == 0
            {
                break;
            }
            let payload = line.strip_suffix('\n').unwrap_or(&line);
            let payload = payload.strip_suffix('\r').unwrap_or(payload);
            check(payload, &format!("line {}", sent + 1))?;
            let m = target(outgoing(a, payload, content_type), &pm_users, &exclude);
            c.send_publish(channel, &m, ack)?;
            sent += 1;
            since_acks += 1;
            // Print ids once the input pauses (or every chunk), so a slow
            // producer on stdin sees its ids promptly and a file is pipelined.
            if since_acks >= PUB_STDIN_CHUNK || stdin.buffer().is_empty() {
                print_acks(&mut c, &mut out, a.conn.json)?;
                since_acks = 0;
            }
        }
        print_acks(&mut c, &mut out, a.conn.json)?;
    }
    if ack == AckMode::None {
        // A round trip after the last publish: errors of unacknowledged
        // publishes arrive before the pong and are reported here.
        c.ping()?;
        if c.acks_pending() > 0 {
            c.recv_ack()?;
        }
        eprintln!("sent {sent} message(s) without acknowledgement");
    }
    Ok(())
}

pub(crate) fn outgoing<'a>(
    a: &'a PubArgs,
    payload: &'a str,
    content_type: ContentType,
) -> OutgoingMessage<'a> {
    let mut m = OutgoingMessage::new(payload.as_bytes()).content_type(content_type);
    m.fields.room = a.room.as_deref();
    m.fields.idempotency_key = a.idempotency_key.as_deref().map(str::as_bytes);
    m.fields.uuid = a.uuid;
    m.fields.live = a.no_history;
    m
}

pub(crate) fn print_acks(c: &mut Client, out: &mut impl Write, json: bool) -> Result<(), Failure> {
    while c.acks_pending() > 0 {
        let ack = c.recv_ack()?;
        for (i, id) in ack.ids().into_iter().enumerate() {
            if json {
                let uuid = ack.uuids.get(i).map(format_uuid);
                writeln!(out, "{}", json!({ "id": id, "uuid": uuid }))?;
            } else {
                writeln!(out, "{id}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn fetch(a: &FetchArgs) -> Result<(), Failure> {
    let mut c = connect(&a.conn)?;
    let m = if a.raw {
        c.fetch_raw(&a.channel, a.id)?
    } else {
        c.fetch(&a.channel, a.id)?
    };
    print_message(&mut io::stdout().lock(), &m, a.conn.json)
}

pub(crate) fn history(a: &HistoryArgs) -> Result<(), Failure> {
    let mut query = HistoryQuery {
        room: a.room.clone(),
        newest_first: !a.oldest_first,
        after_id: a.after.unwrap_or(0),
        before_id: a.before.unwrap_or(0),
        limit: 0,
        raw: a.raw,
    };
    let page_max = u64::from(limits::HISTORY_PAGE_MAX);
    let mut left = a.limit;
    let mut c = connect(&a.conn)?;
    let mut out = io::stdout().lock();
    loop {
        // `min` with the page maximum makes the narrowing exact.
        query.limit = left.map_or(0, |n| n.min(page_max) as u32);
        let page = c.history(&a.channel, &query)?;
        for m in &page {
            print_message(&mut out, m, a.conn.json)?;
        }
        let Some(n) = left else { break };
        left = Some(n.saturating_sub(page.len() as u64));
        // Only an empty page ends the history: a page may hold fewer than
        // asked when its messages would not fit one frame.
        let Some(last) = page.last() else { break };
        if left == Some(0) {
            break;
        }
        if query.newest_first {
            query.before_id = last.id;
        } else {
            query.after_id = last.id;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    #[test]
    fn pub_parses_its_options() {
        let cli = Cli::try_parse_from([
            "tidewire", "pub", "--key", "k", "news", "hi", "--room", "r", "--ack", "durable",
            "--count", "3",
        ])
        .unwrap();
        let Command::Pub(a) = cli.command else {
            panic!("not pub")
        };
        assert_eq!(a.channel.as_deref(), Some("news"));
        assert_eq!(a.message.as_deref(), Some("hi"));
        assert_eq!(a.count, 3);
        assert!(matches!(a.ack, AckArg::Durable));
    }

    #[test]
    fn pub_to_users_names_no_channel() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Pub(a) = cli.command else {
                panic!("not pub")
            };
            a
        };
        let a = parse(&["tidewire", "pub", "--key", "k", "--to", "ann,bob", "hello"]);
        assert_eq!(a.to, ["ann", "bob"]);
        let (channel, message) = pub_target(&a).unwrap();
        assert_eq!((channel, message), ("", Some("hello")));
        let a = parse(&["tidewire", "pub", "--key", "k", "--to", "ann"]);
        assert_eq!(pub_target(&a).unwrap(), ("", None), "stdin lines");
        let a = parse(&[
            "tidewire", "pub", "--key", "k", "news", "hello", "--to", "ann",
        ]);
        assert!(pub_target(&a).is_err());
        let a = parse(&["tidewire", "pub", "--key", "k", "news", "--pm-user", "ann"]);
        assert_eq!(pub_target(&a).unwrap(), ("news", None));
    }
}
