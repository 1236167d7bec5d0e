//! HTTP publishes (answered once the writer stored them) and history reads.

use bytes::BytesMut;

use super::{api_error, channel_type, fail, Failure, HttpWait, Reply, Waiting};
use crate::broker::writer::{ConnRef, PublishReq, WriterMsg};
use crate::http::history::{history_params, HistoryPlan};
use crate::http::render;
use crate::http::syncano;
use crate::http::{ApiError, ChannelPath, Request, ResponseOptions};
use crate::limits;
use crate::net::IoThread;
use crate::storage::record::{self, ContentType, MessageFields, RecordView};
use crate::storage::{Order, View};
use crate::wire::AckMode;

impl IoThread {
    pub(super) fn http_publish(
        &mut self,
        index: usize,
        req: &Request,
        instance: &str,
        channel: &str,
    ) -> Result<Reply, Failure> {
        let (caller, body) = self.http_write(instance, req)?;
        let ch = self.http_channel(&caller, channel, ApiError::NotFound)?;
        if ch.is_eventlog() {
            return Err(fail(ApiError::PermissionDenied));
        }
        self.broker
            .access(&caller, &ch)
            .check_publish()
            .map_err(|e| fail(api_error(&e, ApiError::NotFound)))?;
        let params = syncano::publish_params(req, &body).map_err(fail)?;
        let room =
            syncano::channel_room(channel_type(ch.kind()), params.room.as_deref()).map_err(fail)?;
        let fields = MessageFields {
            content_type: Some(ContentType::Json),
            room,
            ..MessageFields::default()
        };
        let mut data = Vec::with_capacity(params.payload.len() + 160);
        data.extend_from_slice(&[0; 4]);
        record::encode_body(&mut data, &fields, &params.payload);
        let len = u32::try_from(data.len() - 4).map_err(|_| fail(ApiError::PayloadTooLarge))?;
        data[..4].copy_from_slice(&len.to_le_bytes());
        record::check_body(&mut data[4..]).map_err(|_| fail(ApiError::PayloadInvalidFormat))?;
        let Some(conn) = self.conns.get_mut(index) else {
            return Err(fail(ApiError::ServerError));
        };
        let bytes = data.len();
        let msg = WriterMsg::Publish(PublishReq {
            channel_id: ch.id,
            author: caller.author(),
            data: BytesMut::from(&data[..]).freeze(),
            count: 1,
            frames: 1,
            ack: AckMode::Durable,
            conn: ConnRef {
                thread: self.id,
                index,
                generation: conn.generation,
            },
            seq: 0,
        });
        conn.inflight += 1;
        conn.http_wait = Some(Box::new(HttpWait {
            opts: ResponseOptions::closing(),
            what: Waiting::Publish {
                channel: ch,
                instance: instance.to_string(),
            },
        }));
        if let Err(back) = self.broker.try_append(msg, bytes) {
            conn.stalled = Some(back);
            conn.stalled_bytes = bytes;
            self.push_again(index);
        }
        Ok(Reply::Later)
    }

    /// Answers an HTTP publish once the writer reported on it.
    pub(in crate::net) fn http_published(&mut self, index: usize, outcome: Result<u64, ApiError>) {
        let Some(conn) = self.conns.get_mut(index) else {
            return;
        };
        let Some(mut wait) = conn.http_wait.take() else {
            return;
        };
        if let Waiting::CsMessages {
            remaining,
            failed,
            body,
        } = &mut wait.what
        {
            *remaining = remaining.saturating_sub(1);
            *failed |= matches!(outcome, Err(ApiError::Unavailable(_)));
            if *remaining > 0 {
                conn.http_wait = Some(wait);
                return;
            }
            let mut opts = wait.opts;
            opts.date_us = Some(self.broker.clock().now_us());
            let unavailable = br#"{"message": "the messages could not all be stored; retry"}"#;
            let (status, body) = if *failed {
                (503, unavailable.to_vec())
            } else {
                (200, std::mem::take(body))
            };
            self.answer(index, &opts, status, &body);
            return;
        }
        let Waiting::Publish { channel, instance } = wait.what else {
            conn.http_wait = Some(wait);
            return;
        };
        let mut opts = wait.opts;
        opts.date_us = Some(self.broker.clock().now_us());
        let path = ChannelPath {
            instance: &instance,
            channel: channel.name(),
        };
        let body = outcome.and_then(|id| {
            channel
                .reader()
                .get(id, |raw| {
                    let view = RecordView::parse_trusted(raw).ok()?;
                    let mut out = Vec::with_capacity(raw.len() + 256);
                    render::write_message(&mut out, &view, Some(&path));
                    Some(out)
                })
                .flatten()
                .ok_or(ApiError::ServerError)
        });
        match body {
            Ok(b) => self.answer(index, &opts, 201, &b),
            Err(e) => self.answer_error(index, &opts, &e),
        }
    }

    pub(super) fn http_history(
        &mut self,
        req: &Request,
        instance: &str,
        channel: &str,
    ) -> Result<Reply, Failure> {
        let (caller, ch) = self.http_readable(instance, req, channel, ApiError::ChannelNotFound)?;
        let params = history_params(req).map_err(fail)?;
        let room = if params.room.is_none() && caller.reads_every_room() {
            None
        } else {
            Self::http_room(&ch, params.room.as_deref())?
        };
        let plan = HistoryPlan::new(&params);
        let order = if plan.newest_first {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        };
        let mut scratch: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut cut = false;
        let reader = ch.reader();
        reader.page_upto(
            room.as_deref(),
            plan.after_id,
            plan.before_id,
            order,
            plan.limit as usize,
            View {
                viewer: Some(caller.viewer()),
                current: true,
            },
            reader.committed_id(),
            &mut |raw| {
                if !spans.is_empty() && scratch.len() + raw.len() > limits::HTTP_HISTORY_BYTES_MAX {
                    cut = true;
                    return false;
                }
                spans.push((scratch.len(), scratch.len() + raw.len()));
                scratch.extend_from_slice(raw);
                true
            },
        );
        let mut page = plan.page(spans);
        page.more |= cut;
        let views: Vec<RecordView<'_>> = page
            .items
            .iter()
            .filter_map(|&(s, e)| RecordView::parse_trusted(&scratch[s..e]).ok())
            .collect();
        let first_last = views
            .first()
            .zip(views.last())
            .map(|(f, l)| (f.id(), l.id()));
        let path = ChannelPath {
            instance,
            channel: ch.name(),
        };
        let links = plan.links(&path, first_last, page.more);
        let mut out = Vec::with_capacity(scratch.len() * 2 + 128);
        render::write_history_page(&mut out, &links, views, &path);
        Ok(Reply::Now(200, out))
    }

    pub(super) fn http_history_item(
        &mut self,
        req: &Request,
        instance: &str,
        channel: &str,
        id: u64,
    ) -> Result<Reply, Failure> {
        let (caller, ch) = self.http_readable(instance, req, channel, ApiError::ChannelNotFound)?;
        let path = ChannelPath {
            instance,
            channel: ch.name(),
        };
        let viewer = caller.viewer();
        let reader = ch.reader();
        let committed = reader.committed_id();
        let body = reader
            .get(id, |raw| {
                if id > committed || !record::visible(raw, viewer) {
                    return None;
                }
                let view = RecordView::parse_trusted(raw).ok()?;
                let mut out = Vec::with_capacity(raw.len() + 256);
                render::write_message(&mut out, &view, Some(&path));
                Some(out)
            })
            .flatten()
            .ok_or_else(|| fail(ApiError::NotFound))?;
        Ok(Reply::Now(200, body))
    }
}
