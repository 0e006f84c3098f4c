-- Static thing groups, their members, and the account's event configuration.

-- Static thing groups (AWS IoT "thing groups"), nested through their parent.
create table engine.thing_groups (
    group_name   text primary key,
    group_id     uuid not null unique,
    -- The parent group; a group with children cannot be deleted (as on AWS), hence restrict.
    parent_name  text references engine.thing_groups (group_name) on delete restrict,
    description  text,
    attributes   jsonb not null default '{}',
    version      bigint not null default 1,
    created_at   timestamptz not null default now()
);
comment on table engine.thing_groups is 'AWS IoT static thing groups, nested through parent_name.';
create index thing_groups_by_parent on engine.thing_groups (parent_name, group_name);

-- Which things are directly in which groups (membership of a child group is not repeated in
-- its ancestors; recursive listings and job targets walk the hierarchy).
create table engine.thing_group_members (
    group_name text not null references engine.thing_groups (group_name) on delete cascade,
    thing_name text not null references engine.things (thing_name) on delete cascade,
    added_at   timestamptz not null default now(),
    primary key (group_name, thing_name)
);
comment on table engine.thing_group_members is 'Direct membership of things in static thing groups.';
create index thing_group_members_by_thing on engine.thing_group_members (thing_name, group_name);

-- UpdateEventConfigurations: which `$aws/events/…` event types are published. A type without
-- a row is disabled, the AWS default.
create table engine.event_configurations (
    event_type  text primary key,
    enabled     boolean not null,
    updated_at  timestamptz not null default now()
);
comment on table engine.event_configurations is 'Which AWS IoT event types the engine publishes (UpdateEventConfigurations).';
