//! Admin: the HTTP listener for probes and scrapes — `/livez`, `/readyz`, `/metrics`.
//!
//! `/readyz` is ready only when every worker's consumer has its assignment from the group (an empty one
//! too: a standby instance is ready), the producer reaches a broker and no
//! partition's outputs are waiting out an outage (`stalled_partitions`); its
//! body also names the components whose last reload failed (`failed_reloads=feed:watch`), which keep
//! serving their previous version;
//! `/livez` fails when the polling thread has not gone round its loop for `STALL_SECONDS`.
//!
//! The listener runs on a thread and single-threaded runtime of its own, so a slow or hostile client
//! can never take time from the runtime that awaits delivery reports. Each connection serves one
//! request (no keep-alive), must send its headers within `admin.header_timeout` and finish within
//! `admin.request_timeout`; at most `admin.max_connections` are open at once, and when that many are,
//! a new connection closes the oldest (a probe or a scrape takes milliseconds, so the oldest is almost
//! always a client that stalls): a flood of half-sent requests cannot lock the probes out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::config::AdminSettings;
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
    let assigned = state.health.joined();
    let partitions = state.health.assigned();
    let reachable = state.health.producer_reachable.load(std::sync::atomic::Ordering::Relaxed);
    let failing = state.health.failing_reloads();
    let stalled = state.health.stalled_deliveries.load(std::sync::atomic::Ordering::Relaxed);
    let body = format!(
        "assigned={assigned} partitions={partitions} producer_reachable={reachable} stalled_partitions={stalled} failed_reloads={failing}\n"
    );
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

/// The running listener.
pub struct Admin {
    pub local_addr: SocketAddr,
    stop: CancellationToken,
    thread: std::thread::JoinHandle<()>,
}

impl Admin {
    /// Stops accepting, cuts open connections and joins the listener's thread.
    pub fn shutdown(self) {
        self.stop.cancel();
        if self.thread.join().is_err() {
            tracing::error!("the admin listener's thread panicked");
        }
    }
}

/// The open connections, oldest first, each with the token that closes it.
#[derive(Default)]
struct Open {
    next_id: u64,
    connections: VecDeque<(u64, CancellationToken)>,
}

/// Binds the listener (so a bad address fails start-up) and serves on its own thread until
/// [`Admin::shutdown`].
pub fn spawn(settings: &AdminSettings, metrics: Metrics, health: Arc<Health>) -> std::io::Result<Admin> {
    let listener = std::net::TcpListener::bind(settings.listen)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let stop = CancellationToken::new();
    let (limits, serve_stop) = (settings.clone(), stop.clone());
    let thread = std::thread::Builder::new().name("gatewatch-admin".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, limits, metrics, health, serve_stop).await,
                Err(error) => tracing::error!(%error, "admin listener failed"),
            }
        });
    })?;
    tracing::info!(addr = %local_addr, "admin listener up");
    Ok(Admin { local_addr, stop, thread })
}

async fn serve(
    listener: tokio::net::TcpListener,
    limits: AdminSettings,
    metrics: Metrics,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let app = router(metrics.clone(), health);
    let open = Arc::new(Mutex::new(Open::default()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "admin listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (id, closed) = {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            while open.connections.len() >= limits.max_connections {
                if let Some((_, oldest)) = open.connections.pop_front() {
                    oldest.cancel();
                    metrics.admin_connections_closed.inc();
                }
            }
            open.next_id += 1;
            let token = stop.child_token();
            let id = open.next_id;
            open.connections.push_back((id, token.clone()));
            (id, token)
        };
        let (app, open, limits) = (app.clone(), open.clone(), limits.clone());
        tasks.spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = tokio::time::timeout(limits.request_timeout, connection) => {}
            }
            open.lock().unwrap_or_else(|p| p.into_inner()).connections.retain(|(other, _)| *other != id);
        });
        // Reap finished connections so the set stays as small as the open connections.
        while tasks.try_join_next().is_some() {}
    }
    tasks.shutdown().await;
}
