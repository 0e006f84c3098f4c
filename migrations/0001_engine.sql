-- The embedded engine's state: what AWS IoT would hold for one account and region.
-- The engine owns schema `engine`; nothing else writes to it.
create schema if not exists engine;

-- Registered devices (AWS IoT "things").
create table engine.things (
    thing_name      text primary key,
    thing_id        uuid not null unique,
    thing_type_name text,
    attributes      jsonb not null default '{}',
    version         bigint not null default 1,
    created_at      timestamptz not null default now()
);
comment on table engine.things is 'AWS IoT things: the devices the engine knows.';

-- Jobs as CreateJob received them.
create table engine.jobs (
    job_id           text primary key,
    description      text,
    -- The job document exactly as given (AWS keeps the string).
    document         text not null,
    target_selection text not null check (target_selection in ('SNAPSHOT', 'CONTINUOUS')),
    status           text not null check (status in ('IN_PROGRESS', 'CANCELED', 'COMPLETED', 'DELETION_IN_PROGRESS', 'SCHEDULED')),
    -- Target ARNs, as given.
    targets          text[] not null,
    -- The optional CreateJob configurations (rollout, abort, timeout, retry, presigned URLs,
    -- scheduling), kept as the request spelled them so DescribeJob returns them unchanged.
    config           jsonb not null default '{}',
    created_at       timestamptz not null default now(),
    last_updated_at  timestamptz not null default now(),
    completed_at     timestamptz
);
comment on table engine.jobs is 'AWS IoT jobs.';

-- One row per (job, thing): the device's execution of the job.
create table engine.job_executions (
    job_id           text not null references engine.jobs (job_id) on delete cascade,
    thing_name       text not null,
    execution_number bigint not null,
    status           text not null check (status in ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED')),
    status_details   jsonb not null default '{}',
    version_number   bigint not null default 1,
    queued_at        timestamptz not null default now(),
    started_at       timestamptz,
    last_updated_at  timestamptz not null default now(),
    -- When the current step times out (stepTimeoutInMinutes), if the device asked for one.
    step_timeout_at  timestamptz,
    primary key (job_id, thing_name)
);
comment on table engine.job_executions is 'AWS IoT job executions: one device''s run of one job.';

-- A device asks "what is my next job?" on every connect and after every job.
create index job_executions_pending_by_thing
    on engine.job_executions (thing_name, queued_at, job_id)
    where status in ('QUEUED', 'IN_PROGRESS');
-- DescribeJob counts executions per status.
create index job_executions_by_job_status on engine.job_executions (job_id, status);
