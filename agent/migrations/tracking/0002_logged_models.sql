-- MLflow 3's logged models: a model's files live under its own artifact directory, and runs
-- point at the models they produced.
CREATE TABLE logged_models (
    model_id          VARCHAR(64) PRIMARY KEY,
    experiment_id     BIGINT NOT NULL REFERENCES experiments (experiment_id),
    name              VARCHAR(500) NOT NULL,
    artifact_location TEXT NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    model_type        VARCHAR(500),
    source_run_id     VARCHAR(32),
    status            VARCHAR(40) NOT NULL,
    status_message    TEXT,
    lifecycle_stage   VARCHAR(20) NOT NULL
);
CREATE INDEX logged_models_by_experiment ON logged_models (experiment_id, lifecycle_stage, creation_time);
CREATE TABLE logged_model_params (
    model_id  VARCHAR(64) NOT NULL REFERENCES logged_models (model_id),
    param_key VARCHAR(250) NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (model_id, param_key)
);
CREATE TABLE logged_model_tags (
    model_id VARCHAR(64) NOT NULL REFERENCES logged_models (model_id),
    tag_key  VARCHAR(250) NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (model_id, tag_key)
);
CREATE TABLE run_outputs (
    run_id   VARCHAR(32) NOT NULL REFERENCES runs (run_id),
    model_id VARCHAR(64) NOT NULL REFERENCES logged_models (model_id),
    step     BIGINT NOT NULL,
    PRIMARY KEY (run_id, model_id)
);
