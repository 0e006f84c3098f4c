-- Job rollouts (AWS's jobExecutionsRolloutConfig, abortConfig, timeoutConfig,
-- jobExecutionsRetryConfig, schedulingConfig): the state that lets a restarted engine carry
-- on a rollout where it stopped, without notifying any device twice.

-- Per job: where its rollout stands. Times come from the engine's clock.
create table engine.job_rollouts (
    job_id          text primary key references engine.jobs (job_id) on delete cascade,
    -- When releasing began (creation, or the scheduled start); null while SCHEDULED.
    -- Rollout minutes are counted from here.
    started_at      timestamptz,
    -- How many times the exponential rate has been increased.
    rate_increases  integer not null default 0,
    -- The last rollout minute (0 = the first) in which the rate-increase criteria were
    -- evaluated, so they are evaluated once per minute however often the engine ticks.
    evaluated_minute bigint not null default -1,
    -- Whether the scheduled end time's STOP_ROLLOUT was applied.
    ended           boolean not null default false
);
comment on table engine.job_rollouts is 'Progress of each job''s staged rollout (rates, schedule).';

-- Jobs created before rollouts existed released everything at creation.
insert into engine.job_rollouts (job_id, started_at)
select job_id, created_at from engine.jobs;

alter table engine.job_executions
    -- When the rollout released the execution to its device (notify, and visible to the
    -- device API). Null while it waits its turn.
    add column notified_at timestamptz,
    -- When the job's inProgressTimeoutInMinutes runs out, set when the execution starts.
    add column in_progress_timeout_at timestamptz,
    -- Retries made so far (jobExecutionsRetryConfig), per failure type; retryAttempt is
    -- their sum.
    add column failed_retries integer not null default 0,
    add column timed_out_retries integer not null default 0;

update engine.job_executions set notified_at = queued_at;

-- The rollout looks for a job's executions still waiting, in order.
create index job_executions_waiting
    on engine.job_executions (job_id, queued_at, thing_name)
    where notified_at is null and status = 'QUEUED';
-- And counts what it released in the current minute.
create index job_executions_notified on engine.job_executions (job_id, notified_at);
