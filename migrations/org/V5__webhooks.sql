-- Webhook endpoints registered by the org's admins, and every delivery to
-- them (one row per event and endpoint; a replay is a new row).
CREATE TABLE webhook_endpoints (
    id           uuid        PRIMARY KEY,
    url          text        NOT NULL,
    -- standard: Standard Webhooks (signed JSON); discord: Discord's format
    kind         text        NOT NULL DEFAULT 'standard',
    event_types  text[]      NOT NULL,
    enabled      boolean     NOT NULL DEFAULT true,
    -- `whsec_...`: signs every delivery; shown once, when made
    secret       text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_kind_check CHECK (kind IN ('standard', 'discord'))
);

CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- the event; the same on a replay (it is the `webhook-id`)
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    job_id           uuid,
    response_status  integer,
    latency_ms       integer,
    response_excerpt text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending', 'succeeded', 'failed'))
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id DESC);
