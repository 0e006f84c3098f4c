-- Fleet inventory (issue 12): dynamic thing groups in the engine.

-- A dynamic thing group is a thing group with a fleet-indexing query; the engine evaluates
-- the query and keeps its members in engine.thing_group_members like a static group's.
alter table engine.thing_groups
    add column query_string  text,
    add column index_name    text,
    add column query_version text;
comment on column engine.thing_groups.query_string is 'A dynamic group''s fleet-indexing query (CreateDynamicThingGroup); null for a static group.';
comment on column engine.thing_groups.index_name is 'The index a dynamic group queries (always AWS_Things); null for a static group.';
comment on column engine.thing_groups.query_version is 'The query language version a dynamic group was created with; null for a static group.';
create index thing_groups_dynamic on engine.thing_groups (group_name) where query_string is not null;

-- Device shadows (classic and named), as the Device Shadow service's MQTT API keeps them.
-- The agent reports the software it runs in the named shadow `flotilla`.
create table engine.shadows (
    thing_name  text not null references engine.things (thing_name) on delete cascade,
    -- '' for the classic (unnamed) shadow.
    shadow_name text not null,
    -- {"desired": {...}, "reported": {...}}
    state       jsonb not null,
    -- The same shape with {"timestamp": epoch seconds} at each leaf.
    metadata    jsonb not null,
    version     bigint not null,
    updated_at  timestamptz not null default now(),
    primary key (thing_name, shadow_name)
);
comment on table engine.shadows is 'AWS IoT device shadows (classic: shadow_name = ''''), updated over the Device Shadow MQTT API.';

-- The server's inventory projection: one row per device (thing), fed by the presence
-- lifecycle events, the `flotilla` shadow's update documents, the job-execution projection and
-- a resync from the registry. Everything a device search filters on is a column of this row,
-- so a search is one index-assisted scan without joins: `groups` holds the thing's groups and
-- all their ancestors.
create table server.devices (
    thing_name        text primary key collate "C",
    thing_type_name   text,
    attributes        jsonb not null default '{}',
    -- The thing's groups (static and dynamic) and every ancestor of them, sorted.
    groups            text[] not null default '{}',
    connected         boolean not null default false,
    -- The last lifecycle event's time (connected or disconnected).
    last_seen_at      timestamptz,
    -- The lifecycle events' versionNumber and time, so older events cannot undo newer ones.
    presence_version  bigint,
    installed_version text,
    agent_version     text,
    version_reported_at timestamptz,
    last_job_id       text,
    last_job_status   text,
    last_job_at       timestamptz,
    registered_at     timestamptz not null default now(),
    synced_at         timestamptz not null default now()
);
comment on table server.devices is 'Inventory projection: one row per thing with attributes, groups (with ancestors), connectivity, installed version and last job outcome.';
create index devices_attributes on server.devices using gin (attributes jsonb_path_ops);
create index devices_groups on server.devices using gin (groups);
create index devices_version on server.devices (installed_version, thing_name);
create index devices_connected on server.devices (connected, thing_name);
create index devices_last_job on server.devices (last_job_status, thing_name);

-- Connectivity over time, one row per lifecycle event.
create table server.device_presence (
    thing_name  text not null,
    connected   boolean not null,
    at          timestamptz not null,
    -- disconnectReason of a disconnect, as AWS IoT reports it.
    reason      text,
    ip_address  text,
    primary key (thing_name, at, connected)
);
comment on table server.device_presence is 'Connectivity history of each device, from the presence lifecycle events.';

-- Installed versions over time, one row per change the device reported.
create table server.device_versions (
    thing_name  text not null,
    version     text not null,
    reported_at timestamptz not null,
    primary key (thing_name, reported_at)
);
comment on table server.device_versions is 'Software versions each device reported in its flotilla shadow, when they changed.';

-- A device's last finished job execution follows the job-execution projection.
create function server.device_last_job() returns trigger language plpgsql as $$
begin
    if new.status in ('SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT', 'CANCELED', 'REMOVED') then
        update server.devices
           set last_job_id = new.job_id, last_job_status = new.status,
               last_job_at = coalesce(new.updated_at, now())
         where thing_name = new.thing_name
           and (last_job_at is null or last_job_at <= coalesce(new.updated_at, now()));
    end if;
    return new;
end $$;
comment on function server.device_last_job() is 'Keeps server.devices.last_job_* at the latest finished execution of each thing.';
create trigger job_executions_device_last_job after insert or update of status
    on server.job_executions for each row execute function server.device_last_job();

-- A device page lists the device's executions, newest first.
create index job_executions_by_thing on server.job_executions (thing_name, updated_at desc);

-- One-time download bundles of registered devices: the certificate, its private key (when the
-- server had it generated), the CA, the endpoint and the agent's configuration. A bundle is
-- deleted when it is downloaded or when it expires, whichever comes first.
create table server.device_bundles (
    token       text primary key,
    thing_name  text not null,
    bundle      jsonb not null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null
);
comment on table server.device_bundles is 'One-time credential bundles of newly registered devices, deleted on download or expiry.';
create index device_bundles_expiry on server.device_bundles (expires_at);
