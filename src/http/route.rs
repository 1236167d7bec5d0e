//! Routing of the Syncano v1.1 Channels paths (`legacy-apis.md` §1).
//!
//! Paths are matched on percent-decoded segments with one optional trailing
//! slash. The router is a tree of small functions, one per path prefix
//! (`/v1.1/instances/{i}/` → `channels/…`), so that `classes/{class}/objects/…`
//! joins `instance_route` and Channelstream's `/message` joins [`route()`] as
//! one more match arm each.
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::http::request::{path_segments, Method};

/// What a request addresses. Instance and channel names are percent-decoded
/// and otherwise unchecked: validating them is the broker's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET channels/`: list the instance's channels.
    ChannelList {
        /// The instance name.
        instance: String,
    },
    /// `POST channels/`: create a channel.
    ChannelCreate {
        /// The instance name.
        instance: String,
    },
    /// `GET channels/{name}/`.
    ChannelGet {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
    },
    /// `PUT` (full) or `PATCH` (partial) `channels/{name}/`.
    ChannelUpdate {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
        /// True for `PATCH`: fields not in the body stay as they are.
        partial: bool,
    },
    /// `DELETE channels/{name}/`.
    ChannelDelete {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
    },
    /// `GET channels/{name}/poll/`: long poll.
    Poll {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
    },
    /// `POST channels/{name}/publish/`.
    Publish {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
    },
    /// `GET channels/{name}/history/`: a page of messages.
    History {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
    },
    /// `GET channels/{name}/history/{id}/`: one message.
    HistoryItem {
        /// The instance name.
        instance: String,
        /// The channel name.
        channel: String,
        /// The message id.
        id: u64,
    },
    /// `OPTIONS` on any path: answer with [`crate::http::write_preflight`].
    Preflight,
    /// A known path with a method it does not take: answer
    /// [`crate::http::ApiError::MethodNotAllowed`] with `Allow: {allow}`.
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// No such path: answer [`crate::http::ApiError::NotFound`].
    NotFound,
}

/// `Allow` of `channels/`.
pub const ALLOW_CHANNEL_LIST: &str = "GET, POST, HEAD, OPTIONS";
/// `Allow` of `channels/{name}/`.
pub const ALLOW_CHANNEL: &str = "GET, PUT, PATCH, DELETE, HEAD, OPTIONS";
/// `Allow` of the read-only paths (`poll/`, `history/`, `history/{id}/`).
pub const ALLOW_READ: &str = "GET, HEAD, OPTIONS";
/// `Allow` of `publish/`.
pub const ALLOW_PUBLISH: &str = "POST, OPTIONS";

/// Routes a request. `HEAD` routes like `GET` (Django answers `HEAD` with
/// the `GET` view; the response writer drops the body), and `OPTIONS` is a
/// CORS preflight on every path.
pub fn route(method: &Method, path: &str) -> Route {
    if *method == Method::Options {
        return Route::Preflight;
    }
    let method = if *method == Method::Head {
        &Method::Get
    } else {
        method
    };
    let Some(segments) = path_segments(path) else {
        return Route::NotFound;
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["v1.1", "instances", instance, rest @ ..] => instance_route(method, instance, rest),
        _ => Route::NotFound,
    }
}

/// Routes the part of a path after `/v1.1/instances/{instance}/`.
fn instance_route(method: &Method, instance: &str, rest: &[&str]) -> Route {
    match rest {
        ["channels", rest @ ..] => channels_route(method, instance, rest),
        _ => Route::NotFound,
    }
}

/// Routes the part of a path after `channels/`.
fn channels_route(method: &Method, instance: &str, rest: &[&str]) -> Route {
    let instance = instance.to_owned();
    let named = |channel: &str| (instance.clone(), channel.to_owned());
    match (rest, method) {
        ([], Method::Get) => Route::ChannelList { instance },
        ([], Method::Post) => Route::ChannelCreate { instance },
        ([], _) => not_allowed(ALLOW_CHANNEL_LIST),
        ([name], Method::Get) => {
            let (instance, channel) = named(name);
            Route::ChannelGet { instance, channel }
        }
        ([name], Method::Put | Method::Patch) => {
            let (instance, channel) = named(name);
            let partial = *method == Method::Patch;
            Route::ChannelUpdate {
                instance,
                channel,
                partial,
            }
        }
        ([name], Method::Delete) => {
            let (instance, channel) = named(name);
            Route::ChannelDelete { instance, channel }
        }
        ([_], _) => not_allowed(ALLOW_CHANNEL),
        ([name, action @ ..], _) => channel_action_route(method, named(name), action),
    }
}

