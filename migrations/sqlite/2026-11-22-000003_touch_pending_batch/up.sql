-- PostgreSQL gets a batch function for the polling hot path here. SQLite needs none: the
-- store runs the batch as one UPDATE ... FROM (VALUES ...) statement.
SELECT 1;
