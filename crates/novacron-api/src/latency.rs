//! [`LatencyHistograms`]: the latency of API requests by method, route template and status,
//! one Prometheus histogram per combination. Recording a request takes no lock: the series
//! live in a fixed table of write-once slots found by hash, and a histogram is a few atomic
//! counters. Encoded in the same form as prometheus-client's `Family<_, Histogram>`.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Upper bounds of the buckets in seconds (100 µs to ~3.3 s), as the `le` labels show them;
/// a last bucket, `+Inf`, takes the rest.
pub const BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.3,
];

/// [`BOUNDS`] in nanoseconds, which is what requests are compared with.
const BOUNDS_NANOS: [u64; 14] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    3_300_000_000,
];

/// Buckets of one histogram: one per bound and `+Inf`.
const BUCKETS: usize = BOUNDS.len() + 1;

/// Slots of the lock-free table. Routes × methods × statuses seen stay far below this; series
/// beyond it go to a list behind a mutex.
const SLOTS: usize = 512;

/// One histogram: requests per bucket (not cumulative) and the sum of their durations.
#[derive(Debug)]
struct Series {
    method: &'static str,
    route: Box<str>,
    status: u16,
    /// Requests whose duration falls in each bucket (first bound not below it).
    buckets: [AtomicU64; BUCKETS],
    /// Sum of the durations, in nanoseconds (exact, and one atomic add).
    sum_nanos: AtomicU64,
}

