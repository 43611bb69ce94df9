//! Prometheus metrics of the API (requests and their latency by route) and of the node (VMs by
//! state, QEMU CPU and memory per VM), encoded at `/metrics`.

use crate::server::AppState;
use crate::service::NodeMetrics;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
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

/// Labels of one migration under way.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MigrationLabels {
    vm: String,
    name: String,
    tenant: String,
    target: String,
}

/// Labels of ended migrations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndedLabels {
    direction: &'static str,
    result: &'static str,
}

/// Gauges of the migrations under way, by what they measure.
struct MigrationFamilies {
    bytes_sent: Family<MigrationLabels, Gauge>,
    bytes_remaining: Family<MigrationLabels, Gauge>,
    wire_rate: Family<MigrationLabels, Gauge>,
    dirty_rate: Family<MigrationLabels, Gauge>,
    pass: Family<MigrationLabels, Gauge>,
    eta: Family<MigrationLabels, Gauge>,
    ended: Family<EndedLabels, Counter>,
}

impl MigrationFamilies {
    fn register(registry: &mut Registry) -> Self {
        let f = Self {
            bytes_sent: Family::default(),
            bytes_remaining: Family::default(),
            wire_rate: Family::default(),
            dirty_rate: Family::default(),
            pass: Family::default(),
            eta: Family::default(),
            ended: Family::default(),
        };
        registry.register(
            "migration_sent_bytes",
            "Bytes of guest memory a migration leaving this node has sent",
            f.bytes_sent.clone(),
        );
        registry.register(
            "migration_remaining_bytes",
            "Bytes a migration leaving this node still has to send (QEMU's estimate)",
            f.bytes_remaining.clone(),
        );
        registry.register(
            "migration_wire_rate_bytes",
            "Bytes per second a migration's DWCP session delivers",
            f.wire_rate.clone(),
        );
        registry.register(
            "migration_dirty_rate_bytes",
            "Bytes per second the migrating guest dirties",
            f.dirty_rate.clone(),
        );
        registry.register(
            "migration_pass",
            "Memory pass a migration is in",
            f.pass.clone(),
        );
        registry.register(
            "migration_eta_seconds",
            "Estimated seconds to the end of a migration (absent when unknown)",
            f.eta.clone(),
        );
        registry.register(
            "migrations_ended",
            "Migrations ended since the daemon started, by direction and result",
            f.ended.clone(),
        );
        f
    }

    fn update(&self, node: &NodeMetrics) {
        for family in [
            &self.bytes_sent,
            &self.bytes_remaining,
            &self.wire_rate,
            &self.dirty_rate,
            &self.pass,
            &self.eta,
        ] {
            family.clear();
        }
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for m in &node.migrations {
            let labels = MigrationLabels {
                vm: m.vm.clone(),
                name: m.name.clone(),
                tenant: m.tenant.clone(),
                target: m.target.clone(),
            };
            let p = &m.progress;
            self.bytes_sent
                .get_or_create(&labels)
                .set(gauge(p.bytes_sent));
            self.bytes_remaining
                .get_or_create(&labels)
                .set(gauge(p.bytes_remaining));
            self.wire_rate
                .get_or_create(&labels)
                .set(gauge(p.wire_rate));
            self.dirty_rate
                .get_or_create(&labels)
                .set(gauge(p.dirty_rate));
            self.pass.get_or_create(&labels).set(gauge(p.pass));
            if let Some(eta) = p.eta_secs {
                self.eta.get_or_create(&labels).set(gauge(eta));
            }
        }
        for (direction, result, count) in &node.migrations_ended {
            let counter = self.ended.get_or_create(&EndedLabels { direction, result });
            // The node counts; the counter catches up with it.
            let seen = counter.get();
            if *count > seen {
                counter.inc_by(count - seen);
            }
        }
    }
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
    migrations: MigrationFamilies,
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
        let migrations = MigrationFamilies::register(&mut registry);
        Self {
            registry,
            latency,
            vms,
            qemu_cpu,
            qemu_rss,
            migrations,
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
        self.migrations.update(node);
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
