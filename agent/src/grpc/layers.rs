//! Tower layers around every gRPC service: request metrics (outermost, so refused calls count
//! too) and the bearer-token check, each method needing the scope the method table gives it.

use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{BoxFuture, Either, FutureExt, Ready, ready};
use tower::{Layer, Service};

use super::methods::MethodTable;
use crate::auth::{AuthError, Guard};
use crate::metrics::Metrics;

/// Refuses calls without a valid token with `Unauthenticated`, and calls beyond the token's
/// scope with `PermissionDenied`.
#[derive(Clone)]
pub struct AuthLayer {
    guard: Guard,
    methods: MethodTable,
}

impl AuthLayer {
    pub fn new(guard: Guard, methods: MethodTable) -> Self {
        Self { guard, methods }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            guard: self.guard.clone(),
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    guard: Guard,
    methods: MethodTable,
}

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let need = self.methods.scope(request.uri().path());
        match self.guard.check(request.headers(), need) {
            Ok(_) => Either::Left(self.inner.call(request)),
            Err(e) => {
                let status = match e {
                    AuthError::Missing | AuthError::Invalid => {
                        tonic::Status::unauthenticated(e.to_string())
                    }
                    AuthError::Forbidden { .. } => tonic::Status::permission_denied(e.to_string()),
                };
                Either::Right(ready(Ok(status.into_http::<tonic::body::Body>())))
            }
        }
    }
}

/// Counts calls by method and status and times them to their response headers.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
    methods: MethodTable,
}

impl MetricsLayer {
    pub fn new(metrics: Metrics, methods: MethodTable) -> Self {
        Self { metrics, methods }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            metrics: self.metrics.clone(),
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    metrics: Metrics,
    methods: MethodTable,
}

impl<S, B, R> Service<http::Request<B>> for Observed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = self.methods.label(request.uri().path());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        self.inner
            .call(request)
            .map(move |result| {
                // A handler's error travels in the headers of a trailers-only response; a
                // success, and an error raised mid-stream, in the trailers, which this layer
                // does not wait for.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes())),
                    Err(_) => tonic::Code::Unavailable,
                };
                metrics.observe_grpc(
                    &method,
                    &format!("{code:?}"),
                    started.elapsed().as_secs_f64(),
                );
                result
            })
            .boxed()
    }
}
