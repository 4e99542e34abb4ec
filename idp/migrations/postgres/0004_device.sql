-- The device authorization grant (RFC 8628): clients allowed it (a
-- command line with no browser of its own), and the codes it hands out.
ALTER TABLE clients ADD COLUMN device BIGINT NOT NULL DEFAULT 0;

-- One device login, by the hashes of its device code (the client's
-- secret to poll with) and of its user code (what the person types).
-- `interval_ms` grows by 5 s with each slow_down; `polled_at` is the
-- last poll. A person who typed the code gets a CSRF token and a cookie
-- bound to it (their hashes); once their password is checked,
-- `login_user_id` waits for their approval, which sets `user_id` (or
-- `denied_at`). The device code is single use (`used_at`); a second use
-- revokes the refresh family issued for the first (`family_id`).
CREATE TABLE device_codes (
    device_code_sha256 TEXT PRIMARY KEY,
    user_code_sha256 TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    interval_ms BIGINT NOT NULL,
    polled_at BIGINT,
    expires_at BIGINT NOT NULL,
    csrf_sha256 TEXT,
    cookie_sha256 TEXT,
    login_user_id TEXT,
    user_id TEXT,
    auth_time BIGINT,
    denied_at BIGINT,
    used_at BIGINT,
    family_id TEXT
);
CREATE INDEX device_codes_csrf ON device_codes (csrf_sha256);
