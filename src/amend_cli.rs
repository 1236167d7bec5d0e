//! `tidewire edit` and `tidewire delete`: changing a message after the fact.

use std::io::{self, Write};

use clap::Args;
use serde_json::json;

use crate::message_cli::AckArg;
use crate::{connect, ConnArgs, Failure};
use tidewire::client::{format_uuid, parse_uuid, PublishAckInfo};
use tidewire::storage::record::ContentType;
use tidewire::wire::{AckMode, AmendTarget};

#[derive(Debug, Args)]
pub(crate) struct EditArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// The message: its id, or its uuid (8-4-4-4-12 hex).
    message_ref: String,
    /// The new payload.
    message: String,
    /// The payload is JSON (checked before sending; content type json).
    #[arg(long)]
    json_payload: bool,
    /// Acknowledgement mode (append or durable).
    #[arg(long, value_enum, default_value_t = AckArg::Append)]
    ack: AckArg,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    channel: String,
    /// The message: its id, or its uuid (8-4-4-4-12 hex).
    message_ref: String,
    /// Acknowledgement mode (append or durable).
    #[arg(long, value_enum, default_value_t = AckArg::Append)]
    ack: AckArg,
}

/// An id (digits) or a uuid.
fn target(s: &str) -> Result<AmendTarget, Failure> {
    if let Ok(id) = s.parse::<u64>() {
        return match id {
            0 => Err(Failure::Usage("message id 0 names no message".into())),
            id => Ok(AmendTarget::Id(id)),
        };
    }
    parse_uuid(s)
        .map(AmendTarget::Uuid)
        .ok_or_else(|| Failure::Usage(format!("{s:?} is neither a message id nor a uuid")))
}

fn ack_mode(a: AckArg) -> Result<AckMode, Failure> {
    match AckMode::from(a) {
        AckMode::None => Err(Failure::Usage(
            "an edit or delete is acknowledged: use --ack append or durable".into(),
        )),
        m => Ok(m),
    }
}

/// Prints the id of the record that made the change, with the message's
/// uuid under `--json`.
fn print_change(ack: &PublishAckInfo, json: bool) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    if json {
        let uuid = ack.uuids.first().map(format_uuid);
        writeln!(out, "{}", json!({ "id": ack.first_id, "uuid": uuid }))?;
    } else {
        writeln!(out, "{}", ack.first_id)?;
    }
    Ok(())
}

pub(crate) fn edit(a: &EditArgs) -> Result<(), Failure> {
    let target = target(&a.message_ref)?;
    let content_type = if a.json_payload {
        serde_json::from_str::<serde::de::IgnoredAny>(&a.message)
            .map_err(|e| Failure::Usage(format!("MESSAGE is not JSON: {e}")))?;
        ContentType::Json
    } else {
        ContentType::Text
    };
    let ack = ack_mode(a.ack)?;
    let mut c = connect(&a.conn)?;
    let done = c.edit(&a.channel, target, content_type, a.message.as_bytes(), ack)?;
    print_change(&done, a.conn.json)
}

pub(crate) fn delete(a: &DeleteArgs) -> Result<(), Failure> {
    let target = target(&a.message_ref)?;
    let ack = ack_mode(a.ack)?;
    let mut c = connect(&a.conn)?;
    let done = c.delete(&a.channel, target, ack)?;
    print_change(&done, a.conn.json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ids_or_uuids() {
        assert!(matches!(target("17"), Ok(AmendTarget::Id(17))));
        assert!(target("0").is_err());
        let u = "12345678-9abc-4def-8001-020304050607";
        assert!(matches!(target(u), Ok(AmendTarget::Uuid(b)) if format_uuid(&b) == u));
        assert!(target("x17").is_err());
    }
}
