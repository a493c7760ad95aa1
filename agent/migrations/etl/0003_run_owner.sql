-- Which agent runs a DAG run, and when it last said it still does: several ETL agents can share
-- this database, and one starting up must fail only the runs whose agent is gone.
ALTER TABLE dag_runs ADD COLUMN owner VARCHAR(64);
ALTER TABLE dag_runs ADD COLUMN heartbeat_at BIGINT;
