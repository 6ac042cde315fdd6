-- PostgreSQL rewrites its poll batch function here; nothing changes on SQLite.
SELECT 1;
