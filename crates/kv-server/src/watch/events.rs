//! A watcher's events, for the long poll and SSE alike: the query ([`WatchQuery`]), where a
//! watcher starts ([`start`]), what it collects ([`collect`]) and how events are written into a
//! body without copying the shared text of large ones ([`Chunks`]).

use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::time::{Instant, sleep_until};
use actix_web::web::Bytes;
use kv_core::changes;
use kv_core::key::validate_key;
use kv_core::request::query_flag;

use crate::auth::Reach;
use crate::error::ApiError;
use crate::feed::{Event, Filters, FromMemory, MAX_EVENT_VALUE_BYTES, Taken, events_of};
use crate::state::AppState;

/// Filters one watch may name (keys and prefixes together).
const MAX_FILTERS: usize = 16;
const DEFAULT_WAIT_S: u64 = 30;
const MAX_WAIT_S: u64 = 120;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Log rows one read of the database takes when a watcher is behind the feed's memory.
const LOG_PAGE_ROWS: usize = 1000;

/// A parsed `GET /_watch` query.
#[derive(Debug, Clone)]
pub(crate) struct WatchQuery {
    pub filters: Filters,
    pub since: Option<i64>,
    pub wait: Duration,
    pub limit: usize,
    pub values: bool,
}

/// A 400 `invalid_parameter`, as every query of the API answers.
fn bad(message: String) -> ApiError {
    kv_core::StoreError::invalid("invalid_parameter", message).into()
}

/// A whole number in `min..=max`, or a 400 that says which parameter is wrong.
fn number_in(name: &str, text: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "{name} must be a whole number from {min} to {max}, not {text:?}"
        ))),
    }
}

/// A cursor: a version, 0 or above.
pub(super) fn cursor_of(name: &str, text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| {
            ApiError::CursorInvalid(format!(
                "{name} must be a version (a whole number, 0 or above), not {text:?}"
            ))
        })
}

impl WatchQuery {
    /// Parses the query pairs (`key` and `prefix` repeatable), keeping a scoped API key's
    /// filters within its reach: an empty prefix (every key) becomes its own prefixes.
    pub(super) fn parse(pairs: &[(String, String)], reach: &Reach) -> Result<WatchQuery, ApiError> {
        let mut filters = Filters::default();
        let (mut since, mut wait, mut limit, mut values) = (None, None, None, None);
        let once = |name: &str, seen: bool| {
            if seen {
                Err(bad(format!("{name} is given more than once")))
            } else {
                Ok(())
            }
        };
        for (name, value) in pairs {
            match name.as_str() {
                "key" => {
                    validate_key(value)?;
                    reach.check(value)?;
                    filters.keys.push(value.clone());
                }
                "prefix" => match reach.listing(Some(value))? {
                    Some(own) => filters.prefixes.extend(own),
                    None => filters.prefixes.push(value.clone()),
                },
                "since" => {
                    once(name, since.is_some())?;
                    since = Some(cursor_of("since", value)?);
                }
                "wait" => {
                    once(name, wait.is_some())?;
                    wait = Some(number_in("wait", value, 1, MAX_WAIT_S)?);
                }
                "limit" => {
                    once(name, limit.is_some())?;
                    limit = Some(number_in("limit", value, 1, MAX_LIMIT as u64)? as usize);
                }
                "values" => {
                    once(name, values.is_some())?;
                    values = Some(query_flag("values", Some(value))?);
                }
                // The API key, for EventSource (checked by `auth`).
                "access_token" => {}
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?}: /_watch takes key, prefix, since, wait, \
                         limit, values and access_token"
                    )));
                }
            }
        }
        let count = filters.keys.len() + filters.prefixes.len();
        if count == 0 {
            return Err(bad(
                "name what to watch: key=K and/or prefix=P (1 to 16 in all; prefix= with \
                 nothing after it watches every key)"
                    .into(),
            ));
        }
        if count > MAX_FILTERS {
            return Err(bad(format!(
                "{count} filters; a watch takes at most {MAX_FILTERS} keys and prefixes in all"
            )));
        }
        Ok(WatchQuery {
            filters,
            since,
            wait: Duration::from_secs(wait.unwrap_or(DEFAULT_WAIT_S)),
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            values: values.unwrap_or(true),
        })
    }
}

/// A cursor below the oldest version the log keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone {
    pub since: i64,
    pub oldest: i64,
    pub current: i64,
}

