//! `tidewire instance|key|user|group …`: each subcommand becomes one `Admin`
//! command (a JSON object with an `op`), and its JSON result is printed.
//!
//! Owns: the arguments of these subcommands and their mapping to commands.
//! Never decides anything itself: the server checks and answers.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::{connect, usage, ConnArgs, Failure};

/// Runs one administrative command and prints its result.
pub(crate) fn run(request: Result<(ConnArgs, Value), Failure>) -> Result<(), Failure> {
    let (conn, command) = request?;
    let mut c = connect(&conn)?;
    let result = c.admin(&command)?;
    let mut out = io::stdout().lock();
    if conn.json {
        match &result {
            Value::Array(items) => {
                for item in items {
                    writeln!(out, "{item}")?;
                }
            }
            other => writeln!(out, "{other}")?,
        }
        return Ok(());
    }
    let op = command["op"].as_str().unwrap_or_default();
    if let Some(said) = sentence(op, &command, &result) {
        writeln!(out, "{said}")?;
    } else if op == "key.list" {
        write_key_table(&mut out, &result)?;
    } else {
        let pretty = serde_json::to_string_pretty(&result).unwrap_or_else(|_| result.to_string());
        writeln!(out, "{pretty}")?;
        if result.get("key").is_some() || result.get("user_key").is_some() {
            eprintln!("note: the key above is shown only once; store it now");
        }
    }
    Ok(())
}

/// What a command that returns no record did, in words.
fn sentence(op: &str, command: &Value, result: &Value) -> Option<String> {
    let named = |field: &str| {
        command
            .get(field)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    Some(match op {
        "key.revoke" => format!(
            "revoked {} key {}",
            result["kind"].as_str().unwrap_or("the"),
            result["id"]
        ),
        "instance.delete" => format!("deleted instance {}", named("name")),
        "user.delete" if command.get("username").is_some() => {
            format!("deleted user {}", named("username"))
        }
        "user.delete" => format!("deleted user {}", named("id")),
        "group.delete" => format!("deleted group {}", named("id")),
        _ => return None,
    })
}

/// `key list` for people: one key per line, the kind spelled out (ids of
/// different kinds may be equal).
fn write_key_table(out: &mut impl Write, keys: &Value) -> Result<(), Failure> {
    writeln!(out, "ID\tKIND\tINSTANCE\tCREATED\tDESCRIPTION")?;
    for k in keys.as_array().map(Vec::as_slice).unwrap_or_default() {
        let field = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
        let mut kind = field("kind");
        if kind == "api" {
            let flags: Vec<&str> = [
                ("ignore_acl", "ignore_acl"),
                ("allow_anonymous_read", "anonymous_read"),
            ]
            .into_iter()
            .filter(|(f, _)| k[*f] == json!(true))
            .map(|(_, name)| name)
            .collect();
            if !flags.is_empty() {
                kind = format!("{kind} ({})", flags.join(", "));
            }
        }
        writeln!(
            out,
            "{}\t{kind}\t{}\t{}\t{}",
            k["id"],
            field("instance"),
            field("created_at"),
            field("description")
        )?;
    }
    Ok(())
}

/// A command object: `op` plus the fields that are set.
fn command(op: &str, fields: &[(&str, Option<Value>)]) -> Value {
    let mut m = Map::new();
    m.insert("op".into(), json!(op));
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert((*k).into(), v.clone());
        }
    }
    Value::Object(m)
}

fn opt<T: Into<Value> + Clone>(v: &Option<T>) -> Option<Value> {
    v.clone().map(Into::into)
}

/// A subcommand with only the connection arguments.
#[derive(Debug, Args)]
pub(crate) struct Plain {
    #[command(flatten)]
    conn: ConnArgs,
}

/// `tidewire instance …`
#[derive(Debug, Subcommand)]
pub(crate) enum InstanceCommand {
    /// Create an instance (with its built-in `default` and `eventlog` channels).
    Create(InstanceCreate),
    /// List instances (all of them with a server-wide admin key).
    List(Plain),
    /// Print one instance (default: the one the connection works in).
    Get(InstanceName),
    /// Delete an instance with its channels, keys, users and groups.
    Delete(InstanceNameRequired),
}

