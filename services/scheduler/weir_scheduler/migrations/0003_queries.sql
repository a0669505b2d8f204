-- Queries over more fields (filters.py), each with an index so a filtered newest-first
-- listing stays fast with many flows.

-- `param.NAME=VALUE`: every parameter's value, matched by containment.
ALTER TABLE flows ADD COLUMN params jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX flows_params ON flows USING gin (params jsonb_path_ops);

-- `scheduled>T` / `scheduled<T`: flows that wait for a later start.
CREATE INDEX flows_start_at ON flows (start_at) WHERE start_at IS NOT NULL;

-- `weir flows --where queue=Q`: the flows with a task on a queue.
CREATE INDEX tasks_queue_flow ON tasks (queue, flow_id);

-- `weir tasks`: tasks across flows, the newest flows' first. Each task keeps its flow's
-- created_at (set once, at submit), so `status=S`, the usual question, is one index walk in
-- the listing's order however many flows there are.
ALTER TABLE tasks ADD COLUMN flow_created_at timestamptz;
UPDATE tasks t SET flow_created_at = f.created_at FROM flows f WHERE f.id = t.flow_id;
ALTER TABLE tasks ALTER COLUMN flow_created_at SET NOT NULL;
CREATE INDEX tasks_status_newest ON tasks (status, flow_created_at DESC, flow_id DESC, position);
