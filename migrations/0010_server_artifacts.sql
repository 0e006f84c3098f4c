-- Artifacts: update files kept in S3 (or the engine's artifact store), verified and signed
-- by the server. An upload in progress and a registered artifact live in separate tables, so
-- a list of artifacts never shows a file that was not completely received, checked and signed.

-- A multipart upload the browser is sending straight to the store, part by part.
create table server.artifact_uploads (
    -- Also the id of the artifact it becomes.
    id             uuid primary key,
    name           text not null,
    version        text not null,
    -- The declared size in bytes; the completed object must have exactly this size.
    size           bigint not null check (size > 0),
    content_type   text not null,
    hardware_types text[] not null default '{}',
    object_key     text not null,
    -- The S3 multipart upload id.
    s3_upload_id   text not null,
    -- Every part but the last has this size.
    part_size      bigint not null check (part_size > 0),
    uploader       text not null,
    created_at     timestamptz not null default now()
);
comment on table server.artifact_uploads is
    'Multipart uploads in progress; a row becomes an artifact once the file is verified and signed.';

-- A verified and signed artifact.
create table server.artifacts (
    id                  uuid primary key,
    name                text not null,
    version             text not null,
    size                bigint not null check (size > 0),
    content_type        text not null,
    hardware_types      text[] not null default '{}',
    -- Lowercase hex SHA-256 of the file, as the server computed it from the stored object.
    sha256              text not null,
    -- Base64 DER ECDSA signature over the SHA-256, and its algorithm.
    signature           text not null,
    signature_algorithm text not null,
    object_key          text not null,
    uploader            text not null,
    created_at          timestamptz not null default now(),
    unique (name, version)
);
comment on table server.artifacts is 'Artifacts whose SHA-256 the server verified and signed.';
create index artifacts_by_created on server.artifacts (created_at desc, id);

-- Which jobs were created from which artifact: an artifact an active job uses cannot be deleted.
create table server.artifact_deployments (
    artifact_id uuid not null references server.artifacts (id) on delete cascade,
    job_id      text not null,
    created_at  timestamptz not null default now(),
    primary key (artifact_id, job_id)
);
comment on table server.artifact_deployments is 'Jobs created from each artifact (its install documents).';
