-- The engine as a certificate authority: its CA key pair, the device certificates it issued
-- (CreateKeysAndCertificate, CreateCertificateFromCsr) and which things they are attached to
-- (AttachThingPrincipal). The broker's TLS listener trusts the CA and admits a device only with
-- an ACTIVE, unexpired certificate attached to the thing it connects as.

-- The one CA of this engine, made on first start and kept so that certificates issued before a
-- restart stay valid.
create table engine.certificate_authority (
    -- Always true: the table holds at most one row.
    singleton       boolean primary key default true check (singleton),
    certificate_pem text not null,
    -- PKCS#8 PEM. The database is the engine's trust root, as the control plane's secret is.
    private_key_pem text not null,
    created_at      timestamptz not null default now()
);
comment on table engine.certificate_authority is
    'The engine''s certificate authority: signs device certificates and the broker''s TLS certificate.';

create table engine.certificates (
    -- AWS's certificate id: the SHA-256 of the certificate's DER, in hex.
    certificate_id   text primary key,
    -- The certificate's serial number in lowercase hex without leading zeros, as the broker
    -- sees it in the TLS handshake.
    serial_number    text not null unique,
    certificate_pem  text not null,
    status           text not null check (status in ('ACTIVE', 'INACTIVE', 'REVOKED')),
    not_before       timestamptz not null,
    not_after        timestamptz not null,
    created_at       timestamptz not null default now(),
    last_modified_at timestamptz not null default now(),
    -- Changes with every update, as DescribeCertificate's generationId does.
    generation_id    uuid not null
);
comment on table engine.certificates is 'Device certificates issued by the engine''s CA.';
create index certificates_by_creation on engine.certificates (created_at, certificate_id);

create table engine.thing_principals (
    thing_name     text not null references engine.things (thing_name) on delete cascade,
    certificate_id text not null references engine.certificates (certificate_id),
    attached_at    timestamptz not null default now(),
    primary key (thing_name, certificate_id)
);
comment on table engine.thing_principals is
    'AttachThingPrincipal: the certificates a thing may connect with.';
create index thing_principals_by_certificate on engine.thing_principals (certificate_id);
