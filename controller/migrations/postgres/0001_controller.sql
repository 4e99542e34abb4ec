-- Times are BIGINT milliseconds since the epoch (UTC); flags are BIGINT 0/1;
-- JSON is TEXT. (sqlx's Any driver knows only integers, floats, text and
-- bytes, and the same queries run on SQLite.)

CREATE TABLE pipelines (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    text TEXT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    text TEXT NOT NULL,
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- Which pipelines a project runs: a pipeline in use cannot be deleted.
CREATE TABLE project_pipelines (
    project TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    pipeline TEXT NOT NULL REFERENCES pipelines (name),
    PRIMARY KEY (project, pipeline)
);
CREATE INDEX project_pipelines_pipeline ON project_pipelines (pipeline);

-- Every change of a definition, deletions included.
CREATE TABLE revisions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    revision BIGINT NOT NULL,
    author TEXT NOT NULL,
    at BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (kind, name, revision)
);

-- Build numbers per project; kept when a project is deleted so that
-- numbers never repeat. Its row also serialises admissions of the project.
CREATE TABLE build_counters (
    project TEXT PRIMARY KEY,
    last BIGINT NOT NULL
);

CREATE TABLE builds (
    seq BIGSERIAL UNIQUE,
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    number BIGINT NOT NULL,
    status TEXT NOT NULL,
    run BIGINT NOT NULL,
    admitted BIGINT NOT NULL,
    concurrency BIGINT NOT NULL,
    cancel_requested BIGINT NOT NULL,
    parameters TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    UNIQUE (project, number)
);
CREATE INDEX builds_project_status ON builds (project, status);
CREATE INDEX builds_status ON builds (status);

-- One row per action of a build: the stored graph (deps, node_edges) and
-- the state of its latest attempt.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    build_id TEXT NOT NULL REFERENCES builds (id),
    position BIGINT NOT NULL,
    pipeline TEXT NOT NULL,
    idx BIGINT NOT NULL,
    pipeline_len BIGINT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    labels TEXT NOT NULL,
    deps TEXT NOT NULL,
    -- dependencies not yet succeeded
    waiting BIGINT NOT NULL,
    -- 1 while the build waits for the project's concurrency limit
    held BIGINT NOT NULL,
    status TEXT NOT NULL,
    -- the worker that holds the pipeline's workspace
    affinity TEXT,
    worker TEXT,
    -- the fencing token: +1 at every hand-out
    attempt BIGINT NOT NULL,
    -- times its worker was lost
    lost BIGINT NOT NULL,
    lease_until BIGINT,
    cancel_requested BIGINT NOT NULL,
    -- chunks held for the current attempt
    chunks BIGINT NOT NULL,
    ready_at BIGINT,
    started_at BIGINT,
    ended_at BIGINT,
    outcome TEXT,
    exit_code BIGINT,
    message TEXT,
    outputs TEXT
);
CREATE INDEX nodes_build ON nodes (build_id, position);
CREATE INDEX nodes_build_status ON nodes (build_id, status);
CREATE INDEX nodes_ready ON nodes (ready_at, id)
    WHERE status = 'queued' AND waiting = 0 AND held = 0;
CREATE INDEX nodes_pinned ON nodes (affinity, ready_at)
    WHERE status = 'queued' AND waiting = 0 AND held = 0 AND affinity IS NOT NULL;
CREATE INDEX nodes_leases ON nodes (lease_until) WHERE status = 'running';

CREATE TABLE node_edges (
    build_id TEXT NOT NULL,
    from_node TEXT NOT NULL,
    to_node TEXT NOT NULL,
    PRIMARY KEY (from_node, to_node)
);
CREATE INDEX node_edges_to ON node_edges (to_node);

CREATE TABLE chunks (
    node_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    build_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    data TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (node_id, attempt, seq)
);
CREATE INDEX chunks_build ON chunks (build_id);

CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    kinds TEXT NOT NULL,
    slots BIGINT NOT NULL,
    free_slots BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
