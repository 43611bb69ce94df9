//! Prometheus metrics of the API (requests and their latency by route) and of the node (VMs by
//! state, QEMU CPU and memory per VM, migrations, DWCP feature flags), encoded at `/metrics`.

use crate::latency::LatencyHistograms;
use crate::service::NodeMetrics;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

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

/// Labels of a DWCP component.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    component: &'static str,
}

/// No labels: a family with one unlabelled series, present only while there is a value.
type Unlabelled = Vec<(&'static str, &'static str)>;

/// Gauges of the node's DWCP feature flags.
struct FlagFamilies {
    enabled: Family<ComponentLabels, Gauge>,
    kill_switch: Family<Unlabelled, Gauge>,
}

impl FlagFamilies {
    fn register(registry: &mut Registry) -> Self {
        let f = Self {
            enabled: Family::default(),
            kill_switch: Family::default(),
        };
        registry.register(
            "dwcp_feature_enabled",
            "Whether migration streams leaving this node use a DWCP component (1) or not (0), \
             under its feature flags",
            f.enabled.clone(),
        );
        registry.register(
            "dwcp_kill_switch",
            "Whether the DWCP kill switch is on (1): every component off on this node",
            f.kill_switch.clone(),
        );
        f
    }

    fn update(&self, node: &NodeMetrics) {
        self.enabled.clear();
        self.kill_switch.clear();
        for (component, on) in &node.dwcp_features {
            self.enabled
                .get_or_create(&ComponentLabels { component })
                .set(i64::from(*on));
        }
        if let Some(on) = node.dwcp_kill_switch {
            self.kill_switch
                .get_or_create(&Vec::new())
                .set(i64::from(on));
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
    latency: LatencyHistograms,
    vms: Family<StateLabels, Gauge>,
    qemu_cpu: Family<VmLabels, Gauge<f64, AtomicU64>>,
    qemu_rss: Family<VmLabels, Gauge>,
    migrations: MigrationFamilies,
    flags: FlagFamilies,
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
        let latency = LatencyHistograms::new();
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
        let flags = FlagFamilies::register(&mut registry);
        Self {
            registry,
            latency,
            vms,
            qemu_cpu,
            qemu_rss,
            migrations,
            flags,
            scrape: Mutex::new(()),
        }
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
        self.flags.update(node);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// Layer of every route: counts each request and its latency under its route template
/// (never the raw path, so ids do not explode the label space).
///
/// A plain tower layer rather than `axum::middleware::from_fn`: it calls the route it wraps
/// directly, where `from_fn` clones and boxes the route and boxes its own future on every
/// request.
#[derive(Clone, Debug)]
pub struct TrackLayer {
    latency: LatencyHistograms,
}

impl TrackLayer {
    /// Records into `metrics`.
    #[must_use]
    pub fn new(metrics: &ApiMetrics) -> Self {
        Self {
            latency: metrics.latency.clone(),
        }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Track {
            inner,
            latency: self.latency.clone(),
        }
    }
}

/// The service [`TrackLayer`] wraps a route in.
#[derive(Clone, Debug)]
pub struct Track<S> {
    inner: S,
    latency: LatencyHistograms,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The matched path is shared with the router (an `Arc<str>`): no copy per request.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        TrackFuture {
            start: Instant::now(),
            inner: self.inner.call(req),
            latency: self.latency.clone(),
            method,
            route,
        }
    }
}

/// The answer of a [`Track`]ed route, recorded when it is ready.
#[derive(Debug)]
pub struct TrackFuture<F> {
    inner: F,
    latency: LatencyHistograms,
    method: &'static str,
    route: Option<MatchedPath>,
    start: Instant,
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let out = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        if let Ok(resp) = &out {
            this.latency.observe(
                this.method,
                this.route.as_ref().map_or("unmatched", MatchedPath::as_str),
                resp.status().as_u16(),
                this.start.elapsed(),
            );
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwcp_flags_are_exported_per_component_while_the_node_migrates() {
        let metrics = ApiMetrics::new();
        let node = NodeMetrics {
            dwcp_features: vec![("hde", true), ("pba", false)],
            dwcp_kill_switch: Some(false),
            ..NodeMetrics::default()
        };
        let text = metrics.encode(&node);
        for line in [
            "novacron_dwcp_feature_enabled{component=\"hde\"} 1\n",
            "novacron_dwcp_feature_enabled{component=\"pba\"} 0\n",
            "novacron_dwcp_kill_switch 0\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        let on = NodeMetrics {
            dwcp_kill_switch: Some(true),
            ..NodeMetrics::default()
        };
        let text = metrics.encode(&on);
        assert!(text.contains("novacron_dwcp_kill_switch 1\n"), "{text}");
        assert!(!text.contains("novacron_dwcp_feature_enabled{"), "{text}");
        let text = metrics.encode(&NodeMetrics::default());
        assert!(!text.contains("novacron_dwcp_kill_switch "), "{text}");
    }
}
