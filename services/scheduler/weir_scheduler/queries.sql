-- Every query the scheduler runs, loaded by name (see store.py). Values are always bound
-- parameters, never pasted into the text.

-- name: events_after
-- The events each flow has beyond the seq we already hold (usually none).
SELECT e.flow_id, e.data::text AS data
FROM events e
JOIN unnest($1::text[], $2::int[]) AS known (flow_id, seq)
  ON e.flow_id = known.flow_id AND e.seq > known.seq
ORDER BY e.flow_id, e.seq;

-- name: flow_digests
SELECT id, spec_digest, status FROM flows WHERE id = ANY($1::text[]);

-- name: append_events
INSERT INTO events (id, flow_id, seq, type, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::jsonb[]);

-- name: append_outbox
INSERT INTO outbox (subject, msg_id, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]);

-- name: notify_outbox
SELECT pg_notify('weir_outbox', '');

-- name: upsert_flows
INSERT INTO flows (id, name, status, seq, task_count, created_at, updated_at, spec_digest, errors)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[],
                     $6::timestamptz[], $7::timestamptz[], $8::text[], $9::jsonb[])
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at;

-- name: upsert_tasks
INSERT INTO tasks (flow_id, name, position, status, attempt, queue, depends, dispatched_at,
                   started_at, finished_at, exit_code, error_type, error_message, runner)
SELECT t.flow_id, t.name, t.position, t.status, t.attempt, t.queue,
       CASE WHEN t.depends = '' THEN '{}'::text[] ELSE string_to_array(t.depends, ',') END,
       t.dispatched_at, t.started_at, t.finished_at, t.exit_code, t.error_type,
       t.error_message, t.runner
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[], $6::text[], $7::text[],
            $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::int[], $12::text[],
            $13::text[], $14::text[])
     AS t(flow_id, name, position, status, attempt, queue, depends, dispatched_at, started_at,
          finished_at, exit_code, error_type, error_message, runner)
ON CONFLICT (flow_id, name) DO UPDATE SET
    status = excluded.status, attempt = excluded.attempt, dispatched_at = excluded.dispatched_at,
    started_at = excluded.started_at, finished_at = excluded.finished_at,
    exit_code = excluded.exit_code, error_type = excluded.error_type,
    error_message = excluded.error_message, runner = excluded.runner;

-- name: get_flow
SELECT id, name, status, seq, task_count, created_at, updated_at, errors::text AS errors
FROM flows WHERE id = $1;

-- name: get_tasks
SELECT name, status, attempt, queue, depends, dispatched_at, started_at, finished_at,
       exit_code, error_type, error_message, runner
FROM tasks WHERE flow_id = $1 ORDER BY position;

-- name: list_flows
SELECT id, name, status, seq, task_count, created_at, updated_at
FROM flows
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: outbox_batch
SELECT id, subject, msg_id, payload FROM outbox ORDER BY id LIMIT $1;

-- name: outbox_delete
DELETE FROM outbox WHERE id = ANY($1::bigint[]);

-- name: relay_lock
SELECT pg_try_advisory_lock(7261020301);
