//! Admin: the HTTP listener for probes and scrapes — `/livez`, `/readyz`, `/metrics`.
//!
//! `/readyz` is ready only when the consumer holds an assignment and the producer reaches a broker;
//! `/livez` fails when the polling thread has not gone round its loop for `STALL_SECONDS`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::source::Health;

/// A polling thread silent for this long is stuck (a poll returns every 100 ms; back-pressure waits
/// are bounded by the delivery timeout).
pub const STALL_SECONDS: u64 = 300;

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    health: Arc<Health>,
}

async fn livez(State(state): State<AdminState>) -> impl IntoResponse {
    if state.health.since_last_poll() < STALL_SECONDS {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "polling thread stalled\n")
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let assigned = state.health.assigned.load(std::sync::atomic::Ordering::Relaxed);
    let reachable = state.health.producer_reachable.load(std::sync::atomic::Ordering::Relaxed);
    let body = format!("assigned={assigned} producer_reachable={reachable}\n");
    let status = if state.health.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body)
}

async fn render_metrics(State(state): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}

pub fn router(metrics: Metrics, health: Arc<Health>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { metrics, health })
}

/// Binds the listener (so a bad address fails start-up) and serves until `stop` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    health: Arc<Health>,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "admin listener up");
    let app = router(metrics, health);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        if let Err(error) = served {
            tracing::error!(%error, "admin listener failed");
        }
    }))
}
