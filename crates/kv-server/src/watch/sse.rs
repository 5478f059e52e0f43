//! `GET /_watch` as Server-Sent Events (`Accept: text/event-stream`).
//!
//! The stream starts with `retry:` and `event: ready` (the watcher is registered: a write
//! after it is never missed), then sends each event as a message with `id: <version>`, and an
//! `event: progress` after 15 s without one (`--watch-progress`), which keeps the client's
//! `Last-Event-ID` current and ends the stream of a client that went away. A cursor below the
//! oldest kept version gets one `event: reset` (EventSource gives up for good on a non-200)
//! and live events from the current version. The stream is produced only as fast as the
//! client reads it: a client that stops reading holds one read's events (references to the
//! feed's shared text for large ones), not a growing queue.

use actix_web::http::header;
use actix_web::rt::time::Instant;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};

use std::collections::VecDeque;

use super::events::{Chunks, Gone, WatchQuery, collect, cursor_of, first_of, start};
use crate::error::{ApiError, ErrorBody};
use crate::feed::{Filters, Registration};
use crate::state::AppState;

/// How long EventSource waits before reconnecting (ms).
const RETRY_MS: u64 = 2000;
/// Events one read takes (a version's events are never split).
const EVENTS_PER_READ: usize = 1000;

/// Whether the client asked for SSE.
pub(super) fn wanted(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

struct Stream {
    state: web::Data<AppState>,
    filters: Filters,
    values: bool,
    cursor: i64,
    registration: Registration,
    /// What goes out before anything else (`retry:`, `ready` or `reset`).
    opening: Option<String>,
    /// The rest of the last read's chunks, not yet written.
    pending: VecDeque<Bytes>,
    last_sent: Instant,
}

fn message(event: &str, id: i64, data: &str) -> String {
    format!("event: {event}\nid: {id}\ndata: {data}\n\n")
}

fn reset_message(gone: Gone) -> String {
    let err = ApiError::from(gone);
    let mut body = ErrorBody::new(err.to_string(), "history_gone");
    body.oldest = Some(gone.oldest);
    body.current = Some(gone.current);
    let data = serde_json::to_string(&body).unwrap_or_default();
    message("reset", gone.current, &data)
}

fn position(cursor: i64) -> String {
    format!("{{\"cursor\":{cursor}}}")
}

/// Opens the stream: `Last-Event-ID` wins over `since`.
pub(super) async fn stream(
    req: &HttpRequest,
    query: WatchQuery,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::CursorInvalid("Last-Event-ID must be a version".into()))
                .and_then(|text| cursor_of("Last-Event-ID", text))
        })
        .transpose()?;
    let started = match last_event_id {
        Some(id) => start(&state, Some(id), true).await?,
        None => start(&state, query.since, false).await?,
    };
    let (cursor, opening) = match started {
        Ok(cursor) => (cursor, message("ready", cursor, &position(cursor))),
        Err(gone) => (gone.current, reset_message(gone)),
    };
    let registration = state.feed.register(&query.filters)?;
    let stream = Stream {
        state,
        filters: query.filters,
        values: query.values,
        cursor,
        registration,
        opening: Some(format!("retry: {RETRY_MS}\n\n{opening}")),
        pending: VecDeque::new(),
        last_sent: Instant::now(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        loop {
            if let Some(chunk) = s.pending.pop_front() {
                return Some((Ok::<_, actix_web::Error>(chunk), s));
            }
            let chunks = s.next().await?;
            s.pending.extend(chunks);
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        // Never compressed (the server has no compression middleware): a compressor would
        // hold events back.
        .streaming(body))
}

impl Stream {
    /// The next chunks to send, once there are some; `None` ends the stream (shutdown, or the
    /// database failed: the client reconnects with its `Last-Event-ID`). A large event's
    /// `data:` is the feed's shared text, not a copy.
    async fn next(&mut self) -> Option<Vec<Bytes>> {
        if let Some(opening) = self.opening.take() {
            return Some(vec![Bytes::from(opening)]);
        }
        // Set once the stream has been idle for `--watch-progress`: the next read (which
        // moves the cursor past other keys' changes) then sends `progress` if it has no event.
        let mut progress_due = false;
        loop {
            if self.state.feed.is_closing() {
                return None;
            }
            let taken =
                match collect(&self.state, &self.filters, self.cursor, EVENTS_PER_READ).await {
                    Ok(Ok(taken)) => taken,
                    Ok(Err(gone)) => {
                        // The log was trimmed past this watcher while it lagged.
                        self.cursor = gone.current;
                        self.last_sent = Instant::now();
                        return Some(vec![Bytes::from(reset_message(gone))]);
                    }
                    Err(err) => {
                        log::warn!("a watch stream ends: {err}");
                        return None;
                    }
                };
            self.cursor = taken.cursor;
            if !taken.events.is_empty() {
                let mut chunks = Chunks::default();
                for event in &taken.events {
                    chunks.push_str(&format!("id: {}\ndata: ", event.version));
                    chunks.push_event(event, self.values);
                    chunks.push_str("\n\n");
                }
                self.state.feed.count_sent(taken.events.len());
                self.last_sent = Instant::now();
                return Some(chunks.into_chunks());
            }
            if progress_due {
                self.last_sent = Instant::now();
                let progress = message("progress", self.cursor, &position(self.cursor));
                return Some(vec![Bytes::from(progress)]);
            }
            let progress_at = self.last_sent + self.state.watch_progress;
            first_of(self.registration.notify.notified(), progress_at).await;
            progress_due = Instant::now() >= progress_at;
        }
    }
}
