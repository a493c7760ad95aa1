//! MLflow's tracking REST API (`/api/2.0/mlflow/...`) over the tracking store, so the real
//! `mlflow` client works against an agent unchanged. Handlers (one file per group) parse,
//! delegate and render in MLflow's JSON (`json`). The router is built from one table of
//! routes, which `routes` also reports, so every route can be walked by a test.

mod experiments;
mod json;
mod logged_models;
mod registry;
mod runs;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::tracking::{Tracking, TrackingStore};

/// Where MLflow's clients find the API.
const API: &str = "/api/2.0/mlflow";
/// Where MLflow's web UI finds the same API.
const AJAX_API: &str = "/ajax-api/2.0/mlflow";

impl axum::extract::FromRef<Tracking> for TrackingStore {
    fn from_ref(tracking: &Tracking) -> Self {
        tracking.store.clone()
    }
}

/// One route below the API prefix: its method, its path pattern and its handler.
type Route = (Method, &'static str, MethodRouter<Tracking>);

/// Writes the table of routes: the method names both the route's `Method` and the filter its
/// handler answers, so the two cannot disagree.
macro_rules! table {
    ($($method:ident $path:literal => $handler:expr;)*) => {
        /// Every route of the API below its prefix.
        fn table() -> Vec<Route> {
            vec![$((Method::$method, $path, on(MethodFilter::$method, $handler)),)*]
        }
    };
}

table! {
    POST "/experiments/create" => experiments::create_experiment;
    GET "/experiments/get" => experiments::get_experiment;
    GET "/experiments/get-by-name" => experiments::get_experiment_by_name;
    GET "/experiments/search" => experiments::search_experiments;
    POST "/experiments/search" => experiments::search_experiments;
    POST "/experiments/delete" => experiments::delete_experiment;
    POST "/experiments/restore" => experiments::restore_experiment;
    POST "/experiments/update" => experiments::update_experiment;
    POST "/experiments/set-experiment-tag" => experiments::set_experiment_tag;
    POST "/runs/create" => runs::create_run;
    GET "/runs/get" => runs::get_run;
    POST "/runs/update" => runs::update_run;
    POST "/runs/delete" => runs::delete_run;
    POST "/runs/restore" => runs::restore_run;
    POST "/runs/log-metric" => runs::log_metric;
    POST "/runs/log-parameter" => runs::log_param;
    POST "/runs/set-tag" => runs::set_tag;
    POST "/runs/delete-tag" => runs::delete_tag;
    POST "/runs/log-batch" => runs::log_batch;
    GET "/runs/search" => runs::search_runs;
    POST "/runs/search" => runs::search_runs;
    GET "/metrics/get-history" => runs::metric_history;
    POST "/runs/outputs" => logged_models::log_outputs;
    POST "/logged-models" => logged_models::create_logged_model;
    POST "/logged-models/search" => logged_models::search_logged_models;
    GET "/logged-models/{model_id}" => logged_models::get_logged_model;
    PATCH "/logged-models/{model_id}" => logged_models::finalize_logged_model;
    DELETE "/logged-models/{model_id}" => logged_models::delete_logged_model;
    PATCH "/logged-models/{model_id}/tags" => logged_models::set_logged_model_tags;
    DELETE "/logged-models/{model_id}/tags/{key}" => logged_models::delete_logged_model_tag;
    POST "/logged-models/{model_id}/params" => logged_models::log_logged_model_params;
    POST "/registered-models/create" => registry::create_registered_model;
    GET "/registered-models/get" => registry::get_registered_model;
    POST "/registered-models/rename" => registry::rename_registered_model;
    PATCH "/registered-models/update" => registry::update_registered_model;
    DELETE "/registered-models/delete" => registry::delete_registered_model;
    GET "/registered-models/search" => registry::search_registered_models;
    GET "/registered-models/get-latest-versions" => registry::latest_versions;
    POST "/registered-models/get-latest-versions" => registry::latest_versions;
    POST "/registered-models/set-tag" => registry::set_registered_model_tag;
    DELETE "/registered-models/delete-tag" => registry::delete_registered_model_tag;
    GET "/registered-models/alias" => registry::get_by_alias;
    POST "/registered-models/alias" => registry::set_alias;
    DELETE "/registered-models/alias" => registry::delete_alias;
    POST "/model-versions/create" => registry::create_model_version;
    GET "/model-versions/get" => registry::get_model_version;
    PATCH "/model-versions/update" => registry::update_model_version;
    DELETE "/model-versions/delete" => registry::delete_model_version;
    GET "/model-versions/search" => registry::search_model_versions;
    GET "/model-versions/get-download-uri" => registry::download_uri;
    POST "/model-versions/transition-stage" => registry::transition_stage;
    POST "/model-versions/set-tag" => registry::set_model_version_tag;
    DELETE "/model-versions/delete-tag" => registry::delete_model_version_tag;
}

/// The API under both prefixes MLflow serves, and the artifact API beside it.
pub fn router<S: Clone + Send + Sync + 'static>(tracking: Tracking) -> Router<S> {
    // Routes on one path merge into one method router (axum panics if two claim a method).
    let api = table()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .with_state(tracking.clone());
    Router::new()
        .nest(API, api.clone())
        .nest(AJAX_API, api)
        .merge(super::artifacts::router(tracking))
}

/// Every route `router` serves, as (method, full path pattern). Patterns name their
/// parameters in braces: `{model_id}`, and `{*path}` for the rest of the path.
// Only tests walk the routes so far; the router itself is built from `table`.
#[cfg(test)]
pub(crate) fn routes() -> Vec<(Method, String)> {
    let mut routes: Vec<(Method, String)> = [API, AJAX_API]
        .into_iter()
        .flat_map(|prefix| {
            table()
                .into_iter()
                .map(move |(method, path, _)| (method, format!("{prefix}{path}")))
        })
        .collect();
    routes.extend(super::artifacts::routes());
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_lists_each_route_once() {
        let routes = routes();
        let mut unique: Vec<String> = routes.iter().map(|(m, p)| format!("{m} {p}")).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            routes.len(),
            "a (method, path) pair is listed twice"
        );
        for wanted in [
            "GET /api/2.0/mlflow/registered-models/alias",
            "POST /ajax-api/2.0/mlflow/runs/log-batch",
            "PUT /api/2.0/mlflow-artifacts/artifacts/{*path}",
        ] {
            assert!(unique.iter().any(|r| r == wanted), "{wanted} is missing");
        }
        assert_eq!(
            table().len() * 2 + super::super::artifacts::routes().len(),
            routes.len()
        );
    }
}
