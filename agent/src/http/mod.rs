//! The HTTP transport: probes, Prometheus metrics and the roles' HTTP APIs. With tokens set,
//! every route but the probes (and `/metrics`, unless `metrics_auth`) needs one: `read` for
//! reads, `admin` for every mutation.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::auth::{AuthError, Scope};
use crate::state::Shared;

mod api_error;
mod artifacts;
mod inference;
mod mlflow;
mod openapi;
mod wire;

/// A role's HTTP routes, when this agent runs it.
type RoleRoutes = fn(&Shared) -> Option<Router<Arc<Shared>>>;

/// Every role's HTTP routes: a new role is one more entry.
const ROLE_ROUTES: [RoleRoutes; 2] = [
    |shared| shared.roles.tracking.clone().map(mlflow::router),
    |shared| shared.roles.inference.clone().map(inference::router),
];

pub fn router(shared: Arc<Shared>) -> Router {
    // The roles are fixed at start-up, so the document is rendered once.
    let document = match openapi::document(&shared).to_json() {
        Ok(json) => OpenApiJson(Arc::from(json)),
        Err(e) => {
            tracing::error!(error = %e, "cannot render /openapi.json");
            OpenApiJson(Arc::from(
                serde_json::json!({"error_code": "INTERNAL_ERROR", "message": e.to_string()})
                    .to_string(),
            ))
        }
    };
    let mut router: Router<Arc<Shared>> = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(openapi_json).layer(axum::Extension(document)),
        );
    for routes in ROLE_ROUTES {
        if let Some(routes) = routes(&shared) {
            router = router.merge(routes);
        }
    }
    router
        .fallback(not_found)
        .layer(axum::Extension(ArtifactLimit(
            shared.settings.max_artifact_bytes,
        )))
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
    if let Some(tls) = &shared.tls {
        let local = listener.local_addr()?;
        let accepted = crate::tls::accept(
            listener,
            Arc::clone(tls),
            crate::tls::Listener::Http,
            shutdown.clone(),
        );
        return axum::serve(
            crate::tls::HttpListener::new(accepted, local),
            router(shared),
        )
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    }
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

/// `/openapi.json`'s body, rendered when the router is built.
#[derive(Clone)]
struct OpenApiJson(Arc<str>);

/// The OpenAPI 3.1 document of the routes this agent serves (see `openapi`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "agent",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json",
        body = Object))
)]
async fn openapi_json(axum::Extension(document): axum::Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.0.to_string(),
    )
        .into_response()
}

/// The agent's liveness.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The agent's readiness and the roles it runs.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Readiness<'a> {
    /// `ready` or `not ready`.
    status: &'static str,
    roles: Vec<&'a str>,
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "agent",
    responses((status = 200, body = Health))
)]
async fn healthz() -> Response {
    axum::Json(Health { status: "ok" }).into_response()
}

/// `?role=inference` asks whether that role is ready too (an inference role is not until its
/// model is loaded), for a probe of a pod that runs one role.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReadyQuery {
    /// A role this agent runs (`etl`, `tracking` or `inference`) that must be ready too.
    role: Option<String>,
}

/// Readiness: the agent, and with `role` that role too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "agent",
    params(ReadyQuery),
    responses(
        (status = 200, body = Readiness),
        (status = 400, description = "Not a role name", body = MlflowError),
        (status = 404, description = "A role this agent does not run", body = MlflowError),
        (status = 503, description = "Not ready yet", body = Readiness),
    )
)]
async fn readyz(
    State(shared): State<Arc<Shared>>,
    query: Result<axum::extract::Query<ReadyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let roles: Vec<&str> = shared.settings.roles.iter().map(|r| r.name()).collect();
    let role = match query.map(|q| q.0.role) {
        Ok(None) => None,
        Ok(Some(name)) => match name.parse::<crate::Role>() {
            Ok(role) if shared.settings.roles.contains(&role) => Some(role),
            Ok(role) => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "RESOURCE_DOES_NOT_EXIST",
                    &format!(
                        "this agent does not run the {role} role (it runs {})",
                        roles.join(", ")
                    ),
                );
            }
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    &e.to_string(),
                );
            }
        },
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                &e.body_text(),
            );
        }
    };
    let role_ready = match role {
        Some(crate::Role::Inference) => shared
            .roles
            .inference
            .as_ref()
            .is_some_and(|i| i.is_ready()),
        _ => true,
    };
    if shared.is_ready() && role_ready {
        axum::Json(Readiness {
            status: "ready",
            roles,
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Readiness {
                status: "not ready",
                roles,
            }),
        )
            .into_response()
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "agent",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4"))
)]
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

