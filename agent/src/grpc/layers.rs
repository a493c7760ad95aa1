//! Tower layers around every gRPC service: request metrics (outermost, so refused calls count
//! too) and the bearer-token check.

use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::{BoxFuture, Either, FutureExt, Ready, ready};
use tower::{Layer, Service};

use crate::auth::Guard;
use crate::metrics::Metrics;

/// Refuses calls without the agent's token with `Unauthenticated`.
#[derive(Clone)]
pub struct AuthLayer {
    guard: Guard,
}

impl AuthLayer {
    pub fn new(guard: Guard) -> Self {
        Self { guard }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            guard: self.guard.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    guard: Guard,
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
        match self.guard.check(request.headers()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(e) => Either::Right(ready(Ok(
                tonic::Status::unauthenticated(e.to_string()).into_http::<tonic::body::Body>()
            ))),
        }
    }
}

/// Counts calls by method and status and times them to their response headers.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    metrics: Metrics,
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
        let method = method_label(request.uri().path());
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

/// Known services keep their method path; anything else is one label, so a client probing
/// random paths cannot blow up the metric's cardinality.
fn method_label(path: &str) -> String {
    const KNOWN: [&str; 3] = ["/readmit.v1.", "/grpc.health.v1.", "/grpc.reflection."];
    if KNOWN.iter().any(|p| path.starts_with(p)) && path.len() < 128 {
        path.to_owned()
    } else {
        "other".to_owned()
    }
}
