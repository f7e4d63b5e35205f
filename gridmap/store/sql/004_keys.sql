-- gridmap store schema 4: API keys (gridmap.access). Only the SHA-256 of a key is kept, never
-- the key itself; a key has one role and the code(s) of the unit it governs.
CREATE TABLE gridmap_api_key (
    id         bigserial PRIMARY KEY,
    hash       text NOT NULL UNIQUE,
    prefix     text NOT NULL,
    role       text NOT NULL CHECK (role IN ('reporter', 'worker', 'supervisor', 'planner', 'admin')),
    unit       text COLLATE "C",
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
