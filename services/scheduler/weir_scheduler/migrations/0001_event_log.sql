-- The event log is the source of truth; flows and tasks are projections of it, updated in
-- the same transaction; the outbox holds every message still to be published to NATS.

CREATE TABLE events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text        NOT NULL UNIQUE,
    flow_id     text        NOT NULL,
    seq         integer     NOT NULL CHECK (seq >= 1),
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (flow_id, seq)
);

-- Rows are deleted once published. The relay reads what is here, never a high-water mark,
-- so an event whose transaction commits late is still published.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject    text        NOT NULL,
    msg_id     text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE flows (
    id          text PRIMARY KEY,
    name        text        NOT NULL,
    status      text        NOT NULL,
    seq         integer     NOT NULL,
    task_count  integer     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    spec_digest text,
    errors      jsonb
);
CREATE INDEX flows_newest ON flows (created_at DESC, id DESC);
CREATE INDEX flows_status_newest ON flows (status, created_at DESC, id DESC);

CREATE TABLE tasks (
    flow_id       text    NOT NULL REFERENCES flows (id) ON DELETE CASCADE,
    name          text    NOT NULL,
    position      integer NOT NULL,
    status        text    NOT NULL,
    attempt       integer NOT NULL,
    queue         text    NOT NULL,
    depends       text[]  NOT NULL,
    dispatched_at timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    exit_code     integer,
    error_type    text,
    error_message text,
    runner        text,
    PRIMARY KEY (flow_id, name)
);
