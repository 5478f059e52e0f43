//! The server's change feed: one thread reads the change log ([`kv_core::changes`]) as it
//! grows, keeps its recent events in memory, and wakes the watchers whose filters match.
//!
//! The thread reads the log after each local write (a poke), after a PostgreSQL notification
//! from any server (LISTEN), and every `POLL_EVERY` anyway: a lost poke or notification, or
//! a write by another process (kv-sweeper on SQLite), only adds latency. Versions become
//! visible in commit order, so reading "everything above the last version read" never skips
//! one. While no watcher is registered it reads only the store's version, not the events, and
//! only at the poll.
//!
//! Watchers read the events above their cursor from memory when the feed still holds them,
//! else from the log in the database (`watch::collect`). A watcher costs a registry entry
//! and a [`Notify`]; events are shared (`Arc`), rendered as JSON once and never copied per
//! watcher, and carry values of at most [`MAX_EVENT_VALUE_BYTES`] (docs/WATCH.md, "Memory").

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use kv_core::changes::{Change, ChangeOp, LogRead};
use kv_core::expiry::format_rfc3339_ms;
use kv_core::{FeedConnection, FeedConnector, StoreError};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::error::ApiError;

/// How often the feed reads the log without being told to.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How often it checks for PostgreSQL notifications (a local check, no round trip).
const NOTIFICATION_CHECK_EVERY: Duration = Duration::from_millis(5);
/// Log rows one read takes at most (more to finish a version).
const READ_ROWS: usize = 10_000;
/// Events kept in memory (the newest), and the bytes they hold ([`Event::size`]: keys and
/// rendered JSON, values of at most [`MAX_EVENT_VALUE_BYTES`]).
const MAX_EVENTS: usize = 100_000;
const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;
/// How long the feed waits before reconnecting after a database error.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);

/// A `set` event carries its value (JSON text, as stored) only up to this many bytes; a larger
/// one is left out (`"value_omitted": true`), and a watcher that wants it GETs the key. 64 KiB
/// keeps the feed's memory honest (an event costs at most about 70 KiB, so the ring's 64 MiB
/// holds at least ~900 of the largest) and a full long-poll reply (1000 events) near the
/// default `--max-response-bytes`, whatever the values written (up to 16 MiB as stored).
pub const MAX_EVENT_VALUE_BYTES: usize = 64 * 1024;

/// One change of the log, as watchers get it: rendered as JSON once, when it is read from the
/// log, in both forms a watcher may ask for. Watchers share the event (`Arc`) and send its
/// text ([`Bytes`], reference-counted), so N watchers never make N copies of it.
#[derive(Debug)]
pub struct Event {
    pub version: i64,
    pub op: String,
    pub key: String,
    /// The value was larger than [`MAX_EVENT_VALUE_BYTES`] and is left out of the event.
    pub value_omitted: bool,
    /// The event's JSON with its value (or `"value_omitted":true`), for `values=true`.
    with_value: Bytes,
    /// The event's JSON without a value, for `values=false`.
    without_value: Bytes,
}

impl Event {
    /// What the event holds in memory: its key and both renderings (the ring's byte budget
    /// counts this).
    pub fn size(&self) -> usize {
        self.key.len() + self.op.len() + self.with_value.len() + self.without_value.len() + 64
    }

    /// The event as JSON: `{"version","op","key"}`, and for `set` the value (unless
    /// `values=false`; `"value_omitted":true` instead when it is too large) and `expires_at`.
    /// Shared: cloning the `Bytes` copies no text.
    pub fn json(&self, values: bool) -> &Bytes {
        if values {
            &self.with_value
        } else {
            &self.without_value
        }
    }
}

