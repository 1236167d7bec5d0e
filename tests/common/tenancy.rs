//! Helpers for the tenancy tests: connecting as a key of an instance,
//! running admin commands, reading error codes.

use std::time::Duration;

use serde_json::Value;
use tidewire::client::{Client, ClientError, ConnectOptions};
use tidewire::wire::ErrorCode;

use super::ADMIN_KEY;

pub const WAIT: Option<Duration> = Some(Duration::from_secs(10));

pub fn connect_as(
    addr: &str,
    key: &str,
    user_key: &str,
    instance: &str,
) -> Result<Client, ClientError> {
    let mut o = ConnectOptions::new(addr, key);
    o.user_key = user_key.to_string();
    o.instance = instance.to_string();
    Client::connect_with(&o)
}

pub fn admin_of(addr: &str, instance: &str) -> Client {
    connect_as(addr, ADMIN_KEY, "", instance).expect("server admin connects")
}

pub fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> Result<(), ErrorCode> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .code()
            .unwrap_or_else(|| panic!("not a server error: {e:?}"))),
    }
}

pub fn cmd(c: &mut Client, v: Value) -> Value {
    c.admin(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
}

pub fn secret(v: &Value, field: &str) -> String {
    v[field].as_str().expect("secret in the result").to_string()
}
