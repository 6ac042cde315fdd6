-- PostgreSQL gets a batch function for the polling hot path here. SQLite runs the batch as
-- the same UPDATE per poll inside one transaction.
SELECT 1;
