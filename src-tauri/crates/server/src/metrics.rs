//! `GET /metrics` in the Prometheus text format: which instance answers,
//! requests by route and status, bytes received, verification outcomes,
//! session-lock waits, the database pool, and recordings and jobs by state.
//!
//! Counters are this instance's since it started; the state gauges are
//! read from the (possibly shared) database, so every instance reports the
//! same totals for them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::meta::PoolStats;

/// Upper bounds (seconds) of the session-lock wait histogram's buckets:
/// from an uncontended lock (well under a millisecond) to the lock timeout.
const LOCK_WAIT_BUCKETS: [f64; 6] = [0.001, 0.01, 0.1, 1.0, 5.0, 10.0];

/// Counters kept in memory since the server started.
#[derive(Debug, Default)]
pub struct Metrics {
    instance_id: OnceLock<String>,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    body_bytes: AtomicU64,
    jobs: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    lock_waits: Mutex<LockWaits>,
}

/// A histogram of how long requests waited for an upload session.
#[derive(Debug, Default)]
struct LockWaits {
    buckets: [u64; LOCK_WAIT_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
    timed_out: u64,
}

impl Metrics {
    /// Names this instance in `opptak_instance_info` (set once, at start).
    pub fn set_instance_id(&self, instance_id: &str) {
        let _ = self.instance_id.set(instance_id.to_owned());
    }

    /// Counts one ended verification claim: `outcome` is `ready`, `failed`,
    /// `retry` or `lease_lost`.
    pub fn count_job(&self, kind: &'static str, outcome: &'static str) {
        let mut jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *jobs.entry((kind, outcome)).or_default() += 1;
    }

