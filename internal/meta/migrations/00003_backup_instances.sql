-- +goose Up
-- An index of backup instances by the datasource they protect and by vault,
-- so "is this disk protected already" and "which instances use this policy"
-- are indexed queries, not scans of every instance's JSON. The instance
-- itself is a row in resources; this row is written and deleted in the same
-- transaction. Instances stored before this table existed are indexed by the
-- server at start-up (backup.Service.Reindex): reading a JSON field takes
-- different SQL on SQLite and PostgreSQL, and a migration is one script for
-- both.
CREATE TABLE backup_instances (
    id_key         TEXT NOT NULL PRIMARY KEY, -- lower(instance id), as in resources
    vault_key      TEXT NOT NULL,             -- lower(vault id)
    datasource_key TEXT NOT NULL,             -- lower(protected disk id), no trailing '/'
    policy_key     TEXT NOT NULL,             -- lower(policy id)
    state          TEXT NOT NULL              -- currentProtectionState
);
CREATE INDEX backup_instances_by_datasource ON backup_instances (datasource_key);
CREATE INDEX backup_instances_by_vault ON backup_instances (vault_key, policy_key);

-- +goose Down
DROP TABLE backup_instances;
