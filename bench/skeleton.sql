-- The skeleton's own table and statements (bench/skeleton.py): weir's event rows without
-- its projections, outbox or NOTIFY; loaded by name as the data layer loads queries.sql.

-- name: schema
CREATE TABLE IF NOT EXISTS skeleton_events (
    flow_id text NOT NULL, seq int NOT NULL, type text NOT NULL, payload bytea NOT NULL,
    at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (flow_id, seq)
);

-- name: append
-- One statement per batch of appends, as weir's `append`.
INSERT INTO skeleton_events (flow_id, seq, type, payload)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bytea[]);

-- name: event_rows
SELECT count(*) FROM skeleton_events;
