-- +goose Up
-- An index of role assignments by principal, so the authorizer reads the
-- caller's assignments with one indexed query on every request. The
-- assignment itself is a row in resources; this row is written and deleted
-- in the same transaction.
CREATE TABLE role_assignments (
    id_key        TEXT NOT NULL PRIMARY KEY, -- lower(assignment id), as in resources
    principal_key TEXT NOT NULL,             -- lower(principal object id)
    scope         TEXT NOT NULL,             -- the assignment's scope, canonical casing
    role_id       TEXT NOT NULL              -- lower(role definition GUID)
);
CREATE INDEX role_assignments_by_principal ON role_assignments (principal_key);
CREATE INDEX role_assignments_by_role ON role_assignments (role_id);

-- +goose Down
DROP TABLE role_assignments;