/// Arguments of `instance create`.
#[derive(Debug, Args)]
pub(crate) struct InstanceCreate {
    #[command(flatten)]
    conn: ConnArgs,
    /// Instance name: 1 to 64 characters of a-z, 0-9, '_' and '-'.
    name: String,
    /// Free-form description.
    #[arg(long)]
    description: Option<String>,
}

/// An optional instance name.
#[derive(Debug, Args)]
pub(crate) struct InstanceName {
    #[command(flatten)]
    conn: ConnArgs,
    /// Instance name.
    name: Option<String>,
}

/// A required instance name.
#[derive(Debug, Args)]
pub(crate) struct InstanceNameRequired {
    #[command(flatten)]
    conn: ConnArgs,
    /// Instance name.
    name: String,
}

impl InstanceCommand {
    /// The connection and the command to send.
    pub(crate) fn request(self) -> Result<(ConnArgs, Value), Failure> {
        Ok(match self {
            InstanceCommand::Create(a) => {
                let c = command(
                    "instance.create",
                    &[
                        ("name", Some(json!(a.name))),
                        ("description", opt(&a.description)),
                    ],
                );
                (a.conn, c)
            }
            InstanceCommand::List(a) => (a.conn, command("instance.list", &[])),
            InstanceCommand::Get(a) => {
                let c = command("instance.get", &[("name", opt(&a.name))]);
                (a.conn, c)
            }
            InstanceCommand::Delete(a) => {
                let c = command("instance.delete", &[("name", Some(json!(a.name)))]);
                (a.conn, c)
            }
        })
    }
}

/// `tidewire key …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a key; the key is printed once and never again.
    Create(KeyCreate),
    /// List keys (never their secrets).
    List(KeyList),
    /// Change an API key's description or options.
    Update(KeyUpdate),
    /// Revoke a key: it stops working at once, on open connections too.
    Revoke(KeyRevoke),
}

/// Arguments of `key create`.
#[derive(Debug, Args)]
pub(crate) struct KeyCreate {
    #[command(flatten)]
    conn: ConnArgs,
    /// api (default), admin (of the instance) or server_admin.
    #[arg(long)]
    kind: Option<String>,
    /// Free-form description.
    #[arg(long)]
    description: Option<String>,
    /// API key: bypass channel permissions (not custom_publish, not rooms).
    #[arg(long)]
    ignore_acl: bool,
    /// API key: read every channel without a user key.
    #[arg(long)]
    allow_anonymous_read: bool,
}

/// Arguments of `key list`.
#[derive(Debug, Args)]
pub(crate) struct KeyList {
    #[command(flatten)]
    conn: ConnArgs,
    /// Only this kind: api, admin or server_admin.
    #[arg(long)]
    kind: Option<String>,
}

/// Arguments of `key update`.
#[derive(Debug, Args)]
pub(crate) struct KeyUpdate {
    #[command(flatten)]
    conn: ConnArgs,
    /// The API key's id.
    id: u64,
    /// Free-form description.
    #[arg(long)]
    description: Option<String>,
    /// Bypass channel permissions.
    #[arg(long, value_name = "BOOL")]
    ignore_acl: Option<bool>,
    /// Read every channel without a user key.
    #[arg(long, value_name = "BOOL")]
    allow_anonymous_read: Option<bool>,
}

/// Arguments of `key revoke`.
#[derive(Debug, Args)]
pub(crate) struct KeyRevoke {
    #[command(flatten)]
    conn: ConnArgs,
    /// The key's id.
    id: u64,
    /// api, admin or server_admin; needed only when keys of different
    /// kinds share the id.
    #[arg(long)]
    kind: Option<String>,
}

