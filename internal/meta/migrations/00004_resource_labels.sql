-- +goose Up
-- Labels index resources by a value their JSON body holds, so a lookup
-- that runs on every request (the snapshots of a disk's family, the disk
-- attached under an NBD export) is one indexed query instead of a scan of
-- every body. A label row is written in the same transaction as its
-- resource row and goes with it.
CREATE TABLE resource_labels (
    id_key TEXT NOT NULL, -- lower(resource id), as in resources
    label  TEXT NOT NULL, -- what the value is, e.g. 'snapshotFamily'
    value  TEXT NOT NULL, -- lower-cased
    PRIMARY KEY (id_key, label)
);
CREATE INDEX resource_labels_by_value ON resource_labels (label, value);

-- +goose Down
DROP TABLE resource_labels;
