//! `GET /metrics` in the Prometheus text format: requests by route and
//! status, bytes received, recordings and jobs by state.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters kept in memory since the server started.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    body_bytes: AtomicU64,
}

impl Metrics {
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
    /// `states` are (metric, state, count) rows read from the database.
    pub fn render(&self, part_bytes: Option<u64>, states: &[(&str, String, i64)]) -> String {
        let mut out = String::new();
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
        let text = metrics.render(Some(42), &[("jobs", "done".into(), 3)]);
        assert!(text.contains("opptak_http_requests_total{route=\"/healthz\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("opptak_received_bytes_total{kind=\"parts\"} 42"));
        assert!(text.contains("opptak_jobs{state=\"done\"} 3"));
    }
}