impl KeyCommand {
    /// The connection and the command to send.
    pub(crate) fn request(self) -> Result<(ConnArgs, Value), Failure> {
        Ok(match self {
            KeyCommand::Create(a) => {
                let flag = |b: bool| b.then_some(json!(true));
                let c = command(
                    "key.create",
                    &[
                        ("kind", opt(&a.kind)),
                        ("description", opt(&a.description)),
                        ("ignore_acl", flag(a.ignore_acl)),
                        ("allow_anonymous_read", flag(a.allow_anonymous_read)),
                    ],
                );
                (a.conn, c)
            }
            KeyCommand::List(a) => (a.conn, command("key.list", &[("kind", opt(&a.kind))])),
            KeyCommand::Update(a) => {
                if a.description.is_none()
                    && a.ignore_acl.is_none()
                    && a.allow_anonymous_read.is_none()
                {
                    return Err(usage("nothing to update: give at least one option"));
                }
                let c = command(
                    "key.update",
                    &[
                        ("id", Some(json!(a.id))),
                        ("description", opt(&a.description)),
                        ("ignore_acl", opt(&a.ignore_acl)),
                        ("allow_anonymous_read", opt(&a.allow_anonymous_read)),
                    ],
                );
                (a.conn, c)
            }
            KeyCommand::Revoke(a) => {
                let c = command(
                    "key.revoke",
                    &[("id", Some(json!(a.id))), ("kind", opt(&a.kind))],
                );
                (a.conn, c)
            }
        })
    }
}

/// `tidewire user …`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user; its user key is printed once and never again.
    Create(UserCreate),
    /// List users.
    List(Plain),
    /// Print one user.
    Get(UserRef),
    /// Rename a user or give it a new user key.
    Update(UserUpdate),
    /// Delete a user (its user key stops working at once).
    Delete(UserRef),
}

/// Arguments of `user create`.
#[derive(Debug, Args)]
pub(crate) struct UserCreate {
    #[command(flatten)]
    conn: ConnArgs,
    /// User name: letters, digits and . _ @ + -
    username: String,
    /// Add the user to this group (repeatable).
    #[arg(long = "group", value_name = "ID")]
    groups: Vec<u64>,
}

/// A user by id or by name.
#[derive(Debug, Args)]
pub(crate) struct UserRef {
    #[command(flatten)]
    conn: ConnArgs,
    /// The user's id, or its name with --username.
    user: String,
    /// Take USER as a user name rather than an id.
    #[arg(long)]
    username: bool,
}

impl UserRef {
    fn field(&self) -> Result<(&'static str, Value), Failure> {
        if self.username {
            return Ok(("username", json!(self.user)));
        }
        let id: u64 = self
            .user
            .parse()
            .map_err(|_| usage("USER is an id; pass --username to name the user by name"))?;
        Ok(("id", json!(id)))
    }
}

/// Arguments of `user update`.
#[derive(Debug, Args)]
pub(crate) struct UserUpdate {
    #[command(flatten)]
    conn: ConnArgs,
    /// The user's id.
    id: u64,
    /// New user name.
    #[arg(long)]
    username: Option<String>,
    /// Replace the user key (the old one stops working; the new one is printed once).
    #[arg(long)]
    reset_key: bool,
}

impl UserCommand {
    /// The connection and the command to send.
    pub(crate) fn request(self) -> Result<(ConnArgs, Value), Failure> {
        Ok(match self {
            UserCommand::Create(a) => {
                let groups = (!a.groups.is_empty()).then(|| json!(a.groups));
                let c = command(
                    "user.create",
                    &[("username", Some(json!(a.username))), ("groups", groups)],
                );
                (a.conn, c)
            }
            UserCommand::List(a) => (a.conn, command("user.list", &[])),
            UserCommand::Get(a) => {
                let (k, v) = a.field()?;
                (a.conn, command("user.get", &[(k, Some(v))]))
            }
            UserCommand::Update(a) => {
                if a.username.is_none() && !a.reset_key {
                    return Err(usage("nothing to update: give --username or --reset-key"));
                }
                let c = command(
                    "user.update",
                    &[
                        ("id", Some(json!(a.id))),
                        ("username", opt(&a.username)),
                        ("reset_key", a.reset_key.then_some(json!(true))),
                    ],
                );
                (a.conn, c)
            }
            UserCommand::Delete(a) => {
                let (k, v) = a.field()?;
                (a.conn, command("user.delete", &[(k, Some(v))]))
            }
        })
    }
}

/// `tidewire group …`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group.
    Create(GroupCreate),
    /// List groups.
    List(Plain),
    /// Print one group.
    Get(GroupId),
    /// Rename a group or change its description.
    Update(GroupUpdate),
    /// Delete a group (its channels lose their group permissions).
    Delete(GroupId),
    /// Add a user to a group.
    AddMember(GroupMember),
    /// Remove a user from a group.
    RemoveMember(GroupMember),
}

