-- Jobs IoT deleted, remembered for a day so that late news of them (an event in flight, a
-- reconciliation read taken just before the delete) cannot bring them back into the
-- projection. A job created again under the same id is told apart by its creation time.
create table server.deleted_jobs (
    job_id     text primary key,
    -- The deleted job's createdAt as IoT reported it (null if the projection never knew it).
    created_at timestamptz,
    deleted_at timestamptz not null default now()
);
comment on table server.deleted_jobs is 'Tombstones of deleted jobs: late observations of them are ignored.';
