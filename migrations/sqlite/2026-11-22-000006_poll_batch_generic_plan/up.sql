-- PostgreSQL pins a plan cache mode here; nothing changes on SQLite.
SELECT 1;