/// Routes `channels/{name}/<action…>`.
fn channel_action_route(method: &Method, named: (String, String), action: &[&str]) -> Route {
    let (instance, channel) = named;
    let is_get = *method == Method::Get;
    match action {
        ["poll"] if is_get => Route::Poll { instance, channel },
        ["history"] if is_get => Route::History { instance, channel },
        ["publish"] if *method == Method::Post => Route::Publish { instance, channel },
        ["history", id] => match parse_id(id) {
            Some(id) if is_get => Route::HistoryItem {
                instance,
                channel,
                id,
            },
            Some(_) => not_allowed(ALLOW_READ),
            None => Route::NotFound,
        },
        ["poll"] | ["history"] => not_allowed(ALLOW_READ),
        ["publish"] => not_allowed(ALLOW_PUBLISH),
        _ => Route::NotFound,
    }
}

fn not_allowed(allow: &'static str) -> Route {
    Route::MethodNotAllowed { allow }
}

/// A message id in a path: decimal digits only (Django's `\d+`), within u64.
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Characters escaped in a path segment of a link we build: controls,
/// space, the delimiters of a URL (`/ ? #`), `%`, and those RFC 3986 does
/// not allow unescaped in a path.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The channel a link points into; builds the URL paths the JSON of
/// messages, history pages and channels carries (the inverse of [`route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelPath<'a> {
    /// The instance name (unencoded).
    pub instance: &'a str,
    /// The channel name (unencoded).
    pub channel: &'a str,
}

impl ChannelPath<'_> {
    /// `/v1.1/instances/{i}/channels/{c}/`.
    pub fn channel_url(&self) -> String {
        format!(
            "/v1.1/instances/{}/channels/{}/",
            utf8_percent_encode(self.instance, SEGMENT),
            utf8_percent_encode(self.channel, SEGMENT)
        )
    }
    /// `/v1.1/instances/{i}/channels/{c}/{action}/` (`poll`, `publish`, `history`).
    pub fn action_url(&self, action: &str) -> String {
        let mut url = self.channel_url();
        url.push_str(action);
        url.push('/');
        url
    }
    /// `/v1.1/instances/{i}/channels/{c}/history/{id}/`.
    pub fn message_url(&self, id: u64) -> String {
        format!("{}history/{id}/", self.channel_url())
    }
}

