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

use crate::state::Shared;

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
    let mut routes = tonic::service::RoutesBuilder::default();
    let roles: Vec<RoleServices> = ROLES
        .iter()
        .filter_map(|add| add(&shared, &mut routes))
        .collect();
    // Services ready as soon as the listener is; the inference role's once its model loads.
    let served: Vec<&str> = std::iter::once("readmit.v1.Agent")
        .chain(
            roles
                .iter()
                .filter(|r| r.ready.is_none())
                .flat_map(|r| r.names.iter().copied()),
        )
        .collect();
    let advertised: Vec<&str> = std::iter::once("readmit.v1.Agent")
        .chain(roles.iter().flat_map(|r| r.names.iter().copied()))
        .collect();
    // v1 for current tools, v1alpha for grpcurl and Postman releases that still ask for it.
    let reflection_v1 = reflection(&advertised).build_v1()?;
    let reflection_v1alpha = reflection(&advertised).build_v1alpha()?;
    set_health(&health, &served, ServingStatus::Serving).await;
    for role in &roles {
        if let Some(ready) = &role.ready {
            // Set before the listener serves, so a probe never finds the service unknown.
            for service in &role.names {
                health
                    .set_service_status(*service, ServingStatus::NotServing)
                    .await;
            }
            follow_readiness(
                health.clone(),
                role.names.clone(),
                ready.clone(),
                shared.shutdown.clone(),
            );
        }
    }

    let router = Server::builder()
        .layer(layers)
        .add_routes(routes.routes())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(agent);
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

/// What one role serves over gRPC: the names of the services it added (for health and
/// reflection) and, for a role that is not ready at once, when it is.
struct RoleServices {
    names: Vec<&'static str>,
    ready: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Adds a role's services to the routes when this agent runs it.
type AddRole = fn(&Shared, &mut tonic::service::RoutesBuilder) -> Option<RoleServices>;

/// Every role's gRPC services: a new role is one more entry.
const ROLES: [AddRole; 4] = [
    |shared, routes| {
        let role = shared.roles.tracking.clone()?;
        routes.add_service(tracking::server(role, shared.shutdown.clone()));
        Some(RoleServices {
            names: vec!["readmit.v1.Tracking"],
            ready: None,
        })
    },
    |shared, routes| {
        let role = shared.roles.etl.clone()?;
        routes.add_service(etl::server(role, shared.shutdown.clone()));
        Some(RoleServices {
            names: vec!["readmit.v1.Etl"],
            ready: None,
        })
    },
    |shared, routes| {
        let role = shared.roles.inference.clone()?;
        let ready = role.ready_watch();
        routes
            .add_service(inference::server(role.clone()))
            .add_service(oip::server(role));
        Some(RoleServices {
            names: vec!["readmit.v1.Inference", readmit_proto::OIP_SERVICE_NAME],
            ready: Some(ready),
        })
    },
    |shared, routes| {
        let engine = shared.roles.loadtest.clone()?;
        routes.add_service(loadtest::server(engine, shared.shutdown.clone()));
        Some(RoleServices {
            names: vec!["readmit.v1.LoadTest"],
            ready: None,
        })
    },
];

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

/// A role's services are `NOT_SERVING` until the role is ready (the inference role: once it
/// has a model), then `SERVING`.
fn follow_readiness(
    health: HealthReporter,
    services: Vec<&'static str>,
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
            for service in &services {
                health.set_service_status(*service, status).await;
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