    /// Records a wait for an upload session; `timed_out` when it ended in
    /// [`Error::SessionBusy`](crate::Error::SessionBusy).
    pub fn observe_lock_wait(&self, waited: Duration, timed_out: bool) {
        let mut waits = self.lock_waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seconds = waited.as_secs_f64();
        for (bucket, bound) in waits.buckets.iter_mut().zip(LOCK_WAIT_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        waits.count += 1;
        waits.sum_seconds += seconds;
        if timed_out {
            waits.timed_out += 1;
        }
    }

    /// Counts one answered request.
    pub fn count_request(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests.entry((route.to_owned(), status)).or_default() += 1;
    }

    /// Counts API request body bytes.
    pub fn count_body_bytes(&self, bytes: usize) {
        self.body_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Renders every metric; `part_bytes` is what storage routes received,
    /// `states` are (metric, state, count) rows read from the database,
    /// `pool` the database pool's state when there is a pool.
    pub fn render(
        &self,
        part_bytes: Option<u64>,
        states: &[(&str, String, i64)],
        pool: Option<PoolStats>,
        in_flight: usize,
    ) -> String {
        let mut out = String::new();
        out.push_str("# HELP opptak_instance_info The server instance answering (its --instance-id).\n");
        out.push_str("# TYPE opptak_instance_info gauge\n");
        let instance_id = self.instance_id.get().map_or("", String::as_str);
        let _ = writeln!(out, "opptak_instance_info{{instance_id=\"{}\"}} 1", escape(instance_id));
        out.push_str("# HELP opptak_http_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE opptak_http_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((route, status), count) in requests.iter() {
            let _ = writeln!(
                out,
                "opptak_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                escape(route)
            );
        }
        drop(requests);
        out.push_str(
            "# HELP opptak_received_bytes_total Bytes received, by kind (API bodies, media parts).\n",
        );
        out.push_str("# TYPE opptak_received_bytes_total counter\n");
        let _ = writeln!(
            out,
            "opptak_received_bytes_total{{kind=\"api\"}} {}",
            self.body_bytes.load(Ordering::Relaxed)
        );
        if let Some(part_bytes) = part_bytes {
            let _ = writeln!(out, "opptak_received_bytes_total{{kind=\"parts\"}} {part_bytes}");
        }
        out.push_str(
            "# HELP opptak_jobs_total Verification claims this instance ended, by kind and outcome.\n",
        );
        out.push_str("# TYPE opptak_jobs_total counter\n");
        let jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((kind, outcome), count) in jobs.iter() {
            let _ = writeln!(out, "opptak_jobs_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {count}");
        }
        drop(jobs);
        let waits = self.lock_waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.push_str(
            "# HELP opptak_session_lock_wait_seconds How long requests waited for an upload session another request held.\n",
        );
        out.push_str("# TYPE opptak_session_lock_wait_seconds histogram\n");
        for (bound, count) in LOCK_WAIT_BUCKETS.iter().zip(waits.buckets) {
            let _ = writeln!(out, "opptak_session_lock_wait_seconds_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "opptak_session_lock_wait_seconds_bucket{{le=\"+Inf\"}} {}", waits.count);
        let _ = writeln!(out, "opptak_session_lock_wait_seconds_sum {}", waits.sum_seconds);
        let _ = writeln!(out, "opptak_session_lock_wait_seconds_count {}", waits.count);
        out.push_str(
            "# HELP opptak_session_lock_timeouts_total Requests answered 503 because their upload session stayed held.\n",
        );
        out.push_str("# TYPE opptak_session_lock_timeouts_total counter\n");
        let _ = writeln!(out, "opptak_session_lock_timeouts_total {}", waits.timed_out);
        drop(waits);
        if let Some(pool) = pool {
            out.push_str("# HELP opptak_db_pool_connections Database connections open, in use or idle.\n");
            out.push_str("# TYPE opptak_db_pool_connections gauge\n");
            let _ = writeln!(out, "opptak_db_pool_connections {}", pool.size);
            out.push_str("# HELP opptak_db_pool_idle_connections Database connections open and idle.\n");
            out.push_str("# TYPE opptak_db_pool_idle_connections gauge\n");
            let _ = writeln!(out, "opptak_db_pool_idle_connections {}", pool.idle);
        }
        out.push_str("# HELP opptak_http_requests_in_flight Requests being answered now (probes and metrics not counted).\n");
        out.push_str("# TYPE opptak_http_requests_in_flight gauge\n");
        let _ = writeln!(out, "opptak_http_requests_in_flight {in_flight}");
        let mut declared = Vec::new();
        for (metric, state, count) in states {
            if !declared.contains(metric) {
                declared.push(*metric);
                let _ = writeln!(
                    out,
                    "# HELP opptak_{metric} Current count by state.\n# TYPE opptak_{metric} gauge"
                );
            }
            let _ = writeln!(out, "opptak_{metric}{{state=\"{}\"}} {count}", escape(state));
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let metrics = Metrics::default();
        metrics.count_request("/healthz", 200);
        metrics.count_request("/healthz", 200);
        metrics.count_body_bytes(10);
        metrics.set_instance_id("app-1");
        metrics.count_job("verify", "ready");
        metrics.observe_lock_wait(Duration::from_millis(50), false);
        metrics.observe_lock_wait(Duration::from_secs(11), true);
        let text =
            metrics.render(Some(42), &[("jobs", "done".into(), 3)], Some(PoolStats { size: 4, idle: 3 }), 1);
        assert!(text.contains("opptak_http_requests_total{route=\"/healthz\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("opptak_instance_info{instance_id=\"app-1\"} 1"), "{text}");
        assert!(text.contains("opptak_jobs_total{kind=\"verify\",outcome=\"ready\"} 1"), "{text}");
        assert!(text.contains("opptak_session_lock_wait_seconds_bucket{le=\"0.01\"} 0"), "{text}");
        assert!(text.contains("opptak_session_lock_wait_seconds_bucket{le=\"0.1\"} 1"), "{text}");
        assert!(text.contains("opptak_session_lock_wait_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("opptak_session_lock_timeouts_total 1"), "{text}");
        assert!(text.contains("opptak_db_pool_connections 4"), "{text}");
        assert!(text.contains("opptak_http_requests_in_flight 1"), "{text}");
        assert!(text.contains("opptak_db_pool_idle_connections 3"), "{text}");
        assert!(text.contains("opptak_received_bytes_total{kind=\"parts\"} 42"));
        assert!(text.contains("opptak_jobs{state=\"done\"} 3"));
    }
}
