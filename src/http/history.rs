//! Syncano v1.1 history pagination (`legacy-apis.md` §1.5): the query
//! parameters, the keyset read the broker must do, and the `next` / `prev`
//! links of the page it returns.
//!
//! A page is presented in `ordering` (`desc` by default). `last_pk` is an
//! exclusive keyset bound and `direction` says which side of it the page is:
//! `1` (next) continues in the presentation order past `last_pk`, `0`
//! (previous) goes back towards the first page, which means reading in the
//! opposite order from `last_pk` and reversing what was read. `last_id` is a
//! further lower bound (`id > last_id`) in every case.
//!
//! The plan reads one record more than the page size, so the page knows
//! whether anything lies beyond it in the reading direction: `next` is null
//! on the last page (and never points at an empty page), `prev` is null on
//! the first. Links carry `room` and `last_id` as well as the paging
//! parameters, fixing Syncano quirk 4 (§1.13).
#![warn(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::http::error::ApiError;
use crate::http::request::Request;
use crate::http::route::ChannelPath;
use crate::http::syncano::{parse_py_int, room_param, PyInt};
use crate::limits;

/// The order a history page is presented in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Oldest first (`ordering=asc`).
    Asc,
    /// Newest first (`ordering=desc`, the default).
    Desc,
}

impl Ordering {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::Asc => "asc",
            Ordering::Desc => "desc",
        }
    }
}

/// Which side of `last_pk` a page lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `direction=0`: the page before `last_pk` in the presentation order.
    Prev,
    /// `direction=1` (the default): the page after `last_pk`.
    Next,
}

impl Direction {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Prev => "0",
            Direction::Next => "1",
        }
    }
}

/// The parameters of `GET …/history/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryParams {
    /// Messages per page, 1..=[`limits::SYNCANO_PAGE_SIZE_MAX`].
    pub page_size: u32,
    /// Presentation order.
    pub ordering: Ordering,
    /// Side of `last_pk`; meaningless without it.
    pub direction: Direction,
    /// Exclusive keyset bound; `None` on a first page.
    pub last_pk: Option<u64>,
    /// Only ids greater than this.
    pub last_id: Option<u64>,
    /// The room (for `separate_rooms` channels), as sent.
    pub room: Option<String>,
}

impl Default for HistoryParams {
    fn default() -> HistoryParams {
        HistoryParams {
            page_size: limits::SYNCANO_PAGE_SIZE_DEFAULT,
            ordering: Ordering::Desc,
            direction: Direction::Next,
            last_pk: None,
            last_id: None,
            room: None,
        }
    }
}

/// The history parameters of `req` (empty values are absent).
///
/// `page_size` over the maximum is cut to it; `ordering` other than `asc` /
/// `desc` is ignored; a `last_id` that is not a whole number is ignored (as
/// Syncano did here, unlike poll), and a negative one filters nothing.
///
/// # Errors
/// [`ApiError::BadPageParameter`] for a `page_size` that is not a whole
/// number ≥ 1, a `direction` other than 0 or 1, or a `last_pk` that is not
/// a whole number ≥ 0; [`ApiError::RoomTooLong`].
pub fn history_params(req: &Request) -> Result<HistoryParams, ApiError> {
    let bad = ApiError::BadPageParameter;
    let page_size = match req.query("page_size").map(parse_py_int) {
        None => limits::SYNCANO_PAGE_SIZE_DEFAULT,
        Some(Some(PyInt::NonNegative(n))) if n >= 1 => {
            let max = u64::from(limits::SYNCANO_PAGE_SIZE_MAX);
            u32::try_from(n.min(max)).map_err(|_| bad.clone())?
        }
        Some(_) => return Err(bad),
    };
    let ordering = match req.query("ordering") {
        Some("asc") => Ordering::Asc,
        _ => Ordering::Desc,
    };
    let direction = match req.query("direction").map(parse_py_int) {
        None | Some(Some(PyInt::NonNegative(1))) => Direction::Next,
        Some(Some(PyInt::NonNegative(0))) => Direction::Prev,
        Some(_) => return Err(bad),
    };
    let last_pk = match req.query("last_pk").map(parse_py_int) {
        None => None,
        Some(Some(PyInt::NonNegative(n))) => Some(n),
        Some(_) => return Err(bad),
    };
    let last_id = match req.query("last_id").and_then(parse_py_int) {
        Some(PyInt::NonNegative(n)) => Some(n),
        Some(PyInt::Negative) | None => None,
    };
    let room = room_param(req.query("room"))?;
    Ok(HistoryParams {
        page_size,
        ordering,
        direction,
        last_pk,
        last_id,
        room,
    })
}

