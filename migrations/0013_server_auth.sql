-- Authentication: personal API tokens, and the role of each audited actor.

-- A personal API token for scripts and CI pipelines. Its secret is shown once, at creation;
-- only its SHA-256 is kept (the secret is 32 random bytes, so a plain hash cannot be
-- reversed by guessing).
create table server.api_tokens (
    id             uuid primary key,
    -- The user the token acts for.
    owner          text not null,
    name           text not null,
    -- At most the owner's role when the token was made.
    role           text not null check (role in ('viewer', 'technician', 'operator', 'admin')),
    secret_sha256  text not null unique,
    created_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    last_used_at   timestamptz,
    revoked_at     timestamptz
);
comment on table server.api_tokens is 'Personal API tokens: role-scoped, expiring, stored as the SHA-256 of their secret.';
create index api_tokens_by_owner on server.api_tokens (owner, created_at desc);

alter table server.audit_log add column role text;
comment on column server.audit_log.role is 'The actor''s role when it acted; null for anonymous requests and the server''s own changes.';
