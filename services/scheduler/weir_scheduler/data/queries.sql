-- Every query the scheduler runs, loaded by name (see queries.py). Values are always bound
-- parameters, never pasted into the text.

-- name: events_after
-- The events each flow has beyond the seq we already hold (usually none).
SELECT e.flow_id, e.data::text AS data
FROM events e
JOIN unnest($1::text[], $2::int[]) AS known (flow_id, seq)
  ON e.flow_id = known.flow_id AND e.seq > known.seq
ORDER BY e.flow_id, e.seq;

-- name: flow_events
SELECT data::text AS data FROM events WHERE flow_id = $1 ORDER BY seq;

-- name: flow_digests
SELECT id, spec_digest, status FROM flows WHERE id = ANY($1::text[]);

-- name: append
-- One statement, one round trip, atomic on its own: events, projections (flows, tasks,
-- timers), outbox rows and the relay's wake-up. A concurrent append to the same flow fails it
-- on (flow_id, seq); the caller reloads and decides again. Each row set is one JSON array
-- ($1-$5, rows.py), the outbox three arrays ($6-$8: payloads are bytes), the task rows
-- dropped ($9).
WITH appended AS (
    INSERT INTO events (:EventRow.columns)
    SELECT :EventRow.columns FROM jsonb_to_recordset($1::jsonb) AS e(:EventRow.record)
    RETURNING 1
), flow_rows AS (
    INSERT INTO flows (:FlowRow.columns)
    SELECT :FlowRow.columns FROM jsonb_to_recordset($2::jsonb) AS f(:FlowRow.record)
    ON CONFLICT (id) DO UPDATE SET
        status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at,
        finished_at = excluded.finished_at,
        -- `weir update` may change these (before the flow starts)
        tags = excluded.tags, metadata = excluded.metadata, start_at = excluded.start_at,
        params = excluded.params
    RETURNING 1
), task_rows AS (
    INSERT INTO tasks (:TaskRow.columns)
    SELECT :TaskRow.columns FROM jsonb_to_recordset($3::jsonb) AS t(:TaskRow.record)
    ON CONFLICT (flow_id, name) DO UPDATE SET
        status = excluded.status, attempt = excluded.attempt,
        dispatched_at = excluded.dispatched_at, started_at = excluded.started_at,
        finished_at = excluded.finished_at, exit_code = excluded.exit_code,
        error_type = excluded.error_type, error_message = excluded.error_message,
        runner = excluded.runner, failures = excluded.failures, retry_at = excluded.retry_at,
        outputs = excluded.outputs, priority = excluded.priority
    RETURNING 1
), task_rows_dropped AS (
    -- Instances a retry dropped from the plan (disjoint from the rows set above).
    DELETE FROM tasks t
    USING jsonb_to_recordset($9::jsonb) AS d(:TimerKey.record)
    WHERE t.flow_id = d.flow_id AND t.name = d.task
    RETURNING 1
), due AS (
    SELECT :TimerRow.columns FROM jsonb_to_recordset($5::jsonb) AS d(:TimerRow.record)
), timers_set AS (
    INSERT INTO timers (:TimerRow.columns)
    SELECT :TimerRow.columns FROM due
    ON CONFLICT (flow_id, task, kind) DO UPDATE SET
        attempt = excluded.attempt, due_at = excluded.due_at, claimed_until = NULL
    RETURNING 1
), timers_cleared AS (
    -- Timers of the touched tasks that are no longer due (disjoint from the rows set above).
    DELETE FROM timers t
    USING jsonb_to_recordset($4::jsonb) AS c(:TimerKey.record)
    WHERE t.flow_id = c.flow_id AND t.task = c.task
      AND NOT EXISTS (
          SELECT 1 FROM due
          WHERE due.flow_id = t.flow_id AND due.task = t.task AND due.kind = t.kind
      )
    RETURNING 1
), outbox_rows AS (
    INSERT INTO outbox (subject, msg_id, payload)
    SELECT * FROM unnest($6::text[], $7::text[], $8::bytea[])
    RETURNING id
)
SELECT pg_notify('weir_outbox', ''),
       (SELECT count(*) FROM appended), (SELECT count(*) FROM flow_rows),
       (SELECT count(*) FROM task_rows), (SELECT count(*) FROM timers_set),
       (SELECT count(*) FROM timers_cleared), (SELECT count(*) FROM task_rows_dropped),
       (SELECT array_agg(id ORDER BY id) FROM outbox_rows) AS outbox_ids;