/// Arguments of `group create`.
#[derive(Debug, Args)]
pub(crate) struct GroupCreate {
    #[command(flatten)]
    conn: ConnArgs,
    /// Group name.
    name: String,
    /// Free-form description.
    #[arg(long)]
    description: Option<String>,
}

/// A group by id.
#[derive(Debug, Args)]
pub(crate) struct GroupId {
    #[command(flatten)]
    conn: ConnArgs,
    /// The group's id.
    id: u64,
}

/// Arguments of `group update`.
#[derive(Debug, Args)]
pub(crate) struct GroupUpdate {
    #[command(flatten)]
    conn: ConnArgs,
    /// The group's id.
    id: u64,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
}

/// A group and a user.
#[derive(Debug, Args)]
pub(crate) struct GroupMember {
    #[command(flatten)]
    conn: ConnArgs,
    /// The group's id.
    group: u64,
    /// The user's id.
    user: u64,
}

impl GroupCommand {
    /// The connection and the command to send.
    pub(crate) fn request(self) -> Result<(ConnArgs, Value), Failure> {
        Ok(match self {
            GroupCommand::Create(a) => {
                let c = command(
                    "group.create",
                    &[
                        ("name", Some(json!(a.name))),
                        ("description", opt(&a.description)),
                    ],
                );
                (a.conn, c)
            }
            GroupCommand::List(a) => (a.conn, command("group.list", &[])),
            GroupCommand::Get(a) => (a.conn, command("group.get", &[("id", Some(json!(a.id)))])),
            GroupCommand::Update(a) => {
                if a.name.is_none() && a.description.is_none() {
                    return Err(usage("nothing to update: give --name or --description"));
                }
                let c = command(
                    "group.update",
                    &[
                        ("id", Some(json!(a.id))),
                        ("name", opt(&a.name)),
                        ("description", opt(&a.description)),
                    ],
                );
                (a.conn, c)
            }
            GroupCommand::Delete(a) => (
                a.conn,
                command("group.delete", &[("id", Some(json!(a.id)))]),
            ),
            GroupCommand::AddMember(a) => a.command("group.add_member"),
            GroupCommand::RemoveMember(a) => a.command("group.remove_member"),
        })
    }
}

impl GroupMember {
    fn command(self, op: &str) -> (ConnArgs, Value) {
        let c = command(
            op,
            &[
                ("group", Some(json!(self.group))),
                ("user", Some(json!(self.user))),
            ],
        );
        (self.conn, c)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn request(args: &[&str]) -> Value {
        let cli = Cli::try_parse_from(args).unwrap();
        let r = match cli.command {
            Command::Instance(c) => c.request(),
            Command::Key(c) => c.request(),
            Command::User(c) => c.request(),
            Command::Group(c) => c.request(),
            _ => panic!("not an admin command"),
        };
        r.map(|(_, v)| v).unwrap_or_else(|_| panic!("usage error"))
    }

    #[test]
    fn subcommands_become_admin_commands() {
        assert_eq!(
            request(&["tidewire", "instance", "create", "--key", "k", "acme"]),
            json!({"op": "instance.create", "name": "acme"})
        );
        assert_eq!(
            request(&[
                "tidewire",
                "key",
                "create",
                "--key",
                "k",
                "--ignore-acl",
                "--description",
                "ci"
            ]),
            json!({"op": "key.create", "description": "ci", "ignore_acl": true})
        );
        assert_eq!(
            request(&["tidewire", "user", "create", "--key", "k", "ada", "--group", "3"]),
            json!({"op": "user.create", "username": "ada", "groups": [3]})
        );
        assert_eq!(
            request(&[
                "tidewire",
                "user",
                "delete",
                "--key",
                "k",
                "ada",
                "--username"
            ]),
            json!({"op": "user.delete", "username": "ada"})
        );
        assert_eq!(
            request(&["tidewire", "group", "add-member", "--key", "k", "2", "5"]),
            json!({"op": "group.add_member", "group": 2, "user": 5})
        );
    }
}