/// Renders one event as JSON (`change` gives its version, op, key, and a collection's type
/// and command).
fn render(
    change: &Change,
    value: Option<&RawValue>,
    value_omitted: bool,
    expires_at: Option<Option<String>>,
) -> Bytes {
    #[derive(serde::Serialize)]
    struct Json<'a> {
        version: i64,
        op: &'a str,
        key: &'a str,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        kind: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        value_omitted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at: Option<Option<String>>,
    }
    let json = Json {
        version: change.version,
        op: &change.op,
        key: &change.key,
        kind: change.kind.as_deref(),
        command: change.command.as_deref(),
        value,
        value_omitted,
        expires_at,
    };
    Bytes::from(serde_json::to_string(&json).unwrap_or_default())
}

impl Event {
    /// Renders the change; `long`: its value was too long to read from the log (see
    /// [`events_of`]). A value too large is dropped here: neither the feed's memory nor a
    /// watcher holds it afterwards.
    pub fn new(change: Change, long: bool) -> Self {
        let set = change.op == ChangeOp::Set.as_str();
        let value_omitted = set
            && (long
                || change
                    .value
                    .as_ref()
                    .is_some_and(|v| v.len() > MAX_EVENT_VALUE_BYTES));
        let value = match &change.value {
            Some(text) if set && !value_omitted => serde_json::from_str::<&RawValue>(text).ok(),
            _ => None,
        };
        let expires_at = || set.then(|| change.expires_at.map(format_rfc3339_ms));
        let with_value = render(&change, value, value_omitted, expires_at());
        let without_value = render(&change, None, false, expires_at());
        Event {
            version: change.version,
            op: change.op,
            key: change.key,
            value_omitted,
            with_value,
            without_value,
        }
    }
}

