//! Prometheus metrics of the API (requests and their latency by route) and of the node (VMs by
//! state, QEMU CPU and memory per VM), encoded at `/metrics`.

use crate::server::AppState;
use crate::service::NodeMetrics;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Labels of one API route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// The method's name without an allocation (`OTHER` for the rare ones).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Labels of one VM's QEMU process.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabels {
    vm: String,
    name: String,
    tenant: String,
}

/// Labels of a VM state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The registry and the families in it.
pub struct ApiMetrics {
    registry: Registry,
    latency: Family<RouteLabels, Histogram>,
    vms: Family<StateLabels, Gauge>,
    qemu_cpu: Family<VmLabels, Gauge<f64, AtomicU64>>,
    qemu_rss: Family<VmLabels, Gauge>,
    /// Serializes refresh + encode so two scrapes do not interleave.
    scrape: Mutex<()>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiMetrics {
    /// A registry with every family registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("novacron");
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to ~3.3 s.
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 3.3,
            ])
        });
        let vms = Family::<StateLabels, Gauge>::default();
        let qemu_cpu = Family::<VmLabels, Gauge<f64, AtomicU64>>::default();
        let qemu_rss = Family::<VmLabels, Gauge>::default();
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API request (its _count counts the requests)",
            latency.clone(),
        );
        registry.register("vms", "VMs on the node by state", vms.clone());
        registry.register(
            "qemu_cpu_seconds",
            "CPU time used by a VM's QEMU process (user + system)",
            qemu_cpu.clone(),
        );
        registry.register(
            "qemu_resident_bytes",
            "Resident memory of a VM's QEMU process",
            qemu_rss.clone(),
        );
        Self {
            registry,
            latency,
            vms,
            qemu_cpu,
            qemu_rss,
            scrape: Mutex::new(()),
        }
    }

    fn observe(&self, method: &'static str, route: String, status: u16, seconds: f64) {
        let labels = RouteLabels {
            method,
            route,
            status,
        };
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Replaces the node figures with `node` and encodes everything in the Prometheus text
    /// format.
    #[must_use]
    pub fn encode(&self, node: &NodeMetrics) -> String {
        let _guard = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.vms.clear();
        for (state, count) in &node.vms_by_state {
            let labels = StateLabels {
                state: state.as_str().to_owned(),
            };
            self.vms
                .get_or_create(&labels)
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        self.qemu_cpu.clear();
        self.qemu_rss.clear();
        for p in &node.processes {
            let labels = VmLabels {
                vm: p.vm.clone(),
                name: p.name.clone(),
                tenant: p.tenant.clone(),
            };
            self.qemu_cpu.get_or_create(&labels).set(p.cpu_seconds);
            self.qemu_rss
                .get_or_create(&labels)
                .set(i64::try_from(p.rss_bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// Middleware: counts each request and its latency under its route template (never the raw
/// path, so ids do not explode the label space).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(
        method,
        route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
