-- The dashboard API's own state: job templates with their versions, and the audit log.

-- A job template of the server's own. Its content lives in its versions.
create table server.job_templates (
    template_id    text primary key,
    -- 'custom', or 'aws_managed' for an imported AWS managed template.
    source         text not null default 'custom' check (source in ('custom', 'aws_managed')),
    latest_version integer not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);
comment on table server.job_templates is 'Job templates of the dashboard; every update adds a version.';

-- One saved version of a template. Versions are never changed, so a job created from a
-- version can always be traced back to the exact document it was rendered from.
create table server.job_template_versions (
    template_id         text not null references server.job_templates (template_id) on delete cascade,
    version             integer not null,
    description         text,
    -- A JSON object; string values may hold ${aws:iot:parameter:NAME} placeholders.
    document            jsonb not null,
    -- The typed parameters (name, type, required, default, pattern, min, max, values).
    parameters          jsonb not null default '[]',
    created_at          timestamptz not null default now(),
    -- The AWS job template this version was synced to (CreateJobTemplate), if any.
    aws_job_template_id text,
    primary key (template_id, version)
);
comment on table server.job_template_versions is 'The immutable versions of each job template.';

-- Every mutation attempted through the API, written whether it succeeded or was refused.
create table server.audit_log (
    id       bigint generated always as identity primary key,
    at       timestamptz not null default now(),
    -- Who acted; 'anonymous' until requests are authenticated.
    actor    text not null,
    -- Method and route template, e.g. 'POST /api/v1/jobs/{job_id}/cancel'.
    action   text not null,
    -- The request path, naming the resource acted on.
    target   text not null,
    -- The request body with large values (documents) reduced to their size.
    request  jsonb,
    -- The HTTP status answered, and 'ok' or the error's stable code.
    status   integer not null,
    outcome  text not null,
    -- The client's address as the server saw it.
    source   text
);
comment on table server.audit_log is 'Audit trail of every API mutation, refused attempts included.';
create index audit_log_by_action on server.audit_log (action, id desc);
create index audit_log_by_target on server.audit_log (target, id desc);
