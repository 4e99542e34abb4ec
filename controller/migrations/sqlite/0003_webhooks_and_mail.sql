-- Web hooks and mail (issue 7).

-- Each project's web hook secret. HMAC signatures are checked with the
-- secret itself, so it is kept as it is (a hash would not do); it is shown
-- only to holders of projects:write and never logged. It goes with its
-- project.
CREATE TABLE trigger_secrets (
    project TEXT PRIMARY KEY REFERENCES projects (name) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Deliveries that triggered a build: a forge's redelivery of the same id
-- triggers nothing. Written in the transaction that creates the build.
CREATE TABLE webhook_deliveries (
    source TEXT NOT NULL,
    delivery TEXT NOT NULL,
    project TEXT NOT NULL,
    build_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (source, delivery, project)
);

-- The mail outbox: a row is written in the transaction that ends a build,
-- and a sender claims it (a lease, with SKIP LOCKED), sends it and marks it.
CREATE TABLE notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    build_id TEXT NOT NULL,
    project TEXT NOT NULL,
    number BIGINT NOT NULL,
    run BIGINT NOT NULL,
    build_status TEXT NOT NULL,
    -- JSON list of addresses
    recipients TEXT NOT NULL,
    -- JSON: what the mail says of the build as it ended
    details TEXT NOT NULL,
    -- pending | sent | failed
    status TEXT NOT NULL,
    -- tries so far; also the fencing token of the current claim
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_status ON notifications (status, seq);
