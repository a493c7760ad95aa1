-- The DAG runner's state: whether a DAG is paused, its runs, their task instances and logs.
CREATE TABLE dag_state (
    dag               VARCHAR(250) PRIMARY KEY,
    paused            SMALLINT NOT NULL,
    last_scheduled_at BIGINT
);
CREATE TABLE dag_runs (
    run_id       VARCHAR(64) PRIMARY KEY,
    dag          VARCHAR(250) NOT NULL,
    state        VARCHAR(20) NOT NULL,
    trigger_kind VARCHAR(20) NOT NULL,
    params       TEXT NOT NULL,
    queued_at    BIGINT NOT NULL,
    started_at   BIGINT,
    ended_at     BIGINT,
    error        TEXT
);
CREATE INDEX dag_runs_by_dag ON dag_runs (dag, queued_at);
CREATE INDEX dag_runs_by_state ON dag_runs (state);
CREATE TABLE task_instances (
    run_id       VARCHAR(64) NOT NULL REFERENCES dag_runs (run_id),
    task_id      VARCHAR(250) NOT NULL,
    position     BIGINT NOT NULL,
    kind         VARCHAR(100) NOT NULL,
    state        VARCHAR(20) NOT NULL,
    attempt      BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    started_at   BIGINT,
    ended_at     BIGINT,
    error        TEXT,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE task_logs (
    run_id  VARCHAR(64) NOT NULL REFERENCES dag_runs (run_id),
    seq     BIGINT NOT NULL,
    ts      BIGINT NOT NULL,
    task_id VARCHAR(250) NOT NULL,
    attempt BIGINT NOT NULL,
    level   VARCHAR(10) NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
