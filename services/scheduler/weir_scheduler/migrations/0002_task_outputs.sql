-- The digests each task's outputs had when uploaded (task_succeeded), for `weir.api.get`.
ALTER TABLE tasks ADD COLUMN outputs jsonb NOT NULL DEFAULT '[]'::jsonb;
