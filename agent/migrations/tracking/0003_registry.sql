-- The model registry: named models, their numbered versions, stages and aliases.
CREATE TABLE registered_models (
    name              VARCHAR(250) PRIMARY KEY,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description       TEXT NOT NULL
);
CREATE TABLE registered_model_tags (
    name    VARCHAR(250) NOT NULL REFERENCES registered_models (name),
    tag_key VARCHAR(250) NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (name, tag_key)
);
CREATE TABLE model_versions (
    name              VARCHAR(250) NOT NULL REFERENCES registered_models (name),
    version           BIGINT NOT NULL,
    creation_time     BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL,
    description       TEXT NOT NULL,
    user_id           VARCHAR(256) NOT NULL,
    current_stage     VARCHAR(20) NOT NULL,
    source            TEXT NOT NULL,
    run_id            VARCHAR(32),
    model_id          VARCHAR(64),
    status            VARCHAR(20) NOT NULL,
    storage_location  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE model_version_tags (
    name    VARCHAR(250) NOT NULL,
    version BIGINT NOT NULL,
    tag_key VARCHAR(250) NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (name, version, tag_key)
);
CREATE TABLE registered_model_aliases (
    name    VARCHAR(250) NOT NULL REFERENCES registered_models (name),
    alias   VARCHAR(250) NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name, alias)
);
-- Every registry change, in order: what `WatchRegistry` streams to the inference role.
CREATE TABLE registry_events (
    seq        BIGINT PRIMARY KEY,
    ts         BIGINT NOT NULL,
    kind       VARCHAR(40) NOT NULL,
    name       VARCHAR(250) NOT NULL,
    version    BIGINT NOT NULL,
    from_stage VARCHAR(20) NOT NULL,
    alias      VARCHAR(250) NOT NULL
);
