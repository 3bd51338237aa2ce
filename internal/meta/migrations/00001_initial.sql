-- +goose Up
CREATE TABLE resources (
    id_key           TEXT   NOT NULL PRIMARY KEY, -- lower(id): ARM ids compare case-insensitively
    id               TEXT   NOT NULL,             -- canonical casing, echoed in responses
    type_key         TEXT   NOT NULL,             -- lower(type), e.g. microsoft.compute/disks
    subscription_key TEXT   NOT NULL,             -- lower subscription GUID, '' for tenant-level
    group_key        TEXT   NOT NULL,             -- lower resource group name, '' when none
    parent_key       TEXT   NOT NULL,             -- lower id of the enclosing resource or scope
    name             TEXT   NOT NULL,
    body             TEXT   NOT NULL,             -- the resource's JSON document
    etag             TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,             -- Unix ns
    updated_at       BIGINT NOT NULL
);
CREATE INDEX resources_by_type ON resources (type_key, subscription_key, group_key, id_key);
CREATE INDEX resources_by_parent ON resources (parent_key, type_key, id_key);

CREATE TABLE operations (
    id            TEXT   NOT NULL PRIMARY KEY,
    kind          TEXT   NOT NULL,              -- the handler that does the work
    resource_id   TEXT   NOT NULL,              -- the resource the operation acts on
    status        TEXT   NOT NULL,              -- InProgress | Succeeded | Failed | Canceled
    input         TEXT   NOT NULL,              -- JSON given to the handler
    result        TEXT   NOT NULL DEFAULT '',   -- JSON the handler returned
    error         TEXT   NOT NULL DEFAULT '',   -- JSON errs.Error when Failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT   NOT NULL DEFAULT '',
    lease_until   BIGINT NOT NULL DEFAULT 0,    -- Unix ns; a worker owns the operation until then
    not_before    BIGINT NOT NULL DEFAULT 0,    -- Unix ns; do not start before (retry back-off)
    started_at    BIGINT NOT NULL,
    ended_at      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX operations_runnable ON operations (status, lease_until);

-- +goose Down
DROP TABLE operations;
DROP TABLE resources;
