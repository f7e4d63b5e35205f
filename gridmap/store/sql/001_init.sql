-- gridmap store schema 1: boundary versions (MapIt's "generations") and their features.
-- Applied by gridmap.store.postgis inside one transaction and recorded in gridmap_schema.

CREATE TABLE gridmap_version (
    id           serial PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('draft', 'active', 'retired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_on date,
    note         text NOT NULL DEFAULT ''
);
-- At most one draft and one active version at any time.
CREATE UNIQUE INDEX gridmap_version_one_draft ON gridmap_version (status)
    WHERE status IN ('draft', 'active');

-- Codes compare byte-wise (COLLATE "C") so that pages ordered by code agree with the GeoPackage
-- store whatever the database's locale is.
CREATE TABLE gridmap_feature (
    version_id  integer NOT NULL REFERENCES gridmap_version (id) ON DELETE CASCADE,
    level       text NOT NULL,
    code        text COLLATE "C" NOT NULL,
    name        text,
    parent_code text COLLATE "C",
    kind        text,
    households  double precision,
    worker      text,
    props       jsonb,
    geom        geometry(Geometry, 4326) NOT NULL,
    PRIMARY KEY (version_id, level, code)
);
CREATE INDEX gridmap_feature_parent ON gridmap_feature (version_id, level, parent_code);
CREATE INDEX gridmap_feature_geom ON gridmap_feature USING gist (geom);
