-- What the benchmarks read from weir's database to measure a run; loaded by name as the data
-- layer loads queries.sql (bench/measure.py).

-- name: flows_with_status_count
SELECT count(*) FROM flows WHERE status = ANY($1::text[]);

-- name: flow_status
SELECT status FROM flows WHERE id = $1;

-- name: flow_status_counts
SELECT status, count(*) AS n FROM flows GROUP BY status;

-- name: last_terminal_epoch
SELECT extract(epoch FROM max(recorded_at)) FROM events
WHERE type IN ('flow_succeeded', 'flow_failed', 'flow_rejected');

-- name: event_count
SELECT count(*) FROM events;

-- name: event_bytes
SELECT pg_total_relation_size('events');

-- name: task_count
SELECT count(*) FROM tasks;

-- name: event_times
-- When each event of a flow happened (its `at`), as epoch seconds.
SELECT type, data->>'task' AS task, extract(epoch FROM (data->>'at')::timestamptz)::float8 AS at
FROM events WHERE flow_id = $1;

-- name: first_started_epoch
SELECT min(extract(epoch FROM (data->>'at')::timestamptz)) FROM events
WHERE flow_id = $1 AND type = 'task_started';

-- name: expansion_seconds
-- From the list's task succeeding to `task_expanded` being recorded (bench/fanout.py).
SELECT extract(epoch FROM max(recorded_at) FILTER (WHERE type = 'task_expanded')
    - max(recorded_at) FILTER (WHERE type = 'task_succeeded' AND data->>'task' = 'list-items'))
FROM events WHERE flow_id = $1;

-- name: fill_flows
-- $1 flows for bench/queries.py, spread over statuses, names, tags and params.
INSERT INTO flows (id, name, status, seq, task_count, created_at, updated_at, tags, params,
                   start_at)
SELECT 'f' || g, 'etl' || (g % 50), (ARRAY['succeeded','failed','running','scheduled'])[1 + g % 4],
       3, 3, now() - make_interval(secs => g), now(), ARRAY['t' || (g % 10)],
       jsonb_build_object('date', '2026-' || (g % 365), 'n', g % 7),
       CASE WHEN g % 4 = 3 THEN now() + make_interval(secs => g) END
FROM generate_series(1, $1) g;

-- name: fill_tasks
-- Three tasks of each of the $1 flows of fill_flows.
INSERT INTO tasks (flow_id, flow_created_at, name, position, status, attempt, queue, depends)
SELECT 'f' || g, now() - make_interval(secs => g), 't' || p, p,
       CASE WHEN g % 97 = 0 AND p = 2 THEN 'failed' ELSE 'succeeded' END, 1,
       CASE WHEN g % 100 = 0 THEN 'gpu' ELSE 'default' END, '{}'
FROM generate_series(1, $1) g, generate_series(0, 2) p;

-- name: vacuum_analyze
VACUUM ANALYZE;