/// MLflow's error body, which readmit's agent routes and the scoring protocol answer with.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct MlflowError<'a> {
    /// MLflow's error code, e.g. `INVALID_PARAMETER_VALUE`.
    error_code: &'a str,
    message: String,
}

/// An error body in the shape MLflow's clients expect from every readmit HTTP API.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(MlflowError {
            error_code: code,
            message: message.to_owned(),
        }),
    )
        .into_response()
}

/// The largest artifact an HTTP PUT may carry (the `max_artifact_bytes` setting), handed to the
/// upload handler as a request extension.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactLimit(pub u64);

/// Routes that answer without a token: the probes that orchestrators call unauthenticated.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// MLflow's searches travel as POSTs but change nothing: a `read` token may call them.
const READ_POSTS: [&str; 8] = [
    "/api/2.0/mlflow/runs/search",
    "/ajax-api/2.0/mlflow/runs/search",
    "/api/2.0/mlflow/logged-models/search",
    "/ajax-api/2.0/mlflow/logged-models/search",
    // Predictions change nothing but metrics: any valid token may ask for them.
    "/predict",
    "/invocations",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
];

/// The scope a request needs: none for the probes (and `/metrics` unless `metrics_auth`),
/// `read` for GET and HEAD and the read-only POSTs, `admin` for every other request, routes
/// that do not exist included.
fn needed_scope(route: Option<&str>, method: &Method, metrics_auth: bool) -> Option<Scope> {
    match route {
        Some(r) if PROBES.contains(&r) => None,
        Some("/metrics") if !metrics_auth => None,
        _ if matches!(*method, Method::GET | Method::HEAD) => Some(Scope::Read),
        Some(r) if *method == Method::POST && READ_POSTS.contains(&r) => Some(Scope::Read),
        _ => Some(Scope::Admin),
    }
}

async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let Some(need) = needed_scope(route, request.method(), shared.settings.metrics_auth) else {
        return next.run(request).await;
    };
    match shared.guard.check(request.headers(), need) {
        Ok(_) => next.run(request).await,
        Err(e @ AuthError::Forbidden { .. }) => {
            error_response(StatusCode::FORBIDDEN, "PERMISSION_DENIED", &e.to_string())
        }
        Err(e) => {
            let mut response =
                error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &e.to_string());
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// A request method as a metric label: the standard ones by name, anything else `other`, so
/// invented methods cannot add series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    // Route templates only (`/logged-models/{model_id}`), never the path a client sent.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    shared.metrics.observe_http(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A concrete path for a route pattern: every parameter filled with a plausible value.
    fn concrete(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|segment| match segment {
                s if s.starts_with("{*") => "dir/file.txt".to_owned(),
                s if s.starts_with('{') => "x1".to_owned(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Walks every route the router has — MLflow's table, the artifact API, the inference
    /// role's — without a token: each must answer 401, so a route added later cannot be left
    /// open by forgetting it here.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_route_but_the_probes_needs_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::settings::RawSettings {
            token: Some("s3cret-walk".into()),
            ..crate::settings::RawSettings::loopback(dir.path(), &crate::Role::ALL)
        }
        .validate()
        .unwrap();
        let agent = crate::RunningAgent::start(settings).await.unwrap();
        let http = reqwest::Client::new();
        let inference = [
            (Method::POST, "/predict"),
            (Method::GET, "/model-info"),
            (Method::POST, "/invocations"),
            (Method::GET, "/ping"),
            (Method::GET, "/health"),
            (Method::GET, "/version"),
            (Method::GET, "/v2"),
            (Method::GET, "/v2/health/live"),
            (Method::GET, "/v2/health/ready"),
            (Method::GET, "/v2/models/{name}"),
            (Method::GET, "/v2/models/{name}/versions/{version}"),
            (Method::GET, "/v2/models/{name}/ready"),
            (Method::GET, "/v2/models/{name}/versions/{version}/ready"),
            (Method::POST, "/v2/models/{name}/infer"),
            (Method::POST, "/v2/models/{name}/versions/{version}/infer"),
        ]
        .map(|(m, p)| (m, p.to_owned()));
        let routes: Vec<(Method, String)> = mlflow::routes().into_iter().chain(inference).collect();
        assert!(routes.len() > 100, "{} routes", routes.len());
        for (method, pattern) in &routes {
            let url = format!("{}{}", agent.http_url(), concrete(pattern));
            let response = http.request(method.clone(), &url).send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {pattern} answered without a token"
            );
        }
        for probe in PROBES {
            let response = http
                .get(format!("{}{probe}", agent.http_url()))
                .send()
                .await
                .unwrap();
            assert_ne!(response.status(), StatusCode::UNAUTHORIZED, "{probe}");
        }
        agent.stop().await.unwrap();
    }
}