/// `/v1.1/instances/{i}/groups/{id}/`: where a channel's `group` link points.
pub fn group_url(instance: &str, group: u64) -> String {
    format!(
        "/v1.1/instances/{}/groups/{group}/",
        utf8_percent_encode(instance, SEGMENT)
    )
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn ch(instance: &str, channel: &str) -> (String, String) {
        (instance.to_owned(), channel.to_owned())
    }

    #[test]
    fn every_endpoint_routes_with_and_without_its_trailing_slash() {
        let (i, c) = ch("inst", "chan");
        let table = vec![
            (
                Method::Get,
                "channels",
                Route::ChannelList {
                    instance: i.clone(),
                },
            ),
            (
                Method::Post,
                "channels",
                Route::ChannelCreate {
                    instance: i.clone(),
                },
            ),
            (
                Method::Get,
                "channels/chan",
                Route::ChannelGet {
                    instance: i.clone(),
                    channel: c.clone(),
                },
            ),
            (
                Method::Put,
                "channels/chan",
                Route::ChannelUpdate {
                    instance: i.clone(),
                    channel: c.clone(),
                    partial: false,
                },
            ),
            (
                Method::Patch,
                "channels/chan",
                Route::ChannelUpdate {
                    instance: i.clone(),
                    channel: c.clone(),
                    partial: true,
                },
            ),
            (
                Method::Delete,
                "channels/chan",
                Route::ChannelDelete {
                    instance: i.clone(),
                    channel: c.clone(),
                },
            ),
            (
                Method::Get,
                "channels/chan/poll",
                Route::Poll {
                    instance: i.clone(),
                    channel: c.clone(),
                },
            ),
            (
                Method::Post,
                "channels/chan/publish",
                Route::Publish {
                    instance: i.clone(),
                    channel: c.clone(),
                },
            ),
            (
                Method::Get,
                "channels/chan/history",
                Route::History {
                    instance: i.clone(),
                    channel: c.clone(),
                },
            ),
            (
                Method::Get,
                "channels/chan/history/42",
                Route::HistoryItem {
                    instance: i.clone(),
                    channel: c.clone(),
                    id: 42,
                },
            ),
            (
                Method::Head,
                "channels/chan/history",
                Route::History {
                    instance: i,
                    channel: c,
                },
            ),
        ];
        for (method, tail, want) in table {
            for slash in ["", "/"] {
                let path = format!("/v1.1/instances/inst/{tail}{slash}");
                assert_eq!(route(&method, &path), want, "{method:?} {path}");
            }
        }
    }

    #[test]
    fn wrong_methods_on_known_paths_are_405() {
        let table = [
            (Method::Delete, "channels/", ALLOW_CHANNEL_LIST),
            (Method::Post, "channels/c/", ALLOW_CHANNEL),
            (Method::Post, "channels/c/poll/", ALLOW_READ),
            (Method::Delete, "channels/c/history/", ALLOW_READ),
            (Method::Put, "channels/c/history/7/", ALLOW_READ),
            (Method::Get, "channels/c/publish/", ALLOW_PUBLISH),
            (Method::Other("BREW".into()), "channels/c/", ALLOW_CHANNEL),
        ];
        for (method, tail, allow) in table {
            let path = format!("/v1.1/instances/i/{tail}");
            assert_eq!(
                route(&method, &path),
                Route::MethodNotAllowed { allow },
                "{method:?} {path}"
            );
        }
    }

    #[test]
    fn unknown_or_malformed_paths_are_404() {
        for path in [
            "/",
            "/v1.1",
            "/v1.1/instances",
            "/v1.1/instances/i",
            "/v1.1/instances/i/classes/",
            "/v2/instances/i/channels/",
            "/v1.1/instances/i/channels/c/subscribe/",
            "/v1.1/instances/i/channels/c/history/x1/",
            "/v1.1/instances/i/channels/c/history/-1/",
            "/v1.1/instances/i/channels/c/history/99999999999999999999999/",
            "/v1.1/instances/i/channels/c/history/1/2/",
            "/v1.1/instances//channels/",
            "/v1.1/instances/i/channels//poll/",
            "/v1.1/instances/a%2Fb/channels/",
            "v1.1/instances/i/channels/",
        ] {
            assert_eq!(route(&Method::Get, path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn names_are_percent_decoded() {
        assert_eq!(
            route(
                &Method::Get,
                "/v1.1/instances/my%20inst/channels/ch%C3%A9/poll/"
            ),
            Route::Poll {
                instance: "my inst".into(),
                channel: "ch\u{e9}".into(),
            }
        );
        // Literal segments match after decoding too.
        assert_eq!(
            route(&Method::Get, "/v1%2E1/instances/i/%63hannels/"),
            Route::ChannelList {
                instance: "i".into()
            }
        );
    }

    #[test]
    fn options_is_a_preflight_anywhere() {
        assert_eq!(
            route(&Method::Options, "/v1.1/instances/i/channels/"),
            Route::Preflight
        );
        assert_eq!(route(&Method::Options, "*"), Route::Preflight);
    }

    #[test]
    fn links_encode_names_and_route_back_to_them() {
        let names = ["plain", "a b", "100%", "q?x#y", "caf\u{e9}", "[x]"];
        for instance in names {
            for channel in names {
                let p = ChannelPath { instance, channel };
                assert_eq!(
                    route(&Method::Get, &p.action_url("poll")),
                    Route::Poll {
                        instance: instance.into(),
                        channel: channel.into()
                    },
                    "{instance} {channel}"
                );
                assert_eq!(
                    route(&Method::Get, &p.message_url(9)),
                    Route::HistoryItem {
                        instance: instance.into(),
                        channel: channel.into(),
                        id: 9
                    }
                );
            }
        }
        let p = ChannelPath {
            instance: "my inst",
            channel: "c",
        };
        assert_eq!(p.channel_url(), "/v1.1/instances/my%20inst/channels/c/");
        assert_eq!(
            p.message_url(8),
            "/v1.1/instances/my%20inst/channels/c/history/8/"
        );
        assert_eq!(group_url("i", 3), "/v1.1/instances/i/groups/3/");
        // A name holding `/` is encoded, but no route accepts it back.
        let slash = ChannelPath {
            instance: "i",
            channel: "a/b",
        };
        assert_eq!(slash.channel_url(), "/v1.1/instances/i/channels/a%2Fb/");
        assert_eq!(route(&Method::Get, &slash.channel_url()), Route::NotFound);
    }
}