/// What a watcher watches: keys exactly, and keys under prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub keys: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Filters {
    pub fn matches(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
            || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

/// The events above a cursor that match a watcher's filters.
pub(crate) struct Taken {
    pub events: Vec<Arc<Event>>,
    /// Where the watcher stands now: every matching event up to here was taken.
    pub cursor: i64,
}

/// What a watcher learns from [`Feed::take`].
pub(crate) enum FromMemory {
    Taken(Taken),
    /// The feed no longer holds events above the cursor: read them from the log.
    Older,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    by_key: HashMap<String, HashMap<u64, Arc<Notify>>>,
    by_prefix: HashMap<u64, (Vec<String>, Arc<Notify>)>,
    all: HashMap<u64, Arc<Notify>>,
}

struct State {
    events: VecDeque<Arc<Event>>,
    event_bytes: usize,
    /// Every version at or below `base` is no longer in `events`.
    base: i64,
    /// Every version at or below `head` has been read from the log.
    head: i64,
    registry: Registry,
}

impl State {
    /// Forgets every event and stands at `version` (the events up to it are read from the
    /// log from now on), waking every watcher so that it looks again.
    fn jump_to(&mut self, version: i64) {
        self.events.clear();
        self.event_bytes = 0;
        self.base = version;
        self.head = version;
        for notify in self.registry.all.values() {
            notify.notify_one();
        }
    }
}

impl State {
    /// Whole versions leave memory, oldest first, while it holds more than `MAX_EVENTS` events
    /// or `MAX_EVENT_BYTES`; never the version `keep` (being added).
    fn evict(&mut self, keep: Option<i64>) {
        while self.events.len() > MAX_EVENTS || self.event_bytes > MAX_EVENT_BYTES {
            let Some(oldest) = self.events.front().map(|e| e.version) else {
                break;
            };
            if keep == Some(oldest) {
                break;
            }
            while self.events.front().is_some_and(|e| e.version == oldest) {
                if let Some(event) = self.events.pop_front() {
                    self.event_bytes -= event.size();
                }
            }
            self.base = oldest;
        }
    }
}

struct Shared {
    state: Mutex<State>,
    closing: AtomicBool,
    watchers: AtomicUsize,
    max_watchers: usize,
    /// Events sent to watchers.
    sent: AtomicU64,
    poke: SyncSender<()>,
}

/// The change feed of one server (cheap to clone).
#[derive(Clone)]
pub struct Feed {
    shared: Arc<Shared>,
}

/// A watcher's place in the registry; dropping it leaves.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    id: u64,
    pub notify: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registry;
        registry.all.remove(&self.id);
        registry.by_prefix.remove(&self.id);
        registry.by_key.retain(|_, watchers| {
            watchers.remove(&self.id);
            !watchers.is_empty()
        });
        self.shared.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Feed {
    /// Starts the feed's thread over a connection of its own (from `connector`), from the
    /// store's current version.
    pub fn spawn(connector: FeedConnector, max_watchers: usize) -> Result<Feed, String> {
        let mut conn = connector.connect()?;
        let (_, current) = conn.position().map_err(|e| e.to_string())?;
        let (poke, poked) = mpsc::sync_channel(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                events: VecDeque::new(),
                event_bytes: 0,
                base: current,
                head: current,
                registry: Registry::default(),
            }),
            closing: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
            max_watchers,
            sent: AtomicU64::new(0),
            poke,
        });
        let feed = Feed {
            shared: Arc::clone(&shared),
        };
        std::thread::Builder::new()
            .name("kv-feed".into())
            .spawn(move || follow(&shared, conn, &connector, &poked))
            .map_err(|e| e.to_string())?;
        Ok(feed)
    }

    /// A write committed here: read the log now. Without watchers the feed has nothing to
    /// deliver, so the write does not wake its thread (a registration pokes it, below, and
    /// it polls every `POLL_EVERY` anyway).
    pub fn poke(&self) {
        if self.watchers() > 0 {
            let _ = self.shared.poke.try_send(());
        }
    }

    /// Shutdown: every watcher ends at once (long polls answer, streams close).
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        let state = lock(&self.shared.state);
        for notify in state.registry.all.values() {
            notify.notify_one();
        }
    }

    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    /// How many watchers are registered.
    pub fn watchers(&self) -> usize {
        self.shared.watchers.load(Ordering::Acquire)
    }

    /// Counts events sent to a watcher.
    pub(crate) fn count_sent(&self, events: usize) {
        self.shared.sent.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Events sent to watchers since the server started.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Registers a watcher of `filters`; refused once the server holds `--max-watchers`.
    pub(crate) fn register(&self, filters: &Filters) -> Result<Registration, ApiError> {
        let count = self.shared.watchers.fetch_add(1, Ordering::AcqRel);
        if count >= self.shared.max_watchers {
            self.shared.watchers.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::TooManyWatchers(self.shared.max_watchers));
        }
        let notify = Arc::new(Notify::new());
        let mut state = lock(&self.shared.state);
        let registry = &mut state.registry;
        let id = registry.next_id;
        registry.next_id += 1;
        registry.all.insert(id, Arc::clone(&notify));
        for key in &filters.keys {
            registry
                .by_key
                .entry(key.clone())
                .or_default()
                .insert(id, Arc::clone(&notify));
        }
        if !filters.prefixes.is_empty() {
            registry
                .by_prefix
                .insert(id, (filters.prefixes.clone(), Arc::clone(&notify)));
        }
        drop(state);
        // While nobody watched, the feed let pokes and notifications pass: a write just before
        // this watcher came (between two long polls) is read now, not at the next poll.
        self.poke();
        Ok(Registration {
            shared: Arc::clone(&self.shared),
            id,
            notify,
        })
    }

    /// The events above `since` matching `filters`, from memory: at least `limit` when there
    /// are that many (more to finish a version).
    pub(crate) fn take(&self, since: i64, filters: &Filters, limit: usize) -> FromMemory {
        let state = lock(&self.shared.state);
        if since < state.base {
            return FromMemory::Older;
        }
        let start = state.events.partition_point(|e| e.version <= since);
        let mut events: Vec<Arc<Event>> = Vec::new();
        for event in state.events.range(start..) {
            if events.len() >= limit
                && events
                    .last()
                    .is_some_and(|last| last.version != event.version)
            {
                let cursor = events.last().map_or(since, |last| last.version);
                return FromMemory::Taken(Taken { events, cursor });
            }
            if filters.matches(&event.key) {
                events.push(Arc::clone(event));
            }
        }
        FromMemory::Taken(Taken {
            events,
            cursor: state.head.max(since),
        })
    }

    /// Adds what a read of the log found, and wakes the watchers it concerns. When the log
    /// was trimmed past what the feed had read (another process trimmed it, or `kv-server
    /// copy` replaced the store), memory would have a gap: it is emptied from there, so
    /// that watchers below the trim mark read the log and learn that their history is gone.
    fn publish(&self, events: Vec<Event>, trimmed: i64, scanned: i64) {
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        let mut woken: HashSet<u64> = HashSet::new();
        let mut state = lock(&self.shared.state);
        if trimmed > state.head {
            state.jump_to(trimmed);
        }
        for event in events {
            if event.version <= state.head {
                continue;
            }
            if let Some(watchers) = state.registry.by_key.get(&event.key) {
                for (id, notify) in watchers {
                    if woken.insert(*id) {
                        notify.notify_one();
                    }
                }
            }
            for (id, (prefixes, notify)) in &state.registry.by_prefix {
                if !woken.contains(id) && prefixes.iter().any(|p| event.key.starts_with(p.as_str()))
                {
                    woken.insert(*id);
                    notify.notify_one();
                }
            }
            let version = event.version;
            state.event_bytes += event.size();
            state.events.push_back(event);
            // A long read stays within the budget as it goes (the version being added stays).
            state.evict(Some(version));
        }
        state.head = state.head.max(scanned);
        state.evict(None);
    }

    /// With no watcher registered, the feed does not read events nobody would get: it moves
    /// past them to `current` and forgets what it held (a watcher that comes later and asks
    /// for older events reads them from the log). Wakes any watcher that registered
    /// meanwhile, which then finds its events in the log.
    fn skip_to(&self, current: i64) {
        let mut state = lock(&self.shared.state);
        if current > state.head {
            state.jump_to(current);
        }
    }

    fn head(&self) -> i64 {
        lock(&self.shared.state).head
    }
}

