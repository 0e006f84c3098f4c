-- The dashboard server's state. The server owns schema `server`.
create schema if not exists server;

-- The server's projection of IoT jobs: what the UI lists, kept current from job events and
-- periodic reconciliation, so page views never fan out to AWS.
create table server.jobs (
    job_id         text primary key,
    job_arn        text not null,
    status         text not null,
    description    text,
    targets        text[] not null default '{}',
    queued         bigint not null default 0,
    in_progress    bigint not null default 0,
    succeeded      bigint not null default 0,
    failed         bigint not null default 0,
    rejected       bigint not null default 0,
    canceled       bigint not null default 0,
    timed_out      bigint not null default 0,
    removed        bigint not null default 0,
    created_at     timestamptz not null,
    updated_at     timestamptz not null,
    completed_at   timestamptz,
    -- When the projection last read this job from IoT.
    synced_at      timestamptz not null default now()
);
comment on table server.jobs is 'Projection of IoT jobs with their execution counts.';
create index jobs_by_created on server.jobs (created_at desc, job_id);

-- The projection of each device's execution of a job.
create table server.job_executions (
    job_id           text not null references server.jobs (job_id) on delete cascade,
    thing_name       text not null,
    status           text not null,
    execution_number bigint,
    queued_at        timestamptz,
    started_at       timestamptz,
    updated_at       timestamptz,
    primary key (job_id, thing_name)
);
comment on table server.job_executions is 'Projection of IoT job executions.';
