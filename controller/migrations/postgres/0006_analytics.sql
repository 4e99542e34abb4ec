-- Delivery analytics (issue 13): GET /analytics reads a span of a
-- project's builds and nodes from indexes alone.

-- A node carries its build's project and trigger time (neither changes),
-- so that a project's nodes of a span are one range of an index, and the
-- digest of its inputs (the build's parameters and the action's
-- definition), so that an action that both passed and failed with the
-- same inputs is found by grouping. Nodes written before this have no
-- digest, and are never counted as flaky.
ALTER TABLE nodes ADD COLUMN project TEXT;
ALTER TABLE nodes ADD COLUMN build_created_at BIGINT;
ALTER TABLE nodes ADD COLUMN inputs TEXT;
UPDATE nodes SET
    project = (SELECT b.project FROM builds b WHERE b.id = nodes.build_id),
    build_created_at = (SELECT b.created_at FROM builds b WHERE b.id = nodes.build_id);
CREATE INDEX nodes_analytics ON nodes
    (project, build_created_at, pipeline, idx, status, started_at, ended_at);
-- Flaky actions: the failed nodes of a span (the few), and for each the
-- succeeded ones of the same inputs. Partial: a node enters each once, as
-- it ends so.
CREATE INDEX nodes_failed_inputs ON nodes (project, build_created_at, pipeline, idx, inputs)
    WHERE status = 'failed';
CREATE INDEX nodes_succeeded_inputs ON nodes (project, inputs, pipeline, idx, build_created_at)
    WHERE status = 'succeeded';
-- In trigger order (number breaks ties of a millisecond), for runs of
-- failures.
CREATE INDEX builds_analytics ON builds
    (project, created_at, number, status, started_at, ended_at);
