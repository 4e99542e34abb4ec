-- Lost attempts and worker presence (issue 11).

-- The attempts of a node whose worker was lost, oldest first (a JSON
-- array of ick_api::controller::LostAttempt); kept when its pipeline
-- starts over, so that the build shows what happened.
ALTER TABLE nodes ADD COLUMN lost_attempts TEXT;

-- What a worker said of itself: online, draining (stopping once its
-- actions end), or gone (it said it left).
ALTER TABLE workers ADD COLUMN state TEXT NOT NULL DEFAULT 'online';
-- Its open presence connection (a random id per connection), and when
-- that connection dropped without the worker saying it was leaving: a
-- worker whose connection stays dropped is dead.
ALTER TABLE workers ADD COLUMN session TEXT;
ALTER TABLE workers ADD COLUMN disconnected_at BIGINT;
-- When it said it left.
ALTER TABLE workers ADD COLUMN left_at BIGINT;
