//! Every metric of the server, registered in one Prometheus registry ([`Metrics`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kv_core::{Store, StorePool};

use super::key_counts::KeyCounts;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Request latency buckets (seconds): a point read takes well under a millisecond, a
/// write waiting for SQLite's lock up to the busy timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric of the server, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub(crate) http_requests: IntCounterVec,
    pub(crate) http_duration: HistogramVec,
    /// Expired rows a read found (and deleted: lazy expiry).
    pub lazily_expired: IntCounter,
    /// Expired rows kv-sweeper deleted, as the database counts them (every sweeper's).
    pub(crate) swept: IntCounter,
    pub(crate) keys: IntGauge,
    pub(crate) keys_expiring: IntGauge,
    pub(crate) store_version: IntGauge,
    pub(crate) keys_counted_at: Gauge,
    pub(crate) keys_count_seconds: Gauge,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    /// Requests that presented a wrong API key.
    pub(crate) auth_wrong_keys: IntCounter,
    /// Requests refused with 429 because their address presented too many wrong keys.
    pub(crate) auth_throttled: IntCounter,
    pub(crate) key_counts: KeyCounts,
    watchers: IntGauge,
    watch_events: IntCounter,
    replica_reads: IntCounterVec,
    replica_fallbacks: IntCounterVec,
    replica_lag: GaugeVec,
}

