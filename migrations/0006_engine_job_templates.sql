-- Job templates (CreateJobTemplate): reusable job documents and configurations.
create table engine.job_templates (
    job_template_id text primary key,
    description     text not null,
    -- The job document, or where to fetch it; one of the two is set.
    document        text,
    document_source text,
    -- presignedUrlConfig, jobExecutionsRolloutConfig, abortConfig, timeoutConfig,
    -- jobExecutionsRetryConfig, maintenanceWindows and destinationPackageVersions, as the
    -- request spelled them, so DescribeJobTemplate returns them unchanged.
    config          jsonb not null default '{}',
    created_at      timestamptz not null default now(),
    check (document is not null or document_source is not null)
);
comment on table engine.job_templates is 'Custom job templates; AWS managed templates are built into the engine.';

create index job_templates_by_created on engine.job_templates (created_at desc, job_template_id desc);
