-- CancelJob: what DescribeJob and DescribeJobExecution report about a cancellation.
alter table engine.jobs
    -- Whether CancelJob was called with force=true (IN_PROGRESS executions canceled too).
    add column force_canceled boolean not null default false,
    -- CancelJob's reasonCode and comment, as given.
    add column reason_code text,
    add column comment text;

alter table engine.job_executions
    -- Whether the execution was canceled by a CancelJob with force=true.
    add column force_canceled boolean not null default false;

-- ListJobs pages newest first.
create index jobs_by_created on engine.jobs (created_at desc, job_id desc);
