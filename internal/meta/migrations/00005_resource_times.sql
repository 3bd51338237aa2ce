-- +goose Up
-- Times index resources by a moment they carry, so the engine's time-driven
-- lookups are range queries on an index instead of scans of every body:
-- backup schedules due by now, recovery points expired by now, a vault's
-- jobs newest first, an instance's recovery points by time, the ad hoc
-- backups of the last day. A row is written in the same transaction as its
-- resource row and goes with it.
CREATE TABLE resource_times (
    id_key    TEXT   NOT NULL, -- lower(resource id), as in resources
    kind      TEXT   NOT NULL, -- what the time is, e.g. 'backupJob'
    owner_key TEXT   NOT NULL, -- lower(id) of what the times are grouped by ('' for none)
    at_ns     BIGINT NOT NULL, -- the time, Unix nanoseconds
    PRIMARY KEY (id_key, kind)
);
CREATE INDEX resource_times_by_owner ON resource_times (kind, owner_key, at_ns, id_key);
CREATE INDEX resource_times_by_time ON resource_times (kind, at_ns, id_key);

-- +goose Down
DROP TABLE resource_times;
