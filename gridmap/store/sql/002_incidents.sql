-- gridmap store schema 2: incident reports with their append-only trail, and service stations.
-- Incidents and stations are records, not boundary versions: an incident keeps the grid and the
-- boundary version it was routed to (DESIGN.md §2), and changes under optimistic concurrency
-- (`revision`, which equals the number of trail entries).

CREATE TABLE gridmap_incident (
    id              bigserial PRIMARY KEY,
    idempotency_key text UNIQUE,
    fingerprint     text,
    category        text NOT NULL,
    description     text NOT NULL,
    photo_url       text,
    contact         text,
    lon             double precision NOT NULL,
    lat             double precision NOT NULL,
    geom            geometry(Point, 4326) NOT NULL,
    status          text NOT NULL,
    level           text NOT NULL,
    reported_at     timestamptz NOT NULL,
    deadline        timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         integer,
    near_boundary   boolean NOT NULL DEFAULT false,
    grid_code       text COLLATE "C",
    grid_name       text,
    community_code  text COLLATE "C",
    street_code     text COLLATE "C",
    district_code   text COLLATE "C",
    worker          text,
    revision        integer NOT NULL
);
CREATE INDEX gridmap_incident_geom ON gridmap_incident USING gist (geom);
CREATE INDEX gridmap_incident_status ON gridmap_incident (status, deadline);
CREATE INDEX gridmap_incident_grid ON gridmap_incident (grid_code text_pattern_ops);
CREATE INDEX gridmap_incident_reported ON gridmap_incident (reported_at);

CREATE TABLE gridmap_incident_trail (
    incident_id bigint NOT NULL REFERENCES gridmap_incident (id),
    seq         integer NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    role        text NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    kind        text NOT NULL,
    note        text NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, seq)
);

-- The trail is evidence of who did what when: it is only ever appended to.
CREATE FUNCTION gridmap_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the incident trail is append-only';
END $$;
CREATE TRIGGER gridmap_incident_trail_append_only BEFORE UPDATE OR DELETE
    ON gridmap_incident_trail FOR EACH ROW EXECUTE FUNCTION gridmap_trail_append_only();

CREATE TABLE gridmap_station (
    code          text COLLATE "C" PRIMARY KEY,
    name          text,
    kind          text NOT NULL,
    level         text,
    unit_code     text COLLATE "C",
    floor_area_m2 double precision,
    opening_hours text,
    lon           double precision NOT NULL,
    lat           double precision NOT NULL,
    geom          geometry(Point, 4326) NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gridmap_station_geom ON gridmap_station USING gist (geom);