/// The feed's thread: reads the log whenever it may have grown.
fn follow(
    shared: &Arc<Shared>,
    conn: FeedConnection,
    connector: &FeedConnector,
    poked: &Receiver<()>,
) {
    let notifies = connector.notifies();
    let feed = Feed {
        shared: Arc::clone(shared),
    };
    let mut conn = Some(conn);
    let mut last_read = Instant::now();
    while !feed.is_closing() {
        let wait = if notifies {
            NOTIFICATION_CHECK_EVERY
        } else {
            POLL_EVERY
        };
        let mut due = match poked.recv_timeout(wait) {
            // A poke matters to watchers only; without any, the poll keeps the head near (and
            // a watcher's registration pokes).
            Ok(()) => feed.watchers() > 0 || last_read.elapsed() >= POLL_EVERY,
            Err(RecvTimeoutError::Timeout) => last_read.elapsed() >= POLL_EVERY,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(c) = conn.as_mut() else {
            std::thread::sleep(RETRY_AFTER_ERROR);
            conn = connector
                .connect()
                .map_err(|e| log::warn!("the change feed cannot reconnect: {e}"))
                .ok();
            continue;
        };
        if notifies {
            match c.notified() {
                Ok(notified) => due |= notified && feed.watchers() > 0,
                Err(err) => {
                    log::warn!("the change feed lost its connection: {err}");
                    conn = None;
                    continue;
                }
            }
        }
        if !due {
            continue;
        }
        last_read = Instant::now();
        if let Err(err) = catch_up(&feed, c) {
            log::warn!("the change feed cannot read the change log: {err}");
            conn = None;
        }
    }
}

/// The events of a read of the change log (values longer than [`MAX_EVENT_VALUE_BYTES`] were
/// not read: they are omitted).
pub fn events_of(read: LogRead) -> Vec<Event> {
    read.changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| Event::new(change, read.omitted.contains(&index)))
        .collect()
}

