//! `tidewire channel create|get|list|update|delete`.

use std::io::{self, Write};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use crate::{connect, usage, ConnArgs, Failure};

#[derive(Debug, Subcommand)]
pub(crate) enum ChannelCommand {
    /// Create a channel.
    Create(ChannelEditArgs),
    /// Print a channel's settings.
    Get(ChannelNameArgs),
    /// List channels.
    List(ConnArgs),
    /// Change a channel's settings (only the options given).
    Update(ChannelEditArgs),
    /// Delete a channel and its messages.
    Delete(ChannelNameArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ChannelNameArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ChannelType {
    /// One stream for the whole channel.
    Default,
    /// Every message, poll and history read names a room.
    #[value(name = "separate_rooms")]
    SeparateRooms,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Permission {
    /// No access.
    None,
    /// May read.
    Subscribe,
    /// May read and publish.
    Publish,
}

#[derive(Debug, Args)]
pub(crate) struct ChannelEditArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Channel name.
    name: String,
    /// Channel type.
    #[arg(long = "type", value_enum)]
    kind: Option<ChannelType>,
    /// Free-form description.
    #[arg(long)]
    description: Option<String>,
    /// Whether API keys may publish custom messages.
    #[arg(long, value_name = "BOOL")]
    custom_publish: Option<bool>,
    /// What keys outside the group may do.
    #[arg(long, value_enum)]
    other_permissions: Option<Permission>,
    /// What members of the channel's group may do.
    #[arg(long, value_enum)]
    group_permissions: Option<Permission>,
    /// The group the group permissions apply to.
    #[arg(long, value_name = "ID")]
    group: Option<u64>,
    /// How long messages stay readable, in seconds.
    #[arg(long, value_name = "SECS")]
    retention: Option<u64>,
}

impl ChannelEditArgs {
    /// The JSON object of the options given (with `name` when creating).
    fn fields(&self, with_name: bool) -> Value {
        let mut m = Map::new();
        if with_name {
            m.insert("name".into(), json!(self.name));
        }
        if let Some(kind) = self.kind {
            let kind = match kind {
                ChannelType::Default => "default",
                ChannelType::SeparateRooms => "separate_rooms",
            };
            m.insert("type".into(), json!(kind));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        if let Some(c) = self.custom_publish {
            m.insert("custom_publish".into(), json!(c));
        }
        let perm = |p: Permission| match p {
            Permission::None => "none",
            Permission::Subscribe => "subscribe",
            Permission::Publish => "publish",
        };
        if let Some(p) = self.other_permissions {
            m.insert("other_permissions".into(), json!(perm(p)));
        }
        if let Some(p) = self.group_permissions {
            m.insert("group_permissions".into(), json!(perm(p)));
        }
        if let Some(g) = self.group {
            m.insert("group".into(), json!(g));
        }
        if let Some(r) = self.retention {
            m.insert("retention_secs".into(), json!(r));
        }
        Value::Object(m)
    }
}

pub(crate) fn print_channel(
    out: &mut impl Write,
    channel: &Value,
    json: bool,
) -> Result<(), Failure> {
    if json {
        writeln!(out, "{channel}")?;
    } else {
        let pretty = serde_json::to_string_pretty(channel).unwrap_or_else(|_| channel.to_string());
        writeln!(out, "{pretty}")?;
    }
    Ok(())
}

pub(crate) fn channel(cmd: ChannelCommand) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match cmd {
        ChannelCommand::Create(a) => {
            let mut c = connect(&a.conn)?;
            let ch = c.channel_create(&a.fields(true))?;
            print_channel(&mut out, &ch, a.conn.json)
        }
        ChannelCommand::Get(a) => {
            let mut c = connect(&a.conn)?;
            let ch = c.channel_get(&a.name)?;
            print_channel(&mut out, &ch, a.conn.json)
        }
        ChannelCommand::List(conn) => {
            let mut c = connect(&conn)?;
            for ch in c.channel_list()? {
                if conn.json {
                    writeln!(out, "{ch}")?;
                } else {
                    let field =
                        |k: &str| ch.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    writeln!(
                        out,
                        "{}\t{}\t{}",
                        field("name"),
                        field("type"),
                        field("description")
                    )?;
                }
            }
            Ok(())
        }
        ChannelCommand::Update(a) => {
            let fields = a.fields(false);
            if fields.as_object().is_some_and(Map::is_empty) {
                return Err(usage("nothing to update: give at least one option"));
            }
            let mut c = connect(&a.conn)?;
            let ch = c.channel_update(&a.name, &fields)?;
            print_channel(&mut out, &ch, a.conn.json)
        }
        ChannelCommand::Delete(a) => {
            let mut c = connect(&a.conn)?;
            c.channel_delete(&a.name)?;
            if a.conn.json {
                writeln!(out, "{}", json!({ "deleted": a.name }))?;
            } else {
                writeln!(out, "deleted {}", a.name)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    #[test]
    fn channel_options_become_json_fields() {
        let cli = Cli::try_parse_from([
            "tidewire",
            "channel",
            "create",
            "--key",
            "k",
            "chat",
            "--type",
            "separate_rooms",
            "--custom-publish",
            "true",
            "--other-permissions",
            "subscribe",
        ])
        .unwrap();
        let Command::Channel(ChannelCommand::Create(a)) = cli.command else {
            panic!("not channel create")
        };
        assert_eq!(
            a.fields(true),
            json!({"name": "chat", "type": "separate_rooms", "custom_publish": true, "other_permissions": "subscribe"})
        );
    }
}