/// The read the broker does for one history page: every message with
/// `after_id < id < before_id` (each bound only when set), in `newest_first`
/// order, at most `limit` of them. Then [`HistoryPlan::page`] turns what was
/// read into the page and [`HistoryPlan::links`] gives its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPlan {
    /// Exclusive lower bound.
    pub after_id: Option<u64>,
    /// Exclusive upper bound.
    pub before_id: Option<u64>,
    /// Read order: true for descending ids.
    pub newest_first: bool,
    /// Records to read: the page size plus one, to learn whether more exist.
    pub limit: u32,
    params: HistoryParams,
}

/// A history page in presentation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The page's items, in the order they are rendered.
    pub items: Vec<T>,
    /// Whether more messages lie beyond the page in the reading direction.
    pub more: bool,
}

/// The `next` and `prev` URL paths of a page (`None` renders as `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The following page.
    pub next: Option<String>,
    /// The preceding page.
    pub prev: Option<String>,
}

impl HistoryPlan {
    /// Plans the read for `params`.
    pub fn new(params: &HistoryParams) -> HistoryPlan {
        let asc = params.ordering == Ordering::Asc;
        // Whether the read goes forward in the presentation order.
        let forward = params.last_pk.is_none() || params.direction == Direction::Next;
        // Forward in ascending order, or backward in descending order, reads
        // upwards from last_pk; the other two read downwards.
        let upwards = forward == asc;
        let (mut after_id, before_id) = match params.last_pk {
            None => (None, None),
            Some(pk) if upwards => (Some(pk), None),
            Some(pk) => (None, Some(pk)),
        };
        if let Some(last_id) = params.last_id {
            after_id = Some(after_id.map_or(last_id, |a| a.max(last_id)));
        }
        HistoryPlan {
            after_id,
            before_id,
            newest_first: !upwards,
            limit: params.page_size.saturating_add(1),
            params: params.clone(),
        }
    }

    /// Whether the page is read against the presentation order (a `prev`
    /// page), so that what was read must be reversed.
    fn backward(&self) -> bool {
        self.params.last_pk.is_some() && self.params.direction == Direction::Prev
    }

    /// Turns the records the broker read (in the plan's read order, at most
    /// [`HistoryPlan::limit`]) into the page: at most the page size, in
    /// presentation order.
    pub fn page<T>(&self, mut read: Vec<T>) -> Page<T> {
        let page_len = usize::try_from(self.params.page_size).unwrap_or(usize::MAX);
        let more = read.len() > page_len;
        read.truncate(page_len);
        if self.backward() {
            read.reverse();
        }
        Page { items: read, more }
    }

    /// The links of a page whose first and last ids (in presentation order)
    /// are `first_last` (`None` for an empty page), given [`Page::more`].
    ///
    /// A page reached forwards has `next` when more follow and `prev` unless
    /// it is the first page; one reached backwards has `prev` when more
    /// precede and always `next`. An empty page has no links.
    pub fn links(
        &self,
        path: &ChannelPath<'_>,
        first_last: Option<(u64, u64)>,
        more: bool,
    ) -> Links {
        let Some((first, last)) = first_last else {
            return Links::default();
        };
        let next = |on: bool| on.then(|| self.url(path, Direction::Next, last));
        let prev = |on: bool| on.then(|| self.url(path, Direction::Prev, first));
        if self.backward() {
            Links {
                next: next(true),
                prev: prev(more),
            }
        } else {
            Links {
                next: next(more),
                prev: prev(self.params.last_pk.is_some()),
            }
        }
    }

    /// The URL path of the page on the `direction` side of `last_pk`.
    fn url(&self, path: &ChannelPath<'_>, direction: Direction, last_pk: u64) -> String {
        let p = &self.params;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("direction", direction.as_str())
            .append_pair("last_pk", &last_pk.to_string())
            .append_pair("ordering", p.ordering.as_str())
            .append_pair("page_size", &p.page_size.to_string());
        if let Some(room) = &p.room {
            query.append_pair("room", room);
        }
        if let Some(last_id) = p.last_id {
            query.append_pair("last_id", &last_id.to_string());
        }
        format!("{}?{}", path.action_url("history"), query.finish())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request, Method};
    use crate::http::route::{route, Route};

