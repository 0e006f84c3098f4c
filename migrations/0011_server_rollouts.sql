-- Staged rollouts: a release delivered to a target set in ordered waves, each wave one IoT
-- job, with gates between waves, a failure policy, schedules, and signed webhooks fed from an
-- outbox. The orchestrator (one active across replicas) moves the state machine stored here.

-- One rollout: what it installs, on what, how, and where it stands.
create table server.rollouts (
    rollout_id        text primary key,
    description       text,
    -- The release as requested (kind, template, parameters, version) and the job document it
    -- rendered to at creation, so every wave installs exactly the same thing.
    release           jsonb not null,
    document          jsonb not null,
    -- What a rollback installs (the same shape), and its rendered document.
    previous_release  jsonb,
    previous_document jsonb,
    -- {things, thing_groups, attributes}.
    targets           jsonb not null,
    canary_things     text[] not null default '{}',
    -- Job options every wave inherits: {rollout, abort, timeout, retry}.
    job_options       jsonb not null default '{}',
    -- The gates every wave must pass unless the wave sets its own.
    gates             jsonb not null,
    failure_policy    text not null check (failure_policy in ('pause', 'cancel', 'rollback')),
    -- {time_zone, not_before, windows}; null for "any time".
    schedule          jsonb,
    -- Whether things joining the target set later get the release too.
    continuous        boolean not null default false,
    state             text not null check (state in ('running', 'paused', 'following',
                          'completed', 'canceled', 'rolling_back', 'rolled_back')),
    -- Why the rollout is in its state (a failed gate, an operator's reason), or what it waits for.
    state_reason      text,
    created_by        text not null,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);
comment on table server.rollouts is 'Staged rollouts and the state of their orchestration.';
create index rollouts_active on server.rollouts (state) where state in ('running', 'following', 'rolling_back');

-- The ordered waves of a rollout and the state of each.
create table server.rollout_waves (
    rollout_id      text not null references server.rollouts (rollout_id) on delete cascade,
    -- 1-based.
    number          integer not null,
    -- {count | percent, job_options, gates} as requested.
    spec            jsonb not null,
    state           text not null check (state in ('pending', 'running', 'verifying',
                        'awaiting_approval', 'passed', 'failed', 'canceled')),
    -- The IoT job, always '{rollout_id}-w{number}'; set once it exists.
    job_id          text,
    started_at      timestamptz,
    -- When every execution of the wave reached a terminal state (the soak starts here).
    finished_at     timestamptz,
    passed_at       timestamptz,
    approved_by     text,
    approved_at     timestamptz,
    -- An operator's "promote now": the wave starts without waiting for its window.
    promoted_by     text,
    primary key (rollout_id, number)
);
comment on table server.rollout_waves is 'Waves of a rollout: selection spec, gate progress and the IoT job.';

-- Every thing a rollout has sent its release to, the wave that took it (0 for the
-- continuous follow-up jobs), the job now responsible for it (a retry replaces the wave's
-- job) and when its health check saw the new version.
create table server.rollout_things (
    rollout_id  text not null references server.rollouts (rollout_id) on delete cascade,
    thing_name  text not null,
    wave        integer not null,
    job_id      text not null,
    healthy_at  timestamptz,
    primary key (rollout_id, thing_name)
);
comment on table server.rollout_things is 'Things a rollout targeted, with their wave, current job and health.';
create index rollout_things_by_wave on server.rollout_things (rollout_id, wave);

-- Every IoT job a rollout created: its waves, retries, continuous follow-ups and rollback.
create table server.rollout_jobs (
    job_id      text primary key,
    rollout_id  text not null references server.rollouts (rollout_id) on delete cascade,
    kind        text not null check (kind in ('wave', 'retry', 'continuous', 'rollback')),
    wave        integer,
    created_at  timestamptz not null default now()
);
comment on table server.rollout_jobs is 'IoT jobs created by rollouts.';
create index rollout_jobs_by_rollout on server.rollout_jobs (rollout_id, created_at);

-- Every state change of a rollout or one of its waves, with who and why. Its id is the
-- webhook event id.
create table server.rollout_events (
    id          bigint generated always as identity primary key,
    rollout_id  text not null references server.rollouts (rollout_id) on delete cascade,
    at          timestamptz not null default now(),
    actor       text not null,
    -- 'rollout' or 'wave'.
    subject     text not null,
    wave        integer,
    from_state  text,
    to_state    text not null,
    reason      text
);
comment on table server.rollout_events is 'State changes of rollouts and waves; ids are webhook event ids.';
create index rollout_events_by_rollout on server.rollout_events (rollout_id, id);

-- Where a rollout's state changes are sent. The secret signs each delivery (HMAC-SHA256).
create table server.rollout_webhooks (
    id          bigint generated always as identity primary key,
    rollout_id  text not null references server.rollouts (rollout_id) on delete cascade,
    url         text not null,
    secret      text not null
);
comment on table server.rollout_webhooks is 'Webhook receivers of rollout state changes.';

-- One delivery to make: written in the transaction of the event it carries, sent and retried
-- with back-off until the receiver answers 2xx. One row per (webhook, event): an event is
-- queued once and marked delivered once.
create table server.webhook_outbox (
    id              bigint generated always as identity primary key,
    webhook_id      bigint not null references server.rollout_webhooks (id) on delete cascade,
    event_id        bigint not null references server.rollout_events (id) on delete cascade,
    payload         jsonb not null,
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    delivered_at    timestamptz,
    last_error      text,
    unique (webhook_id, event_id)
);
comment on table server.webhook_outbox is 'Outbox of webhook deliveries, retried with back-off.';
create index webhook_outbox_due on server.webhook_outbox (next_attempt_at) where delivered_at is null;
