DROP TABLE sandbox_users;
