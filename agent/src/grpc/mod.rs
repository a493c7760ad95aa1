//! The gRPC transport: every role's service, gRPC health and reflection on one listener,
//! behind the metrics and token layers. Handlers convert and delegate; they hold no logic.

mod agent;
mod etl;
mod inference;
mod layers;
mod loadtest;
pub mod methods;
mod oip;
mod tracking;

use std::sync::Arc;

use readmit_proto::v1::agent_server::AgentServer;
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::server::Shared;

/// Largest message a server accepts; artifacts and uploads travel in smaller chunks.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves until `shared.shutdown` is cancelled, then drains the calls in flight.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) -> Result<(), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();

    let methods = methods::MethodTable::new();
    let layers = tower::ServiceBuilder::new()
        .layer(layers::MetricsLayer::new(
            shared.metrics.clone(),
            methods.clone(),
        ))
        .layer(layers::AuthLayer::new(shared.guard.clone(), methods))
        .into_inner();
    let agent = AgentServer::new(agent::AgentService::new(Arc::clone(&shared)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let tracking = shared
        .tracking
        .clone()
        .map(|t| tracking::server(t, shared.shutdown.clone()));
    let etl = shared
        .etl
        .clone()
        .map(|e| etl::server(e, shared.shutdown.clone()));
    let inference = shared.inference.clone().map(inference::server);
    let oip = shared.inference.clone().map(oip::server);
    let loadtest = shared
        .loadtest
        .clone()
        .map(|t| loadtest::server(t, shared.shutdown.clone()));
    // Services ready as soon as the listener is; the inference role's once its model loads.
    let served: Vec<&str> = std::iter::once("readmit.v1.Agent")
        .chain(tracking.is_some().then_some("readmit.v1.Tracking"))
        .chain(etl.is_some().then_some("readmit.v1.Etl"))
        .chain(loadtest.is_some().then_some("readmit.v1.LoadTest"))
        .collect();
    let inference_services = [INFERENCE_SERVICE, readmit_proto::OIP_SERVICE_NAME];
    let advertised: Vec<&str> = served
        .iter()
        .copied()
        .chain(shared.inference.iter().flat_map(|_| inference_services))
        .collect();
    // v1 for current tools, v1alpha for grpcurl and Postman releases that still ask for it.
    let reflection_v1 = reflection(&advertised).build_v1()?;
    let reflection_v1alpha = reflection(&advertised).build_v1alpha()?;
    set_health(&health, &served, ServingStatus::Serving).await;
    if let Some(role) = &shared.inference {
        // Set before the listener serves, so a probe never finds the service unknown.
        for service in inference_services {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        follow_readiness(health.clone(), role.ready_watch(), shared.shutdown.clone());
    }

    let router = Server::builder()
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(agent)
        .add_optional_service(tracking)
        .add_optional_service(etl)
        .add_optional_service(inference)
        .add_optional_service(oip)
        .add_optional_service(loadtest);
    let shutdown = shared.shutdown.clone();
    let drained = async move {
        shutdown.cancelled().await;
        // Tell health watchers first, so balancers stop sending new calls.
        set_health(&health, &advertised, ServingStatus::NotServing).await;
    };
    match &shared.tls {
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, drained)
                .await?;
        }
        Some(tls) => {
            let accepted = crate::tls::accept(
                listener,
                Arc::clone(tls),
                crate::tls::Listener::Grpc,
                shared.shutdown.clone(),
            );
            let incoming = tokio_stream::wrappers::ReceiverStream::new(accepted)
                .map(|(stream, _peer)| Ok::<_, std::io::Error>(stream));
            router
                .serve_with_incoming_shutdown(incoming, drained)
                .await?;
        }
    }
    Ok(())
}

const INFERENCE_SERVICE: &str = "readmit.v1.Inference";

/// Reflection over every descriptor, advertising only the services this agent serves (and the
/// standard ones), so `grpcurl list` shows what answers.
fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(readmit_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection");
    for service in services {
        builder = builder.with_service_name(*service);
    }
    builder
}

/// The inference services are `NOT_SERVING` until the role has a model, then `SERVING`.
fn follow_readiness(
    health: HealthReporter,
    mut ready: tokio::sync::watch::Receiver<bool>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let status = if *ready.borrow_and_update() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in [INFERENCE_SERVICE, readmit_proto::OIP_SERVICE_NAME] {
                health.set_service_status(service, status).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = ready.changed() => if changed.is_err() { return },
            }
        }
    });
}

async fn set_health(health: &HealthReporter, services: &[&str], status: ServingStatus) {
    health.set_service_status("", status).await;
    for service in services {
        health.set_service_status(*service, status).await;
    }
}
