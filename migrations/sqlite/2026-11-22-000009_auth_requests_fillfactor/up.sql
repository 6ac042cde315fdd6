-- PostgreSQL leaves room for updates in auth_requests pages here; SQLite has no such setting.
SELECT 1;
