-- The audit log becomes append-only and hash-chained, so a changed or deleted entry is
-- detectable (`flotilla audit verify`, `GET /api/v1/audit/verify`); and browser sessions for
-- OpenID Connect sign-in get their table.
--
-- Entry n stores hash_n = sha256(hash_{n-1} || encoding of entry n), hash_0 being 32 zero
-- bytes. The encoding (server.audit_log_encoding) is, in this order: seq, id and the time in
-- microseconds since 1970 as 8-byte big-endian integers; actor, role, action, target, request
-- (jsonb's text form), each as 0x00 when null or 0x01, its UTF-8 length as a 4-byte big-endian
-- integer and its UTF-8 bytes; status as a 4-byte big-endian integer; outcome and source like
-- the other texts. server/src/audit/chain.rs computes the same bytes to verify the chain.

-- Nothing may be written while existing entries are chained.
lock table server.audit_log in exclusive mode;

alter table server.audit_log add column seq bigint, add column hash bytea;
comment on column server.audit_log.seq is 'The entry''s place in the hash chain: 1, 2, 3 … without gaps, in the order entries were written.';
comment on column server.audit_log.hash is 'sha256(the previous entry''s hash || this entry''s encoding); see migration 0019.';

create function server.audit_log_text(value text) returns bytea
language sql immutable as $$
    select case when value is null then '\x00'::bytea
                else '\x01'::bytea || int4send(octet_length(convert_to(value, 'UTF8')))
                     || convert_to(value, 'UTF8') end
$$;
comment on function server.audit_log_text(text) is 'One text field of an audit entry''s hashed encoding.';

create function server.audit_log_encoding(entry server.audit_log) returns bytea
language sql immutable as $$
    select int8send(entry.seq)
        || int8send(entry.id)
        || int8send((extract(epoch from entry.at) * 1000000)::bigint)
        || server.audit_log_text(entry.actor)
        || server.audit_log_text(entry.role)
        || server.audit_log_text(entry.action)
        || server.audit_log_text(entry.target)
        || server.audit_log_text(entry.request::text)
        || int4send(entry.status)
        || server.audit_log_text(entry.outcome)
        || server.audit_log_text(entry.source)
$$;
comment on function server.audit_log_encoding(server.audit_log) is 'The bytes of an audit entry that its hash covers.';

-- Chain the entries written so far, oldest first.
do $$
declare
    entry server.audit_log;
    previous bytea := decode(repeat('00', 32), 'hex');
    n bigint := 0;
begin
    for entry in select * from server.audit_log order by id loop
        n := n + 1;
        entry.seq := n;
        previous := sha256(previous || server.audit_log_encoding(entry));
        update server.audit_log set seq = n, hash = previous where id = entry.id;
    end loop;
end
$$;

alter table server.audit_log alter column seq set not null, alter column hash set not null;
create unique index audit_log_by_seq on server.audit_log (seq);

-- Every insert, whoever makes it, is chained here. Writers take one transaction-scoped
-- advisory lock, so the next writer (on any replica) waits until this entry is committed or
-- rolled back and then chains onto what is really there: the chain never forks, and never
-- points at an entry that was rolled back. The unique index on seq refuses a fork should a
-- writer ever read a stale predecessor.
create function server.audit_log_chain() returns trigger
language plpgsql as $$
declare
    previous record;
begin
    perform pg_advisory_xact_lock(hashtext('server.audit_log'));
    select seq, hash into previous from server.audit_log order by seq desc limit 1;
    new.seq := coalesce(previous.seq, 0) + 1;
    new.hash := sha256(coalesce(previous.hash, decode(repeat('00', 32), 'hex'))
                       || server.audit_log_encoding(new));
    return new;
end
$$;
create trigger audit_log_chain before insert on server.audit_log
    for each row execute function server.audit_log_chain();

-- Append-only: no update, delete or truncate, for the application's role and any other that
-- does not first disable triggers (which only the owner or a superuser can, and which the
-- chain then reveals).
create function server.audit_log_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'server.audit_log is append-only: % is refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;
create trigger audit_log_append_only before update or delete on server.audit_log
    for each row execute function server.audit_log_refuse_change();
create trigger audit_log_no_truncate before truncate on server.audit_log
    for each statement execute function server.audit_log_refuse_change();
-- The role that migrates is normally the one the server runs as; it keeps INSERT and SELECT.
revoke update, delete, truncate on server.audit_log from current_user;

-- Browser sessions of OpenID Connect sign-in, in the layout tower-sessions' PostgreSQL store
-- reads and writes. A session holds a sign-in in progress (state, nonce, PKCE verifier) or the
-- signed-in user with their role and CSRF token; the cookie carries only the id.
create table server.sessions (
    id          text primary key,
    -- The session's record, MessagePack-encoded by the store.
    data        bytea not null,
    -- When it ends unless used again (the idle timeout); the absolute timeout is in data.
    expiry_date timestamptz not null
);
comment on table server.sessions is 'Browser sessions of OpenID Connect sign-in (tower-sessions).';
create index sessions_by_expiry on server.sessions (expiry_date);
