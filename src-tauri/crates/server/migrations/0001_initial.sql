-- The PostgreSQL schema of the server's metadata (PostgresMeta): the same
-- tables as the SQLite file (db.rs), times as Unix seconds from the
-- database's clock. Never edit a migration that has shipped; add one.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 BYTEA NOT NULL UNIQUE
);
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    recorder_type TEXT NOT NULL,
    content_type TEXT NOT NULL,
    is_video BOOLEAN NOT NULL,
    used_in_file_uploader BOOLEAN NOT NULL,
    expected_size BIGINT,
    -- uploading | processing | ready | failed | aborted | expired
    status TEXT NOT NULL,
    size_bytes BIGINT,
    duration_seconds DOUBLE PRECISION,
    sha256 TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    ready_at BIGINT,
    -- Insertion order, the tie-break SQLite's rowid gives.
    seq BIGSERIAL NOT NULL
);
CREATE INDEX recordings_by_user ON recordings(user_id, created_at DESC, seq DESC);
CREATE TABLE upload_sessions (
    upload_id TEXT PRIMARY KEY,
    recording_id TEXT NOT NULL UNIQUE REFERENCES recordings(id),
    object_key TEXT NOT NULL,
    store_upload_id TEXT NOT NULL,
    part_size BIGINT NOT NULL,
    -- open | completed | aborted | expired
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- JSON [[partNumber, etag], ...] sorted, once finish was accepted
    finished_parts TEXT,
    object_size BIGINT,
    object_etag TEXT
);
CREATE INDEX open_sessions_by_expiry ON upload_sessions(expires_at) WHERE state = 'open';
CREATE TABLE jobs (
    recording_id TEXT PRIMARY KEY REFERENCES recordings(id),
    -- queued | running | done
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    run_after BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT
);
CREATE INDEX due_jobs ON jobs(state, run_after);
