-- AWS IoT policies (CreatePolicy) and the certificates they are attached to (AttachPolicy).
-- The broker's TLS listener admits a certificate with policies by what they allow
-- (iot:Connect, iot:Subscribe, iot:Receive, iot:Publish), as AWS IoT Core does; a certificate
-- without policies connects as the thing it is attached to.

create table engine.policies (
    policy_name      text primary key,
    -- The JSON document as given (validated at CreatePolicy); one version per policy.
    policy_document  text not null,
    generation_id    uuid not null,
    created_at       timestamptz not null default now(),
    last_modified_at timestamptz not null default now()
);
comment on table engine.policies is 'IoT policies: what a certificate may do on the broker.';

create table engine.policy_targets (
    policy_name    text not null references engine.policies (policy_name),
    -- DeleteCertificate with forceDelete removes the certificate's attachments with it.
    certificate_id text not null references engine.certificates (certificate_id) on delete cascade,
    attached_at    timestamptz not null default now(),
    primary key (policy_name, certificate_id)
);
comment on table engine.policy_targets is 'AttachPolicy: the policies attached to each certificate.';
create index policy_targets_by_certificate on engine.policy_targets (certificate_id);