    fn get(target: &str) -> Request {
        let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
        parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn params_parse_with_defaults_and_clamps() {
        let table: &[(&str, Result<HistoryParams, ApiError>)] = &[
            ("/", Ok(HistoryParams::default())),
            (
                "/?page_size=&ordering=&direction=&last_pk=&last_id=&room=",
                Ok(HistoryParams::default()),
            ),
            ("/?page_size=1000", Ok(HistoryParams::default())),
            (
                "/?page_size=7&ordering=asc&direction=0&last_pk=12&last_id=3&room=R",
                Ok(HistoryParams {
                    page_size: 7,
                    ordering: Ordering::Asc,
                    direction: Direction::Prev,
                    last_pk: Some(12),
                    last_id: Some(3),
                    room: Some("R".into()),
                }),
            ),
            ("/?ordering=sideways", Ok(HistoryParams::default())),
            ("/?ordering=-id", Ok(HistoryParams::default())),
            ("/?last_id=abc", Ok(HistoryParams::default())),
            ("/?last_id=-4", Ok(HistoryParams::default())),
            ("/?page_size=0", Err(ApiError::BadPageParameter)),
            ("/?page_size=-1", Err(ApiError::BadPageParameter)),
            ("/?page_size=ten", Err(ApiError::BadPageParameter)),
            ("/?direction=2", Err(ApiError::BadPageParameter)),
            ("/?direction=next", Err(ApiError::BadPageParameter)),
            ("/?last_pk=x", Err(ApiError::BadPageParameter)),
            ("/?last_pk=-1", Err(ApiError::BadPageParameter)),
        ];
        for (target, want) in table {
            assert_eq!(&history_params(&get(target)), want, "{target}");
        }
        let long = format!("/?room={}", "r".repeat(129));
        assert_eq!(history_params(&get(&long)), Err(ApiError::RoomTooLong));
    }

    #[test]
    fn plans_bound_and_order_the_read() {
        let p = |ordering, direction, last_pk, last_id| HistoryParams {
            page_size: 10,
            ordering,
            direction,
            last_pk,
            last_id,
            room: None,
        };
        use Direction::*;
        use Ordering::*;
        // (params, after, before, newest_first)
        let table = [
            (p(Desc, Next, None, None), None, None, true),
            (p(Asc, Next, None, None), None, None, false),
            (p(Desc, Prev, None, None), None, None, true),
            (p(Desc, Next, Some(50), None), None, Some(50), true),
            (p(Asc, Next, Some(50), None), Some(50), None, false),
            (p(Desc, Prev, Some(50), None), Some(50), None, false),
            (p(Asc, Prev, Some(50), None), None, Some(50), true),
            (p(Desc, Next, None, Some(7)), Some(7), None, true),
            (p(Asc, Next, Some(50), Some(70)), Some(70), None, false),
            (p(Asc, Next, Some(50), Some(20)), Some(50), None, false),
            (p(Asc, Prev, Some(50), Some(20)), Some(20), Some(50), true),
        ];
        for (params, after, before, newest_first) in table {
            let plan = HistoryPlan::new(&params);
            assert_eq!(
                (plan.after_id, plan.before_id, plan.newest_first, plan.limit),
                (after, before, newest_first, 11),
                "{params:?}"
            );
        }
    }

    /// A channel holding `ids` (ascending), read the way the broker reads.
    fn broker_read(ids: &[u64], plan: &HistoryPlan) -> Vec<u64> {
        let mut hits: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| plan.after_id.is_none_or(|a| id > a))
            .filter(|&id| plan.before_id.is_none_or(|b| id < b))
            .collect();
        if plan.newest_first {
            hits.reverse();
        }
        hits.truncate(plan.limit as usize);
        hits
    }

    /// Follows one history URL the way a client does: parse, route, plan,
    /// read, page, link.
    fn fetch(ids: &[u64], url: &str) -> (Vec<u64>, Links) {
        let req = get(url);
        let Route::History { instance, channel } = route(&Method::Get, &req.path) else {
            panic!("{url} does not route to history");
        };
        let path = ChannelPath {
            instance: &instance,
            channel: &channel,
        };
        let plan = HistoryPlan::new(&history_params(&req).unwrap());
        let page = plan.page(broker_read(ids, &plan));
        let first_last = page.items.first().zip(page.items.last());
        let links = plan.links(&path, first_last.map(|(f, l)| (*f, *l)), page.more);
        (page.items, links)
    }

