//! The HTTP transport: probes and Prometheus metrics now, the roles' HTTP APIs as they land.
//! Every mutating request needs the agent's token; reads are open so probes and scrapers work.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde_json::json;
use tokio::net::TcpListener;

use crate::server::Shared;

mod api_error;
mod artifacts;
mod mlflow;
mod wire;

pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if let Some(tracking) = &shared.tracking {
        router = router.merge(mlflow::router(tracking.clone()));
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), observe))
        .with_state(shared)
}

/// Serves until `shared.shutdown` is cancelled, then drains the requests in flight.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) -> std::io::Result<()> {
    let shutdown = shared.shutdown.clone();
    // axum leaves Nagle's algorithm on, which stalls keep-alive responses by ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let roles: Vec<&str> = shared.settings.roles.iter().map(|r| r.name()).collect();
    if shared.is_ready() {
        axum::Json(json!({"status": "ready", "roles": roles})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "roles": roles})),
        )
            .into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared
        .metrics
        .render(&shared.latest_sample(), shared.uptime_s());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "ENDPOINT_NOT_FOUND",
        &format!("no route for {method} {}", uri.path()),
    )
}

/// An error body in the shape MLflow's clients expect from every readmit HTTP API.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if is_mutating(request.method())
        && let Err(e) = shared.guard.check(request.headers())
    {
        let mut response =
            error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &e.to_string());
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    shared.metrics.observe_http(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
