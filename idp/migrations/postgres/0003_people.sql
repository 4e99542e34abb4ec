-- People: users (passwords as argon2id PHC strings; NULL until one is
-- set), groups and their members. Members are removed with their user or
-- group by the store, in the same transaction.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- Clients people log in through: where codes may be sent (a JSON list,
-- matched exactly), and whether the client is public (no secret; PKCE
-- alone proves it is the one that asked).
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN public BIGINT NOT NULL DEFAULT 0;

-- A login form shown and not yet used: the authorization request it is
-- for, found by the hash of the form's CSRF token and bound to the
-- browser by the hash of a cookie.
CREATE TABLE login_attempts (
    csrf_sha256 TEXT PRIMARY KEY,
    cookie_sha256 TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    expires_at BIGINT NOT NULL
);

-- Authorization codes by hash: single use (used_at), and once used, the
-- refresh family issued from them, revoked if the code comes again.
CREATE TABLE authorization_codes (
    code_sha256 TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    family_id TEXT
);

-- Refresh tokens: each login starts a family; every refresh marks the
-- presented token used and issues the next. A used token presented
-- again revokes the family (RFC 9700 §4.14.2).
CREATE TABLE refresh_families (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);

CREATE TABLE refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