    /// Walks from `start` along `next` to the end, then back along `prev` to
    /// the start, checking every page against `expected` (the pages in
    /// presentation order, computed independently).
    fn walk(ids: &[u64], start: &str, expected: &[Vec<u64>]) {
        let mut url = start.to_owned();
        let mut forward = Vec::new();
        let mut last_links;
        loop {
            let (page, links) = fetch(ids, &url);
            if forward.is_empty() {
                assert_eq!(links.prev, None, "first page has no prev: {url}");
            }
            forward.push(page);
            last_links = links.clone();
            match links.next {
                Some(next) => url = next,
                None => break,
            }
        }
        assert_eq!(forward, expected, "forward from {start}");
        let mut backward = vec![forward.last().unwrap().clone()];
        let mut links = last_links;
        while let Some(prev) = links.prev.clone() {
            let (page, l) = fetch(ids, &prev);
            assert!(l.next.is_some(), "a page reached by prev has a next");
            backward.push(page);
            links = l;
            assert!(
                backward.len() <= expected.len(),
                "prev walked past the start"
            );
        }
        backward.reverse();
        assert_eq!(backward, expected, "backward to {start}");
    }

    fn pages(ids: impl Iterator<Item = u64>, size: usize) -> Vec<Vec<u64>> {
        let all: Vec<u64> = ids.collect();
        if all.is_empty() {
            return vec![Vec::new()];
        }
        all.chunks(size).map(<[u64]>::to_vec).collect()
    }

    #[test]
    fn walking_next_then_prev_visits_every_page_exactly() {
        let base = "/v1.1/instances/i/channels/c/history/";
        let contiguous: Vec<u64> = (1..=250).collect();
        let sparse: Vec<u64> = (1..=250).map(|i| i * 3 + i % 2).collect();
        for ids in [&contiguous, &sparse] {
            for (ordering, desc) in [
                ("", true),
                ("&ordering=desc", true),
                ("&ordering=asc", false),
            ] {
                for last_id in [None, Some(0u64), Some(30), Some(ids[149]), Some(ids[249])] {
                    for page_size in [100usize, 7, 1, 250, 300] {
                        let kept = ids
                            .iter()
                            .copied()
                            .filter(|&id| last_id.is_none_or(|l| id > l));
                        let want = if desc {
                            pages(kept.rev(), page_size.min(100))
                        } else {
                            pages(kept, page_size.min(100))
                        };
                        let mut start = format!("{base}?page_size={page_size}{ordering}");
                        if let Some(l) = last_id {
                            start.push_str(&format!("&last_id={l}"));
                        }
                        walk(ids, &start, &want);
                    }
                }
            }
        }
    }

    #[test]
    fn default_page_is_the_newest_100_with_a_next_link_only() {
        let ids: Vec<u64> = (1..=250).collect();
        let (page, links) = fetch(&ids, "/v1.1/instances/i/channels/c/history/");
        assert_eq!(page, (151..=250).rev().collect::<Vec<_>>());
        assert_eq!(links.prev, None);
        assert_eq!(
            links.next.as_deref(),
            Some("/v1.1/instances/i/channels/c/history/?direction=1&last_pk=151&ordering=desc&page_size=100")
        );
    }

    #[test]
    fn links_carry_room_and_last_id_encoded() {
        let ids: Vec<u64> = (1..=20).collect();
        let (page, links) = fetch(
            &ids,
            "/v1.1/instances/my%20i/channels/c/history/?page_size=5&room=a+b%26c&last_id=2&ordering=asc",
        );
        assert_eq!(page, vec![3, 4, 5, 6, 7]);
        assert_eq!(
            links.next.as_deref(),
            Some(
                "/v1.1/instances/my%20i/channels/c/history/\
                 ?direction=1&last_pk=7&ordering=asc&page_size=5&room=a+b%26c&last_id=2"
            )
        );
        let (page, links) = fetch(&ids, links.next.as_deref().unwrap());
        assert_eq!(page, vec![8, 9, 10, 11, 12]);
        assert_eq!(
            links.prev.as_deref(),
            Some(
                "/v1.1/instances/my%20i/channels/c/history/\
                 ?direction=0&last_pk=8&ordering=asc&page_size=5&room=a+b%26c&last_id=2"
            )
        );
    }

    #[test]
    fn an_empty_channel_has_one_empty_page_without_links() {
        let (page, links) = fetch(&[], "/v1.1/instances/i/channels/c/history/");
        assert!(page.is_empty());
        assert_eq!(links, Links::default());
    }

    #[test]
    fn a_last_full_page_has_no_next() {
        let ids: Vec<u64> = (1..=200).collect();
        let (page, links) = fetch(
            &ids,
            "/v1.1/instances/i/channels/c/history/?direction=1&last_pk=101",
        );
        assert_eq!(page, (1..=100).rev().collect::<Vec<_>>());
        assert_eq!(links.next, None);
        assert!(links.prev.is_some());
    }
}
