-- The server instance (its --instance-id) that last claimed each job, so an
-- operator can see which instance holds a running verification.
ALTER TABLE jobs ADD COLUMN owner TEXT;