impl Metrics {
    /// `key_count_interval`: how often at most live and expiring keys are counted.
    pub fn new(key_count_interval: Duration) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "kv_http_requests_total",
                "HTTP requests answered, by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "kv_http_request_duration_seconds",
                "Time from receiving a request to its response head, by method and route template.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let lazily_expired = IntCounter::new(
            "kv_keys_expired_lazily_total",
            "Expired keys found by a read and deleted then (lazy expiry).",
        )?;
        let swept = IntCounter::new(
            "kv_keys_expired_swept_total",
            "Expired keys deleted by sweeps (kv-sweeper), all sweepers on this database together.",
        )?;
        let keys = IntGauge::new(
            "kv_keys",
            "Live keys in the store, as of the last count (kv_keys_counted_timestamp_seconds).",
        )?;
        let keys_expiring = IntGauge::new(
            "kv_keys_expiring",
            "Live keys with an expiry, as of the last count.",
        )?;
        let store_version = IntGauge::new(
            "kv_store_version",
            "The store-wide version counter, as of the last count (grows by one per write).",
        )?;
        let keys_counted_at = Gauge::new(
            "kv_keys_counted_timestamp_seconds",
            "When kv_keys and kv_keys_expiring were last counted (Unix time).",
        )?;
        let keys_count_seconds = Gauge::new(
            "kv_keys_count_duration_seconds",
            "How long the last count of kv_keys and kv_keys_expiring took.",
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "kv_db_pool_connections",
                "Open database connections of the pool, by state (idle or in_use).",
            ),
            &["state"],
        )?;
        let pool_max = IntGauge::new(
            "kv_db_pool_max_connections",
            "The most connections the pool opens (--pool-size).",
        )?;
        let auth_wrong_keys = IntCounter::new(
            "kv_auth_wrong_keys_total",
            "Requests that presented a wrong API key (answered 401).",
        )?;
        let auth_throttled = IntCounter::new(
            "kv_auth_throttled_total",
            "Requests refused with 429 because their address presented too many wrong API keys.",
        )?;
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds.",
        )?;
        start_time.set(unix_time());
        let build_info = IntGaugeVec::new(
            Opts::new(
                "kv_build_info",
                "Always 1; the kv-server version as a label.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(lazily_expired.clone()))?;
        registry.register(Box::new(swept.clone()))?;
        registry.register(Box::new(keys.clone()))?;
        registry.register(Box::new(keys_expiring.clone()))?;
        registry.register(Box::new(store_version.clone()))?;
        registry.register(Box::new(keys_counted_at.clone()))?;
        registry.register(Box::new(keys_count_seconds.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_max.clone()))?;
        registry.register(Box::new(auth_wrong_keys.clone()))?;
        registry.register(Box::new(auth_throttled.clone()))?;
        let watchers = IntGauge::new(
            "kv_watchers",
            "Watchers of /_watch connected to this server (long polls and SSE streams).",
        )?;
        let watch_events = IntCounter::new(
            "kv_watch_events_sent_total",
            "Change events this server sent to watchers of /_watch.",
        )?;
        registry.register(Box::new(watchers.clone()))?;
        registry.register(Box::new(watch_events.clone()))?;
        let replica_reads = IntCounterVec::new(
            Opts::new(
                "kv_replica_reads_total",
                "Reads a read replica served, by replica (its URL, password redacted).",
            ),
            &["replica"],
        )?;
        let replica_fallbacks = IntCounterVec::new(
            Opts::new(
                "kv_replica_fallbacks_total",
                "Reads the primary answered instead of a read replica, by reason (ahead, behind, \
                 lagging, error, none_in_rotation).",
            ),
            &["reason"],
        )?;
        let replica_lag = GaugeVec::new(
            Opts::new(
                "kv_replica_lag_seconds",
                "How far behind each read replica was when last seen: how long this server had \
                 known of a newer store version.",
            ),
            &["replica"],
        )?;
        registry.register(Box::new(replica_reads.clone()))?;
        registry.register(Box::new(replica_fallbacks.clone()))?;
        registry.register(Box::new(replica_lag.clone()))?;
        registry.register(Box::new(start_time))?;
        registry.register(Box::new(build_info))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            lazily_expired,
            swept,
            keys,
            keys_expiring,
            store_version,
            keys_counted_at,
            keys_count_seconds,
            pool_connections,
            pool_max,
            auth_wrong_keys,
            auth_throttled,
            key_counts: KeyCounts::new(key_count_interval),
            watchers,
            watch_events,
            replica_reads,
            replica_fallbacks,
            replica_lag,
        })
    }

    /// Reads the pool's state into its gauges (cheap: a mutex and two integers).
    pub fn observe_pool(&self, pool: &StorePool) {
        let state = pool.state();
        let idle = i64::from(state.idle_connections);
        let open = i64::from(state.connections);
        self.pool_connections.with_label_values(&["idle"]).set(idle);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(open - idle);
        self.pool_max.set(i64::from(pool.max_size()));
    }

    /// Reads the change feed's watchers and events sent into their metrics.
    pub fn observe_feed(&self, feed: &crate::feed::Feed) {
        self.watchers
            .set(i64::try_from(feed.watchers()).unwrap_or(i64::MAX));
        self.watch_events
            .inc_by(feed.sent().saturating_sub(self.watch_events.get()));
    }

    /// Reads the read replicas' counts and lags into their metrics (nothing without replicas).
    pub fn observe_replicas(&self, store: &Store) {
        for replica in store.replica_status() {
            let reads = self
                .replica_reads
                .with_label_values(&[replica.url.as_str()]);
            reads.inc_by(replica.reads.saturating_sub(reads.get()));
            self.replica_lag
                .with_label_values(&[replica.url.as_str()])
                .set(replica.lag.as_secs_f64());
        }
        for (why, count) in store.replica_fallbacks() {
            let counted = self.replica_fallbacks.with_label_values(&[why.name()]);
            counted.inc_by(count.saturating_sub(counted.get()));
        }
    }

    /// Every metric in the text format.
    pub fn render(&self) -> prometheus::Result<String> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Now as Unix seconds (with a fraction).
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders_with_help_and_type() {
        let metrics = Metrics::new(Duration::from_secs(30)).expect("metrics");
        metrics
            .http_requests
            .with_label_values(&["GET", "/{key}", "200"])
            .inc();
        metrics
            .http_duration
            .with_label_values(&["GET", "/{key}"])
            .observe(0.002);
        metrics.lazily_expired.inc();
        let text = metrics.render().expect("render");
        assert!(
            text.contains(r#"kv_http_requests_total{method="GET",route="/{key}",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kv_http_request_duration_seconds_bucket{method="GET",route="/{key}",le="0.0025"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE kv_keys gauge"), "{text}");
        assert!(text.contains("kv_keys_expired_lazily_total 1"), "{text}");
        assert!(text.contains("kv_build_info{version="), "{text}");
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
    }
}
