-- Feature flag values. Flags themselves are declared in code; a row with
-- org_id NULL is the global value, a row with an org_id overrides it there.
CREATE TABLE feature_flags (
    name       text        NOT NULL,
    org_id     uuid        REFERENCES orgs (id) ON DELETE CASCADE,
    enabled    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);
CREATE UNIQUE INDEX feature_flags_global_key ON feature_flags (name) WHERE org_id IS NULL;
CREATE UNIQUE INDEX feature_flags_org_key ON feature_flags (name, org_id) WHERE org_id IS NOT NULL;
