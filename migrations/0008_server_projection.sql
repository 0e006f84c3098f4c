-- The projection fed by events and reconciliation: every observation of an execution is
-- applied idempotently by (job, thing, executionNumber, versionNumber), every real status
-- change is kept as a transition, and every change of the projection is appended to a feed
-- that live clients (`GET /api/v1/stream`) follow across server replicas.

-- What the projection knows of an execution besides its status: the version the device
-- last reported (absent when only AWS's events or list APIs told us), and its statusDetails.
alter table server.job_executions
    add column version_number bigint,
    add column status_details jsonb not null default '{}',
    -- When this row last changed in the projection.
    add column observed_at timestamptz not null default now();

-- Keyset pages of one job's executions filtered by status.
create index job_executions_by_status on server.job_executions (job_id, status, thing_name);

-- Every status change of every execution, with when it happened: the history behind
-- progress charts. One row per real change; duplicates and stale observations add none.
create table server.execution_transitions (
    id               bigint generated always as identity primary key,
    job_id           text not null references server.jobs (job_id) on delete cascade,
    thing_name       text not null,
    execution_number bigint,
    -- Null for the first status the projection saw.
    from_status      text,
    to_status        text not null,
    -- When the change happened, as the source reported it (else when it was observed).
    changed_at       timestamptz not null,
    recorded_at      timestamptz not null default now(),
    -- Which feed told us: 'event', 'extension' or 'reconcile'.
    source           text not null
);
comment on table server.execution_transitions is
    'Every execution status transition with its time, the history behind progress charts.';
create index execution_transitions_by_job on server.execution_transitions (job_id, changed_at);

-- The feed of projection changes, in commit order (writers serialise on an advisory lock so
-- ids become visible in increasing order). Its id is the SSE event id, so a client that
-- reconnects with Last-Event-ID resumes exactly where it stopped. Each commit NOTIFYs
-- channel `server_changes` so every replica wakes its live clients.
create table server.changes (
    id          bigint generated always as identity primary key,
    job_id      text not null,
    -- 'job', 'job_deleted' or 'execution'.
    kind        text not null,
    payload     jsonb not null,
    created_at  timestamptz not null default now()
);
comment on table server.changes is
    'Feed of projection changes for live clients; ids are SSE event ids. Pruned after a day.';
create index changes_by_job on server.changes (job_id, id);
create index changes_by_time on server.changes (created_at);
