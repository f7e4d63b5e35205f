-- gridmap store schema 3: plans. Several drafts may be open at once (one per plan); each keeps
-- the version that was active when it was begun, and publishing checks that it still is.
DROP INDEX gridmap_version_one_draft;
CREATE UNIQUE INDEX gridmap_version_one_active ON gridmap_version (status) WHERE status = 'active';
ALTER TABLE gridmap_version ADD COLUMN base integer REFERENCES gridmap_version (id);
