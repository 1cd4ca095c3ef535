-- Users are listed by email in byte order (ORDER BY email COLLATE "C": the
-- same order whatever the server's default collation) and searched by any
-- part of their email or name (ILIKE '%...%'). Without these indexes every
-- page sorted or scanned all users: 90-230 ms with 100,000 users in the
-- console's users view (docs/benchmarks.md, "admin-tui at scale").
-- pg_trgm ships with PostgreSQL and is a trusted extension.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_c_idx ON users (email COLLATE "C");
CREATE INDEX users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
CREATE INDEX users_name_trgm_idx ON users USING gin (name gin_trgm_ops);
