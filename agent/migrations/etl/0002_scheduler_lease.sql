-- Only one ETL agent schedules: the one holding this lease, renewed every scheduler tick.
CREATE TABLE scheduler_lease (
    id         SMALLINT PRIMARY KEY,
    holder     VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO scheduler_lease (id, holder, expires_at) VALUES (1, '', 0);
