"""PostgreSQL access: connection pool, embedded server and schema migrations."""
