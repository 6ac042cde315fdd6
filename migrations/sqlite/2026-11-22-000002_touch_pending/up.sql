-- PostgreSQL gets a function for the polling hot path here. SQLite has no stored functions
-- and prepares statements cheaply: the store issues the same UPDATE directly.
SELECT 1;
