-- What tests read from the scheduler's database behind its back, and the faults they inject
-- into it; loaded by name as the data layer loads queries.sql (tests/inspection.py).

-- name: ping
SELECT 1;

-- name: session_state
-- What a connection keeps from one statement to the next: advisory locks, LISTENs, open
-- cursors (not the portal of this very statement), settings a `RESET ALL` would change.
SELECT (SELECT count(*) FROM pg_locks
        WHERE pid = pg_backend_pid() AND locktype = 'advisory') AS advisory_locks,
       (SELECT count(*) FROM pg_listening_channels()) AS listening,
       (SELECT count(*) FROM pg_cursors WHERE name <> '') AS cursors,
       coalesce((SELECT array_agg(name ORDER BY name) FROM pg_settings
                 WHERE source = 'session' AND setting IS DISTINCT FROM reset_val), '{}') AS settings;

-- name: current_database
SELECT current_database();

-- name: table_columns
SELECT column_name FROM information_schema.columns WHERE table_name = $1;

-- name: event_log
SELECT id, seq, type, data->>'task' AS task FROM events WHERE flow_id = $1 ORDER BY seq;

-- name: event_texts
-- Every event as Postgres stores it (what a secret must never be part of).
SELECT coalesce(data::text, '') || coalesce(metadata::text, '') FROM events;

-- name: event_texts_of_flow
SELECT data::text FROM events WHERE flow_id = $1;

-- name: event_seqs_by_flow
SELECT flow_id, array_agg(seq ORDER BY seq) AS seqs,
       count(*) FILTER (WHERE type = 'task_succeeded') AS succeeded
FROM events GROUP BY flow_id;

-- name: event_count_of_flows
SELECT count(*) FROM events WHERE flow_id = ANY($1);

-- name: flows_by_finish
SELECT id FROM flows WHERE id = ANY($1) ORDER BY finished_at, id;

-- name: flow_verdicts
SELECT id, status, errors FROM flows;

-- name: flow_count_named
SELECT count(*) FROM flows WHERE name = $1;

-- name: flow_count_with_status
SELECT count(*) FROM flows WHERE status = $1;

-- name: row_counts
-- What a refused request must not write to (the outbox drains in the background).
SELECT (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM flows) AS flows,
       (SELECT count(*) FROM tasks) AS tasks,
       (SELECT count(*) FROM timers) AS timers,
       (SELECT count(*) FROM schedules) AS schedules;

-- name: timer_count
SELECT count(*) FROM timers WHERE flow_id = $1 AND kind = $2;

-- name: outbox_count
SELECT count(*) FROM outbox;

-- name: every_table_as_text
-- A statement per table that renders each row as text (bytea as hex, jsonb as text).
SELECT table_name, format('SELECT t::text FROM %I.%I t', table_schema, table_name)
FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE';

-- Faults -----------------------------------------------------------------------------------

-- name: outbox_insert
INSERT INTO outbox (subject, msg_id, payload) VALUES ($1, $2, '{}') RETURNING id;

-- name: outbox_notify
NOTIFY weir_outbox;

-- name: outbox_age
UPDATE outbox SET created_at = now() - interval '1 minute' WHERE id = $1;

-- name: schedules_overdue
UPDATE schedules SET next_run_at = date_trunc('second', now()) - interval '5 seconds';

-- name: timers_table_drop
DROP TABLE timers CASCADE;
