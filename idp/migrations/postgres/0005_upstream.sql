-- People who log in through an upstream OpenID provider: which Ick user
-- an upstream's `sub` is. Matched by (upstream, subject), never by name,
-- so a renamed upstream account stays the same Ick user.
CREATE TABLE upstream_identities (
    upstream TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (upstream, subject)
);
CREATE INDEX upstream_identities_user ON upstream_identities (user_id);

-- A login sent to an upstream and not yet back: found by the hash of the
-- `state` sent, bound to the browser by its cookie's hash, for the login
-- form (login_attempts row) it continues. The nonce is kept as a hash;
-- the PKCE verifier is derived from the state and the cookie, so it is
-- never stored.
CREATE TABLE upstream_logins (
    state_sha256 TEXT PRIMARY KEY,
    upstream TEXT NOT NULL,
    csrf_sha256 TEXT NOT NULL,
    cookie_sha256 TEXT NOT NULL,
    nonce_sha256 TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
