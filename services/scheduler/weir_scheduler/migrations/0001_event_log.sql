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
    errors      jsonb,
    tags        text[]      NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    start_at    timestamptz,
    rerun_of    text,
    unique_key  text,
    finished_at timestamptz
);
CREATE INDEX flows_newest ON flows (created_at DESC, id DESC);
CREATE INDEX flows_status_newest ON flows (status, created_at DESC, id DESC);
CREATE INDEX flows_tags ON flows USING gin (tags);
CREATE INDEX flows_unique_key ON flows (unique_key, created_at DESC) WHERE unique_key IS NOT NULL;
CREATE INDEX flows_finished ON flows (finished_at) WHERE finished_at IS NOT NULL;

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
    priority      integer NOT NULL DEFAULT 0,
    failures      jsonb   NOT NULL DEFAULT '[]'::jsonb,
    retry_at      timestamptz,
    PRIMARY KEY (flow_id, name)
);

CREATE INDEX tasks_queue_status ON tasks (queue, status)
    WHERE status IN ('queued', 'dispatched', 'running');

-- Due times (retries, delayed starts, deadlines, heartbeat leases), derived from flow state in
-- the same transaction as the events. Any scheduler replica may fire one: it claims the row
-- for a moment so replicas share the work, and the log's (flow_id, seq) makes a double fire
-- harmless. task = '' for flow-level timers.
CREATE TABLE timers (
    flow_id       text        NOT NULL,
    task          text        NOT NULL,
    kind          text        NOT NULL,
    attempt       integer     NOT NULL,
    due_at        timestamptz NOT NULL,
    claimed_until timestamptz,
    PRIMARY KEY (flow_id, task, kind)
);
CREATE INDEX timers_due ON timers (due_at);

-- Cron schedules: configuration, not facts; each tick they fire becomes a flow whose id is
-- derived from (schedule, tick), so a tick fired twice is one flow.
CREATE TABLE schedules (
    name         text PRIMARY KEY,
    cron         text        NOT NULL,
    timezone     text        NOT NULL,
    spec         jsonb       NOT NULL,
    missed       text        NOT NULL,
    paused       boolean     NOT NULL DEFAULT false,
    next_run_at  timestamptz NOT NULL,
    last_tick_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE NOT paused;
