//! `/openapi.json`: the HTTP API this agent serves, generated from the handlers' annotations and
//! reply types (utoipa) for the roles it runs. The tracking role's MLflow REST API
//! (`/api/2.0/mlflow/...`, `/ajax-api/...`, artifacts) is left out on purpose: MLflow documents
//! it itself (<https://mlflow.org/docs/latest/api_reference/rest-api.html>), and readmit
//! speaks it unchanged.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};

use crate::state::Shared;

/// The agent's own routes, whatever roles it runs.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "readmit-agent",
        description = "The HTTP API of one readmit agent: its probes and metrics, and the routes \
                       of the roles it runs. The tracking role's MLflow REST API is not \
                       described here: MLflow documents it, and readmit speaks it unchanged."
    ),
    paths(super::healthz, super::readyz, super::metrics, super::openapi_json),
    tags((name = "agent", description = "Probes, metrics and this document"))
)]
struct AgentApi;

/// The name of the bearer-token security scheme.
const TOKEN: &str = "token";

/// The document for `shared`'s roles. With tokens set, every operation needs one but the probes
/// (and `/metrics`, unless `metrics_auth`), as `require_token` enforces.
pub(super) fn document(shared: &Shared) -> utoipa::openapi::OpenApi {
    let mut api = AgentApi::openapi();
    api.info.version = crate::VERSION.to_owned();
    if shared.roles.inference.is_some() {
        api.merge(super::inference::api());
    }
    if shared.guard.required() {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A named token; `read` scope for reads and predictions, `admin` for \
                         every change",
                    ))
                    .build(),
            ),
        );
        for (path, item) in &mut api.paths.paths {
            let open = super::PROBES.contains(&path.as_str())
                || (path == "/metrics" && !shared.settings.metrics_auth);
            let security = if open {
                Vec::new()
            } else {
                vec![SecurityRequirement::new(TOKEN, Vec::<String>::new())]
            };
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                operation.security = Some(security.clone());
            }
        }
    }
    api
}
