-- Queries over more fields (filters.py), each with an index so a filtered newest-first
-- listing stays fast with many flows.

-- `param.NAME=VALUE`: every parameter's value, matched by containment.
ALTER TABLE flows ADD COLUMN params jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX flows_params ON flows USING gin (params jsonb_path_ops);

-- `scheduled>T` / `scheduled<T`: flows that wait for a later start.
CREATE INDEX flows_start_at ON flows (start_at) WHERE start_at IS NOT NULL;

-- `weir flows --where queue=Q`: the flows with a task on a queue.
CREATE INDEX tasks_queue_flow ON tasks (queue, flow_id);

-- `weir tasks --where 'status=S and queue=Q'`: tasks across flows.
CREATE INDEX tasks_status_queue ON tasks (status, queue);