/// Reads the log above the feed's head until it is read to the end (only the store's
/// version while no watcher is registered).
fn catch_up(feed: &Feed, conn: &mut FeedConnection) -> Result<(), StoreError> {
    if feed.watchers() == 0 {
        let (_, current) = conn.position()?;
        feed.skip_to(current);
        return Ok(());
    }
    loop {
        let head = feed.head();
        let read = conn.read_after(head, READ_ROWS, MAX_EVENT_VALUE_BYTES)?;
        let more = read.changes.len() >= READ_ROWS;
        let (trimmed, scanned) = (read.trimmed, read.scanned);
        // Rendered before the lock is taken; each change's value is dropped as it is rendered.
        feed.publish(events_of(read), trimmed, scanned);
        if !more {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_keys_exactly_and_prefixes_by_bytes() {
        let filters = Filters {
            keys: vec!["a/b".into()],
            prefixes: vec!["cfg/".into(), "ü".into()],
        };
        assert!(filters.matches("a/b"));
        assert!(!filters.matches("a/bc"));
        assert!(filters.matches("cfg/x"));
        assert!(filters.matches("cfg/"));
        assert!(!filters.matches("cfg"));
        assert!(filters.matches("über"));
        assert!(!filters.matches("u"));
    }

    fn change(op: &str, value: Option<String>) -> Change {
        Change {
            version: 7,
            seq: 0,
            key: "k\"1".into(),
            op: op.into(),
            value,
            expires_at: None,
            at_ms: 0,
            kind: None,
            command: None,
        }
    }

    fn json(event: &Event, values: bool) -> serde_json::Value {
        serde_json::from_slice(event.json(values)).expect("JSON")
    }

    #[test]
    fn an_event_carries_a_value_up_to_the_limit_and_omits_a_larger_one() {
        let small = Event::new(change("set", Some("{\"a\":[1,2]}".into())), false);
        assert_eq!(
            json(&small, true),
            serde_json::json!({"version":7,"op":"set","key":"k\"1","value":{"a":[1,2]},"expires_at":null})
        );
        assert_eq!(
            json(&small, false),
            serde_json::json!({"version":7,"op":"set","key":"k\"1","expires_at":null})
        );
        let at_limit = format!("\"{}\"", "x".repeat(MAX_EVENT_VALUE_BYTES - 2));
        let event = Event::new(change("set", Some(at_limit.clone())), false);
        assert!(!event.value_omitted);
        assert_eq!(
            json(&event, true)["value"].as_str().map(str::len),
            Some(at_limit.len() - 2)
        );

        let large = format!("\"{}\"", "\\u0000".repeat(MAX_EVENT_VALUE_BYTES / 6 + 1));
        let event = Event::new(change("set", Some(large)), false);
        assert!(event.value_omitted);
        assert_eq!(
            json(&event, true),
            serde_json::json!({"version":7,"op":"set","key":"k\"1","value_omitted":true,"expires_at":null})
        );
        assert_eq!(
            json(&event, false),
            serde_json::json!({"version":7,"op":"set","key":"k\"1","expires_at":null})
        );
        assert!(
            event.size() < 1024,
            "the ring holds no large value: {}",
            event.size()
        );

        // A value the log read left out (too long to read) is omitted too.
        let unread = Event::new(change("set", None), true);
        assert_eq!(json(&unread, true)["value_omitted"], true);
        assert!(json(&unread, true).get("value").is_none());
        let deleted = Event::new(change("delete", None), false);
        assert_eq!(
            json(&deleted, true),
            serde_json::json!({"version":7,"op":"delete","key":"k\"1"})
        );
    }

    #[test]
    fn every_watcher_sends_the_same_rendered_text() {
        let event = Event::new(change("set", Some("\"v\"".into())), false);
        let (a, b) = (event.json(true).clone(), event.json(true).clone());
        assert_eq!(a.as_ptr(), b.as_ptr(), "shared, not copied");
    }
}
