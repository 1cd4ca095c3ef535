-- Registry of organizations. Each org's data lives in its own schema
-- (`schema_name`, derived from `id`); this table only says where it is.
CREATE TABLE orgs (
    id            uuid        PRIMARY KEY,
    slug          text        NOT NULL,
    name          text        NOT NULL,
    schema_name   text        NOT NULL,
    status        text        NOT NULL DEFAULT 'active',
    -- highest org-lineage migration applied to `schema_name`
    org_version   integer     NOT NULL DEFAULT 0,
    -- last migration failure for this org, cleared by a successful migrate
    migrate_error text,
    migrated_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    CONSTRAINT orgs_slug_key UNIQUE (slug),
    CONSTRAINT orgs_schema_name_key UNIQUE (schema_name),
    CONSTRAINT orgs_status_check CHECK (status IN ('active', 'suspended', 'deleted')),
    CONSTRAINT orgs_deleted_at_check CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);

CREATE INDEX orgs_org_version_idx ON orgs (org_version);
