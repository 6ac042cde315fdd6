-- PostgreSQL steers its poll batch plan here; SQLite looks rows up by key already.
SELECT 1;
