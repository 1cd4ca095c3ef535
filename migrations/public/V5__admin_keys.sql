-- SSH public keys of platform admins: admin-tui's built-in SSH server lets in
-- only a key listed here whose user is an active platform admin.
CREATE TABLE admin_keys (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- what the operator calls the key (by default the key's own comment)
    name         text        NOT NULL DEFAULT '',
    -- e.g. ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa
    algorithm    text        NOT NULL,
    -- OpenSSH form "ALGORITHM BASE64", without the comment
    public_key   text        NOT NULL,
    -- "SHA256:..." as `ssh-keygen -l` prints it
    fingerprint  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    CONSTRAINT admin_keys_fingerprint_key UNIQUE (fingerprint)
);
CREATE INDEX admin_keys_user_id_idx ON admin_keys (user_id);
