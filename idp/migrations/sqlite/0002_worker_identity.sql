-- The worker a client with work:run is: {"name", "labels"} as JSON, set
-- by an admin; NULL means its name is the client's and it has no labels.
ALTER TABLE clients ADD COLUMN worker TEXT;
