//! `GET /_watch`: the change feed over plain HTTP, as a long poll or as Server-Sent Events.
//!
//! A watcher names keys and prefixes and a cursor (a version); it gets every change above the
//! cursor to a matching key, in version order, a version's changes always together. The events
//! come from the feed's memory ([`crate::feed`]) when it still holds them, else from the change log
//! in the database, so a watcher may resume from any version the log keeps.

mod events;
mod sse;

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::rt::time::Instant;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::Reach;
use crate::error::{ApiError, ErrorBody};
use crate::feed::Event;
use crate::state::AppState;
use events::{Chunks, WatchQuery, collect, first_of, start};

/// A long poll's reply: `{"events":[…],"cursor":N}`, its events' text shared with every other
/// watcher (a sized body of chunks, not one string built per watcher).
fn reply(events: &[Arc<Event>], cursor: i64, values: bool) -> HttpResponse {
    let mut body = Chunks::default();
    body.push_str("{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push_str(",");
        }
        body.push_event(event, values);
    }
    body.push_str(&format!("],\"cursor\":{cursor}}}"));
    let len = body.size() as u64;
    let chunks = futures_util::stream::iter(
        body.into_chunks()
            .into_iter()
            .map(Ok::<_, std::convert::Infallible>),
    );
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(SizedStream::new(len, chunks))
}

/// A little jitter on a long poll's wait (up to 1/16 of it), so watchers that started
/// together do not all come back together.
fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let spread = wait.as_millis() as u64 / 16;
    wait + Duration::from_millis(if spread == 0 {
        0
    } else {
        u64::from(nanos) % spread
    })
}

/// `GET /_watch`: a long poll, or SSE with `Accept: text/event-stream`.
#[utoipa::path(get, path = "/_watch", tag = "watch", operation_id = "watch",
    params(
        ("key" = Option<Vec<String>>, Query, description = "A key to watch (repeatable)"),
        ("prefix" = Option<Vec<String>>, Query, description = "Watch keys starting with this (repeatable; empty: every key). 1–16 keys and prefixes in all"),
        ("since" = Option<i64>, Query, description = "Events above this version (default: the current one; 0: the oldest kept)", minimum = 0),
        ("wait" = Option<u64>, Query, description = "Long poll: seconds to wait for an event, 1–120 (default 30)", minimum = 1, maximum = 120),
        ("limit" = Option<u64>, Query, description = "Events per reply, 1–1000 (default 100); a version's events are never split", minimum = 1, maximum = 1000),
        ("values" = Option<String>, Query, description = "`false`: events without values", pattern = "^(true|false|1|0)$"),
        ("access_token" = Option<String>, Query, description = "The API key, for EventSource (never logged)"),
        ("Last-Event-ID" = Option<String>, Header, description = "SSE: resume after this version (wins over since)"),
    ),
    responses(
        (status = 200, description = "Long poll: `{\"events\": [{\"version\",\"op\",\"key\",\"value\"?,\"value_omitted\"?,\"expires_at\"?}], \"cursor\": N}` (a value over 64 KiB as stored is left out: `\"value_omitted\": true`, GET the key); with `Accept: text/event-stream`, an SSE stream", content_type = "application/json", body = Object),
        (status = 410, description = "history_gone: `since` is below the oldest kept version (`oldest`, `current` say where to go on)", body = ErrorBody),
        (status = 503, description = "too_many_watchers (with Retry-After)", body = ErrorBody),
    ))]
pub async fn watch(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    reach: Reach,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = WatchQuery::parse(&query, &reach)?;
    if sse::wanted(&req) {
        return sse::stream(&req, query, state).await;
    }
    let since = start(&state, query.since, false).await??;
    // Registered before the first look: a write committed after it wakes this watcher.
    let registration = state.feed.register(&query.filters)?;
    let deadline = Instant::now() + jittered(query.wait);
    let mut cursor = since;
    loop {
        let taken = collect(&state, &query.filters, cursor, query.limit).await??;
        cursor = taken.cursor;
        let ended = Instant::now() >= deadline || state.feed.is_closing();
        if !taken.events.is_empty() || ended {
            state.feed.count_sent(taken.events.len());
            return Ok(reply(&taken.events, cursor, query.values));
        }
        // A wake-up between the look and here is kept by the Notify (a permit).
        first_of(registration.notify.notified(), deadline).await;
    }
}
