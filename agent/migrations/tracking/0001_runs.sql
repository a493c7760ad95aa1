-- Experiments, runs and what runs log: the MLflow tracking model.
CREATE TABLE experiments (
    experiment_id     BIGINT PRIMARY KEY,
    name              VARCHAR(500) NOT NULL UNIQUE,
    artifact_location TEXT NOT NULL,
    lifecycle_stage   VARCHAR(20) NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_update_time  BIGINT NOT NULL
);
CREATE TABLE experiment_tags (
    experiment_id BIGINT NOT NULL REFERENCES experiments (experiment_id),
    tag_key       VARCHAR(250) NOT NULL,
    value         TEXT NOT NULL,
    PRIMARY KEY (experiment_id, tag_key)
);
CREATE TABLE runs (
    run_id          VARCHAR(32) PRIMARY KEY,
    experiment_id   BIGINT NOT NULL REFERENCES experiments (experiment_id),
    run_name        VARCHAR(250) NOT NULL,
    user_id         VARCHAR(256) NOT NULL,
    status          VARCHAR(20) NOT NULL,
    start_time      BIGINT NOT NULL,
    end_time        BIGINT,
    lifecycle_stage VARCHAR(20) NOT NULL,
    artifact_uri    TEXT NOT NULL,
    deleted_time    BIGINT
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, lifecycle_stage, start_time);
CREATE TABLE params (
    run_id    VARCHAR(32) NOT NULL REFERENCES runs (run_id),
    param_key VARCHAR(250) NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (run_id, param_key)
);
CREATE TABLE tags (
    run_id  VARCHAR(32) NOT NULL REFERENCES runs (run_id),
    tag_key VARCHAR(250) NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (run_id, tag_key)
);
-- Every logged value; an identical entry logged twice is kept once.
CREATE TABLE metrics (
    run_id     VARCHAR(32) NOT NULL REFERENCES runs (run_id),
    metric_key VARCHAR(250) NOT NULL,
    step       BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    value      DOUBLE PRECISION NOT NULL,
    is_nan     SMALLINT NOT NULL,
    PRIMARY KEY (run_id, metric_key, step, ts, value, is_nan)
);
-- The value search and order-by see: the one with the highest (step, timestamp, value).
CREATE TABLE latest_metrics (
    run_id     VARCHAR(32) NOT NULL REFERENCES runs (run_id),
    metric_key VARCHAR(250) NOT NULL,
    step       BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    value      DOUBLE PRECISION NOT NULL,
    is_nan     SMALLINT NOT NULL,
    PRIMARY KEY (run_id, metric_key)
);
CREATE INDEX latest_metrics_by_key ON latest_metrics (metric_key, value);
