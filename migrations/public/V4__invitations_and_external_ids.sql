-- Invitations by email with a single-use, expiring token (stored hashed).
CREATE TABLE invitations (
    id          uuid        PRIMARY KEY,
    org_id      uuid        NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email       text        NOT NULL,
    role        text        NOT NULL,
    token_hash  bytea       NOT NULL,
    invited_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid,
    CONSTRAINT invitations_token_hash_key UNIQUE (token_hash),
    CONSTRAINT invitations_role_check CHECK (role IN ('owner', 'admin', 'member', 'viewer'))
);
CREATE INDEX invitations_org_id_idx ON invitations (org_id, created_at);

-- Trusted-header sign-in: the external id (e.g. a campus NetID) is kept only
-- as HMAC-SHA-256 under the server's SECRET_KEY.
ALTER TABLE users ADD COLUMN external_id_hmac bytea;
CREATE UNIQUE INDEX users_external_id_hmac_key ON users (external_id_hmac) WHERE external_id_hmac IS NOT NULL;
