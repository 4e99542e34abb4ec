//! `/metrics` of every service, in the Prometheus text format
//! (OpenMetrics), behind the scope `metrics:read`: what every service
//! counts alike (HTTP requests by route, method and status, and their
//! latency), and what each registers of its own.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::auth::{Authorized, TokenVerifier, scopes::MetricsRead};

/// The path metrics are read at.
pub const METRICS_PATH: &str = "/metrics";

/// The content type of the text format `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds, from 1 ms to about 33 s, doubling: request and claim latency.
pub fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// What a service reads afresh into its gauges before `/metrics` answers
/// (counts kept in its database, say).
pub type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A histogram family whose members are made by a plain function.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route's pattern (`/builds/{id}`), never the path itself, so
    /// that ids do not make a series each; `unmatched` for 404s.
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

/// A service's metrics: its registry, read at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
}

impl Metrics {
    /// The metrics every service has, and those `register` adds (names
    /// are prefixed `ick_`).
    pub fn new(register: impl FnOnce(&mut Registry)) -> Metrics {
        let mut registry = Registry::with_prefix("ick");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = HistogramFamily::<RouteLabels>::new_with_constructor(latency_buckets);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to its headers), by route and method",
            latency.clone(),
        );
        register(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
        }
    }

    /// The text of every metric, as `/metrics` answers it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// `router` (finished, with its fallback, so that 404s are counted
    /// too) with its requests counted and `GET /metrics` (scope
    /// `metrics:read`, checked by `verifier`).
    pub fn around(&self, router: Router, verifier: TokenVerifier) -> Router {
        self.around_refreshing(router, verifier, Arc::new(|| Box::pin(async {})))
    }

    /// The same, with `refresh` run before each read.
    pub fn around_refreshing(
        &self,
        router: Router,
        verifier: TokenVerifier,
        refresh: Refresh,
    ) -> Router {
        let read = Router::new()
            .route(METRICS_PATH, get(read))
            .with_state(Reader {
                metrics: self.clone(),
                verifier,
                refresh,
            });
        router
            .merge(read)
            .layer(middleware::from_fn_with_state(self.clone(), count))
    }

    /// `GET /metrics` alone, without a token, with `refresh` run before
    /// each read: for an address of its own that only the monitoring
    /// network reaches (a worker-manager's `metrics.listen`).
    pub fn open_router(&self, refresh: Refresh) -> Router {
        let metrics = self.clone();
        Router::new().route(
            METRICS_PATH,
            get(move || {
                let (metrics, refresh) = (metrics.clone(), refresh.clone());
                async move {
                    refresh().await;
                    metrics.answer()
                }
            }),
        )
    }

    fn answer(&self) -> Response {
        let mut response = self.encode().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
        response
    }
}

#[derive(Clone)]
struct Reader {
    metrics: Metrics,
    verifier: TokenVerifier,
    refresh: Refresh,
}

impl FromRef<Reader> for TokenVerifier {
    fn from_ref(reader: &Reader) -> TokenVerifier {
        reader.verifier.clone()
    }
}

async fn read(_: Authorized<MetricsRead>, State(reader): State<Reader>) -> Response {
    (reader.refresh)().await;
    reader.metrics.answer()
}

async fn count(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    // Only the methods Ick serves get a series of their own.
    let method = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE => request.method().as_str().to_string(),
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RouteLabels { route, method };
    metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: labels.route,
            method: labels.method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