impl Series {
    fn new(method: &'static str, route: &str, status: u16) -> Self {
        Self {
            method,
            route: route.into(),
            status,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn is(&self, method: &'static str, route: &str, status: u16) -> bool {
        self.status == status && self.method == method && *self.route == *route
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BOUNDS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn encode(&self, encoder: &mut MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0); BUCKETS];
        let mut count = 0;
        for ((bucket, bound), n) in buckets
            .iter_mut()
            .zip(BOUNDS.iter().chain(std::iter::once(&f64::INFINITY)))
            .zip(&self.buckets)
        {
            let n = n.load(Ordering::Relaxed);
            *bucket = (*bound, n);
            count += n;
        }
        // N.B. The count is the sum of the buckets read, so `_count` always equals the `+Inf`
        // bucket even while requests are being recorded.
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let labels = (
            [("method", self.method), ("route", &*self.route)],
            [("status", self.status)],
        );
        encoder
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

#[derive(Debug)]
struct Table {
    /// Open addressing with linear probing; a slot, once set, never changes.
    slots: Box<[OnceLock<Series>]>,
    /// Series that found no free slot.
    overflow: Mutex<Vec<Arc<Series>>>,
}

/// Request latency histograms by method, route template and status (a metric to register in a
/// prometheus-client `Registry`; clones share the same histograms).
#[derive(Clone, Debug)]
pub struct LatencyHistograms {
    table: Arc<Table>,
}

impl Default for LatencyHistograms {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistograms {
    /// No series yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            table: Arc::new(Table {
                slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
                overflow: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Records one request of `method` on `route` answered with `status` in `elapsed`.
    pub fn observe(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let mut h = DefaultHasher::new();
        (method, route, status).hash(&mut h);
        let start = usize::try_from(h.finish() % SLOTS as u64).unwrap_or(0);
        let slots = &self.table.slots;
        // A series sits in the first free slot of its probe sequence at the time it was
        // added, and slots are never emptied: the first slot holding it or still free ends
        // the search, and racing adders of one series agree on the slot.
        for slot in slots.iter().skip(start).chain(slots.iter().take(start)) {
            let series = match slot.get() {
                Some(s) => s,
                None => slot.get_or_init(|| Series::new(method, route, status)),
            };
            if series.is(method, route, status) {
                series.observe(elapsed);
                return;
            }
        }
        self.observe_overflow(method, route, status, elapsed);
    }

    #[cold]
    fn observe_overflow(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let mut list = self
            .table
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = list.iter().find(|s| s.is(method, route, status)) {
            s.observe(elapsed);
            return;
        }
        let s = Arc::new(Series::new(method, route, status));
        s.observe(elapsed);
        list.push(s);
    }
}

impl EncodeMetric for LatencyHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let overflow: Vec<Arc<Series>> = self
            .table
            .overflow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut all: Vec<&Series> = self
            .table
            .slots
            .iter()
            .filter_map(OnceLock::get)
            .chain(overflow.iter().map(AsRef::as_ref))
            .collect();
        all.sort_by(|a, b| (&a.route, a.method, a.status).cmp(&(&b.route, b.method, b.status)));
        for s in all {
            s.encode(&mut encoder)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.table.slots.iter().all(|s| s.get().is_none())
            && self
                .table
                .overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct RouteLabels {
        method: &'static str,
        route: String,
        status: u16,
    }

    fn text(metric: impl prometheus_client::registry::Metric) -> String {
        let mut registry = Registry::with_prefix("novacron");
        registry.register("api_request_duration_seconds", "Time", metric);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    /// The series of `text` (lines of one label set together), sorted, so that outputs
    /// listing series in different orders compare equal.
    fn series_sorted(text: &str) -> Vec<String> {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    #[test]
    fn bounds_in_nanoseconds_match_the_labels() {
        for (s, n) in BOUNDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!(Duration::from_nanos(n).as_secs_f64(), *s);
        }
    }

    #[test]
    fn encodes_like_the_prometheus_client_histogram_family() {
        let old = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(BOUNDS.iter().copied())
        });
        let new = LatencyHistograms::new();
        // Series of several requests have durations exact in binary, so both sums are exact;
        // 1 ms and 3.3 s sit on a bound, 5 s is past the last one.
        let requests: [(&'static str, &str, u16, Duration); 7] = [
            ("GET", "/api/v1/vms", 200, Duration::from_millis(125)),
            ("GET", "/api/v1/vms", 200, Duration::from_millis(500)),
            ("GET", "/api/v1/vms", 200, Duration::from_millis(250)),
            ("GET", "/api/v1/vms", 401, Duration::from_secs(5)),
            ("POST", "/api/v1/vms", 201, Duration::from_millis(3300)),
            ("GET", "/api/v1/vms/{vm}", 404, Duration::from_micros(0)),
            ("GET", "/api/v1/vms/{vm}", 200, Duration::from_millis(1)),
        ];
        for (method, route, status, d) in requests {
            let labels = RouteLabels {
                method,
                route: route.to_owned(),
                status,
            };
            old.get_or_create(&labels).observe(d.as_secs_f64());
            new.observe(method, route, status, d);
        }
        let (old, new) = (text(old), text(new));
        assert_eq!(series_sorted(&old), series_sorted(&new), "{new}");
        assert!(new.starts_with(
            "# HELP novacron_api_request_duration_seconds Time.\n\
             # TYPE novacron_api_request_duration_seconds histogram\n"
        ));
    }

    #[test]
    fn counts_sum_and_cumulative_buckets() {
        let h = LatencyHistograms::new();
        for micros in [50, 100, 101, 300, 4_000, 4_000_000] {
            h.observe("GET", "/x", 200, Duration::from_micros(micros));
        }
        h.observe("GET", "/x", 500, Duration::from_micros(7));
        let out = text(h);
        let line = |suffix: &str| {
            let prefix = format!(
                "novacron_api_request_duration_seconds_{suffix}{{method=\"GET\",route=\"/x\",status=\"200\""
            );
            out.lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{out}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        assert_eq!(line("count"), "6");
        let sum: f64 = line("sum").parse().unwrap();
        assert!((sum - 4.004551).abs() < 1e-12, "{sum}");
        let buckets: Vec<(String, u64)> = out
            .lines()
            .filter(|l| l.contains("_bucket{") && l.contains("status=\"200\""))
            .map(|l| {
                let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
                (
                    le.to_owned(),
                    l.rsplit(' ').next().unwrap().parse().unwrap(),
                )
            })
            .collect();
        let expect: Vec<(String, u64)> = [
            ("0.0001", 2),
            ("0.00025", 3),
            ("0.0005", 4),
            ("0.001", 4),
            ("0.0025", 4),
            ("0.005", 5),
            ("0.01", 5),
            ("0.025", 5),
            ("0.05", 5),
            ("0.1", 5),
            ("0.25", 5),
            ("0.5", 5),
            ("1.0", 5),
            ("3.3", 5),
            ("+Inf", 6),
        ]
        .iter()
        .map(|(le, n)| ((*le).to_owned(), *n))
        .collect();
        assert_eq!(buckets, expect);
        assert!(out.contains("status=\"500\"}"));
    }

    #[test]
    fn no_series_no_descriptor() {
        assert_eq!(text(LatencyHistograms::new()), "# EOF\n");
    }

    #[test]
    fn concurrent_adders_of_one_series_share_it() {
        let h = LatencyHistograms::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..1000_u16 {
                        h.observe("GET", "/r", 200 + i % 3, Duration::from_micros(10));
                    }
                });
            }
        });
        let filled = h.table.slots.iter().filter_map(OnceLock::get).count();
        assert_eq!(filled, 3);
        let counts: u64 = h
            .table
            .slots
            .iter()
            .filter_map(OnceLock::get)
            .map(|s| {
                s.buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(counts, 4000);
    }

    #[test]
    fn series_past_the_table_go_to_the_overflow_list() {
        let h = LatencyHistograms::new();
        let routes: Vec<String> = (0..SLOTS + 10).map(|i| format!("/r{i}")).collect();
        for r in &routes {
            h.observe("GET", r, 200, Duration::from_millis(1));
        }
        for r in &routes {
            h.observe("GET", r, 200, Duration::from_millis(1));
        }
        let overflow = h.table.overflow.lock().unwrap().len();
        assert_eq!(overflow, 10);
        let out = text(h);
        let counts = out
            .lines()
            .filter(|l| l.contains("_count{"))
            .inspect(|l| assert!(l.ends_with(" 2"), "{l}"))
            .count();
        assert_eq!(counts, SLOTS + 10);
    }
}