-- name: claim_timers
-- Due timers nobody is firing right now; the claim lapses on its own if we die.
UPDATE timers SET claimed_until = now() + make_interval(secs => $2)
WHERE (flow_id, task, kind) IN (
    SELECT flow_id, task, kind FROM timers
    WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY due_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING flow_id, task, kind, attempt;

-- name: drop_fired_timers
-- Timers that fired without changing anything (their moment had passed) would otherwise be
-- claimed again; a timer moved later meanwhile (a lease a heartbeat extended) stays.
DELETE FROM timers t
USING unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS f(flow_id, task, kind, attempt)
WHERE t.flow_id = f.flow_id AND t.task = f.task AND t.kind = f.kind AND t.attempt = f.attempt
  AND t.due_at <= now();

-- name: next_timer_due
SELECT extract(epoch FROM (min(due_at) - now())) FROM timers
WHERE claimed_until IS NULL OR claimed_until < now();

-- name: extend_leases
-- Not for cancelling flows: an attempt its runner did not kill (it never heard the cancel)
-- is declared lost, hence cancelled, when its lease runs out. But the on_exit task's, when
-- the flow's latest cancel spares it: it runs on.
UPDATE timers t SET due_at = greatest(t.due_at, now() + make_interval(secs => $4))
FROM unnest($1::text[], $2::text[], $3::int[]) AS h(flow_id, task, attempt)
WHERE t.kind = 'lease' AND t.flow_id = h.flow_id AND t.task = h.task AND t.attempt = h.attempt
  AND NOT EXISTS (
    SELECT 1 FROM flows f WHERE f.id = t.flow_id AND f.status = 'cancelling'
      AND NOT coalesce((
        SELECT (c.data->>'spares_on_exit')::boolean
          AND t.task = (
            SELECT s.data->'spec'->'on_exit'->>'name' FROM events s
            WHERE s.flow_id = t.flow_id AND s.type = 'flow_submitted' ORDER BY s.seq LIMIT 1)
        FROM events c WHERE c.flow_id = t.flow_id AND c.type = 'flow_cancel_requested'
        ORDER BY c.seq DESC LIMIT 1), false));

-- name: attempt_silence
-- Seconds since the runner of a running attempt was last heard from: its lease is due
-- `lease` ($4) seconds after its start or its latest heartbeat.
SELECT extract(epoch FROM now() - (due_at - make_interval(secs => $4)))::float8
FROM timers WHERE flow_id = $1 AND task = $2 AND kind = 'lease' AND attempt = $3;

-- name: attempt_status
SELECT t.status, t.attempt, f.status AS flow_status
FROM tasks t JOIN flows f ON f.id = t.flow_id
WHERE t.flow_id = $1 AND t.name = $2;

-- name: prune_candidates
-- Terminal flows past their age, beyond the newest `keep_last` of them, oldest first.
SELECT id FROM (
    SELECT id, finished_at, row_number() OVER (ORDER BY finished_at DESC, id DESC) AS newest
    FROM flows
    WHERE status = ANY($1::text[]) AND finished_at IS NOT NULL
) ranked
WHERE newest > $2 AND finished_at < $3
ORDER BY finished_at
LIMIT $4;

-- name: prune_events
DELETE FROM events WHERE flow_id = ANY($1::text[]);

-- name: prune_timers
DELETE FROM timers WHERE flow_id = ANY($1::text[]);

-- name: prune_flows
DELETE FROM flows WHERE id = ANY($1::text[]);

-- name: schedule_upsert
INSERT INTO schedules (name, cron, timezone, spec, missed, paused, next_run_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
ON CONFLICT (name) DO UPDATE SET
    cron = excluded.cron, timezone = excluded.timezone, spec = excluded.spec,
    missed = excluded.missed, paused = excluded.paused, next_run_at = excluded.next_run_at
RETURNING name, cron, timezone, missed, paused, next_run_at, last_tick_at, created_at,
          spec->>'name' AS flow_name,
       coalesce(spec->'arguments', '{}')::text AS params;

-- name: schedule_list
SELECT name, cron, timezone, missed, paused, next_run_at, last_tick_at, created_at,
       spec->>'name' AS flow_name,
       coalesce(spec->'arguments', '{}')::text AS params
FROM schedules ORDER BY name;

-- name: schedule_pause
UPDATE schedules SET paused = $2 WHERE name = $1
RETURNING name, cron, timezone, missed, paused, next_run_at, last_tick_at, created_at,
          spec->>'name' AS flow_name,
       coalesce(spec->'arguments', '{}')::text AS params;

-- name: schedule_delete
DELETE FROM schedules WHERE name = $1 RETURNING name;

-- name: schedule_due
SELECT name, cron, timezone, spec::text AS spec, missed, next_run_at, last_tick_at
FROM schedules
WHERE NOT paused AND next_run_at <= now()
ORDER BY next_run_at
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: schedule_advance
UPDATE schedules SET next_run_at = $2, last_tick_at = $3 WHERE name = $1;

-- name: schedule_next_due
SELECT extract(epoch FROM (min(next_run_at) - now())) FROM schedules WHERE NOT paused;

-- name: ping
-- The health check: the database answers.
SELECT 1;

-- name: pending_flows
SELECT count(*) FROM flows WHERE status IN :UNENDED_FLOW_STATUSES;

-- name: queue_in_flight
SELECT count(*) FROM tasks WHERE queue = $1 AND status IN :ACTIVE_TASK_STATUSES;

-- name: queue_next
-- Fair across flows: within a priority, each flow's next task takes its turn after the
-- attempts the flow already has in flight on the queue, so one big flow cannot take every
-- slot a finish frees; ties go to the older flow.
WITH waiting AS (
    SELECT t.flow_id, t.name, t.priority, t.position, f.created_at,
           row_number() OVER (PARTITION BY t.flow_id, t.priority ORDER BY t.position) AS turn
    FROM tasks t JOIN flows f ON f.id = t.flow_id
    WHERE t.queue = $1 AND t.status = 'queued' AND f.status <> 'paused'
), busy AS (
    SELECT flow_id, count(*) AS in_flight FROM tasks
    WHERE queue = $1 AND status IN :ACTIVE_TASK_STATUSES
    GROUP BY flow_id
)
SELECT w.flow_id, w.name
FROM waiting w LEFT JOIN busy b ON b.flow_id = w.flow_id
ORDER BY w.priority, w.turn + coalesce(b.in_flight, 0), w.created_at, w.position
LIMIT $2;

-- name: unique_holder
SELECT id, status FROM flows
WHERE unique_key = $1 AND status = ANY($2::text[])
  AND ($3::timestamptz IS NULL OR created_at > $3)
ORDER BY created_at DESC
LIMIT 1;

-- name: get_flow
SELECT id, name, status, seq, task_count, created_at, updated_at, errors::text AS errors,
       tags, metadata::text AS metadata, start_at, rerun_of, finished_at,
       params::text AS params
FROM flows WHERE id = $1;

-- name: get_tasks
SELECT name, status, attempt, queue, depends, dispatched_at, started_at, finished_at,
       exit_code, error_type, error_message, runner, priority, failures::text AS failures,
       retry_at, outputs::text AS outputs
FROM tasks WHERE flow_id = $1 ORDER BY position;

-- name: list_flows
SELECT id, name, status, seq, task_count, created_at, updated_at, tags, finished_at
FROM flows
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: query_flows_select
-- filters.py adds the WHERE over `f`.
SELECT f.id, f.name, f.status, f.seq, f.task_count, f.created_at, f.updated_at, f.tags,
       f.finished_at
FROM flows f

-- name: query_tasks_select
-- Tasks across flows; filters.py adds the WHERE over `t` and `f`.
SELECT t.flow_id, f.name AS flow_name, t.flow_created_at, t.position,
       t.name, t.status, t.attempt, t.queue, t.priority, t.dispatched_at,
       t.started_at, t.finished_at, t.exit_code, t.error_type, t.error_message, t.runner,
       t.retry_at
FROM tasks t JOIN flows f ON f.id = t.flow_id

-- name: task_counts
-- How many tasks of each flow are in each status (the `weir flows` columns).
SELECT flow_id, status, count(*)::int AS n FROM tasks
WHERE flow_id = ANY($1::text[])
GROUP BY flow_id, status;

-- name: outbox_batch
-- The oldest rows but those under the prefix $2 committed less than $3 seconds ago (the
-- dispatches the committing process publishes itself).
SELECT id, subject, msg_id, payload FROM outbox
WHERE NOT (starts_with(subject, $2) AND created_at > now() - make_interval(secs => $3))
ORDER BY id LIMIT $1;

-- name: outbox_delete
DELETE FROM outbox WHERE id = ANY($1::bigint[]);

-- name: try_session_lock
-- A lock held until the connection closes (locks.py names the keys).
SELECT pg_try_advisory_lock($1);

-- name: lock_transaction
-- Held until the transaction ends.
SELECT pg_advisory_xact_lock($1);

-- name: lock_name_transaction
-- One lock per name under a key (a queue, a unique key), held until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended($1, $2));

-- name: migrations_table
CREATE TABLE IF NOT EXISTS weir_migrations (
    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_applied
SELECT name FROM weir_migrations;

-- name: migration_record
INSERT INTO weir_migrations (name) VALUES ($1);

-- name: database_exists
-- Databases are made and dropped on the cluster's admin connection (the dev stack, tests).
SELECT 1 FROM pg_database WHERE datname = $1;

-- name: quoted_identifier
-- A database name cannot be a bound parameter: Postgres quotes it for the two below.
SELECT quote_ident($1);

-- name: database_create
CREATE DATABASE {database};

-- name: database_drop
DROP DATABASE IF EXISTS {database} WITH (FORCE);