impl From<Gone> for ApiError {
    fn from(gone: Gone) -> Self {
        ApiError::HistoryGone {
            since: gone.since,
            oldest: gone.oldest,
            current: gone.current,
        }
    }
}

/// Checks `since` (none: the current version; 0: the oldest kept) against the log. A `since`
/// above the current version is 400 `cursor_invalid`, unless `ahead_is_gone`: an SSE client's
/// `Last-Event-ID` from before the store went back (a restore, `kv-server copy`) is told to
/// re-list, since EventSource gives up for good on a 400.
pub(crate) async fn start(
    state: &AppState,
    since: Option<i64>,
    ahead_is_gone: bool,
) -> Result<Result<i64, Gone>, ApiError> {
    let (oldest, current) = state.db(changes::position).await?;
    Ok(match since {
        None => Ok(current),
        Some(0) => Ok(oldest),
        Some(since) if since > current && !ahead_is_gone => {
            return Err(ApiError::CursorInvalid(format!(
                "since={since} is above the store's current version {current}"
            )));
        }
        Some(since) if since < oldest || since > current => Err(Gone {
            since,
            oldest,
            current,
        }),
        Some(since) => Ok(since),
    })
}

/// The matching events above `since` (at least `limit` when there are that many, more to
/// finish a version): from the feed's memory, or from the log while the watcher is behind it.
pub(crate) async fn collect(
    state: &AppState,
    filters: &Filters,
    since: i64,
    limit: usize,
) -> Result<Result<Taken, Gone>, ApiError> {
    let mut cursor = since;
    let mut events: Vec<Arc<Event>> = Vec::new();
    loop {
        if let FromMemory::Taken(mut taken) = state.feed.take(cursor, filters, limit - events.len())
        {
            events.append(&mut taken.events);
            return Ok(Ok(Taken {
                events,
                cursor: taken.cursor,
            }));
        }
        let after = cursor;
        let read = state
            .db(move |conn| changes::read_after(conn, after, LOG_PAGE_ROWS, MAX_EVENT_VALUE_BYTES))
            .await?;
        if read.trimmed > after {
            // Trimmed while this watcher was behind.
            let (oldest, current) = state.db(changes::position).await?;
            return Ok(Err(Gone {
                since: after,
                oldest,
                current,
            }));
        }
        let mut last_version = None;
        let scanned = read.scanned;
        for event in events_of(read) {
            if events.len() >= limit && last_version != Some(event.version) {
                return Ok(Ok(Taken {
                    events,
                    cursor: last_version.unwrap_or(cursor),
                }));
            }
            last_version = Some(event.version);
            if filters.matches(&event.key) {
                events.push(Arc::new(event));
            }
        }
        cursor = scanned.max(cursor);
        if events.len() >= limit {
            return Ok(Ok(Taken { events, cursor }));
        }
    }
}

/// Rendered events at or above this size are sent as the feed's shared bytes; smaller ones
/// (and the framing around them) are copied into one buffer, so a reply of many small events
/// stays a few writes.
const SHARE_FROM_BYTES: usize = 4096;

/// A body made of rendered events: small texts copied together, large events as references
/// to the text every watcher shares ([`Event::json`]), never a copy per watcher.
#[derive(Default)]
pub(crate) struct Chunks {
    chunks: Vec<Bytes>,
    text: Vec<u8>,
    len: usize,
}

impl Chunks {
    pub fn push_str(&mut self, text: &str) {
        self.text.extend_from_slice(text.as_bytes());
        self.len += text.len();
    }

    /// An event's JSON (`values` as the watcher asked).
    pub fn push_event(&mut self, event: &Event, values: bool) {
        let json = event.json(values);
        self.len += json.len();
        if json.len() < SHARE_FROM_BYTES {
            self.text.extend_from_slice(json);
        } else {
            self.flush();
            self.chunks.push(json.clone());
        }
    }

    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.chunks
                .push(Bytes::from(std::mem::take(&mut self.text)));
        }
    }

    /// The body's length in bytes.
    pub fn size(&self) -> usize {
        self.len
    }

    pub fn into_chunks(mut self) -> Vec<Bytes> {
        self.flush();
        self.chunks
    }
}

/// Waits for `woken` or `deadline`, whichever comes first.
pub(super) async fn first_of(woken: impl std::future::Future<Output = ()>, deadline: Instant) {
    let timer = sleep_until(deadline);
    futures_util::pin_mut!(woken);
    futures_util::pin_mut!(timer);
    futures_util::future::select(woken, timer).await;
}
