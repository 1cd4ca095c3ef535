-- Cancelled jobs, newest first (the console's jobs view and
-- GET .../jobs?status=cancelled). They are a few per thousand jobs, so
-- without an index of their own a page of them read the whole table
-- (20-75 ms for an org with 100,000 jobs, growing with the org; see
-- docs/benchmarks.md, "admin-tui at scale"). Runs with search_path set to
-- the org schema.
CREATE INDEX jobs_cancelled_idx ON jobs (id) WHERE status = 'cancelled';
