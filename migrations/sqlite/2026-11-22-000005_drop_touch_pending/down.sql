-- PostgreSQL drops an unused function here; nothing changes on SQLite.
SELECT 1;
