-- People and roles, and the audit log (issue 12).

-- Who may read a project besides its members: private, internal (the
-- default, which every definition written before had) or public. A copy of
-- the definition's `visibility:`, so that roles are read without parsing
-- every project.
ALTER TABLE projects ADD COLUMN visibility TEXT NOT NULL DEFAULT 'internal';

-- Members of a project: `user:NAME`, `group:NAME` or `client:NAME`, each
-- with one role (viewer, developer, maintainer, owner). They go with the
-- project (deleted in the same transaction).
CREATE TABLE project_members (
    project TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    member TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (project, member)
);

-- Global roles (admin, creator) given through the API; the config's
-- `admins:` are not stored.
CREATE TABLE global_roles (
    member TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (member, role)
);

-- Every change: who (user:NAME, client:NAME or webhook:FORGE, never an
-- id), from which address, what, to which project. Append-only: nothing
-- updates or deletes a row, and the database refuses it too.
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    project TEXT,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_project ON audit (project, seq);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_actor_name ON audit (actor_name, seq);
CREATE INDEX audit_at ON audit (at);

CREATE FUNCTION audit_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();

-- SQLite's instr(haystack, needle): where needle starts in haystack, from
-- 1, or 0. With it one query serves both databases when it asks whether a
-- name is in a list given as one parameter (',a,b,').
CREATE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER AS $$
    SELECT strpos(haystack, needle)
$$ LANGUAGE sql IMMUTABLE;
