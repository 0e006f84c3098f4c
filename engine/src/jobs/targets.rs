//! Job targets: which things a job's target ARNs (things and static thing groups, nested)
//! name, and keeping continuous jobs in step with group membership.
//!
//! A SNAPSHOT job gets executions for the members its target groups have when it is created.
//! A CONTINUOUS job also gets one for every thing that joins a target group later, and a
//! thing that leaves has its QUEUED execution REMOVED (an IN_PROGRESS one is left to finish),
//! as the AWS developer guide describes. A thing that rejoins after its execution was REMOVED
//! is queued again with the next execution number.
//!
//! Membership changes and the creation of group-targeted jobs serialize on one advisory lock
//! ([`lock_membership`]); without it a thing joining a group while a continuous job is being
//! created could be missed by both.

use std::collections::HashSet;

use sqlx::PgConnection;

use super::{EXECUTION_COLUMNS, ExecutionRow, Result, ServiceError};
use crate::model::{Arns, Target};

/// `tree(group_name)`: the groups named in `$1` (a `text[]`) and all their descendants.
pub(super) const GROUP_TREE: &str = "with recursive tree(group_name) as (
         select group_name from engine.thing_groups where group_name = any($1)
         union
         select g.group_name from engine.thing_groups g join tree t on g.parent_name = t.group_name)";

/// The key of the advisory lock that serializes membership changes with group-targeted
/// CreateJob calls ("flotgrps").
const MEMBERSHIP_LOCK: i64 = 0x666c_6f74_6772_7073;

/// Takes the membership lock for the rest of the transaction.
pub(super) async fn lock_membership(tx: &mut PgConnection) -> Result<()> {
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(MEMBERSHIP_LOCK)
        .execute(tx)
        .await?;
    Ok(())
}

/// Takes the membership lock in shared mode for the rest of the transaction: for changes of
/// one thing's attributes (CreateThing, UpdateThing), which may move that thing in or out of
/// dynamic groups. They exclude every other membership change and group-targeted CreateJob
/// (which take the lock exclusively) but not each other; two of them on one thing serialize
/// on its row.
pub(super) async fn lock_membership_shared(tx: &mut PgConnection) -> Result<()> {
    sqlx::query("select pg_advisory_xact_lock_shared($1)")
        .bind(MEMBERSHIP_LOCK)
        .execute(tx)
        .await?;
    Ok(())
}

/// Target ARNs split into thing names and group names, each sorted and deduplicated.
#[derive(Debug, Default)]
struct ParsedTargets {
    things: Vec<String>,
    groups: Vec<String>,
}

fn parse(arns: &Arns, targets: &[String]) -> Result<ParsedTargets> {
    let mut parsed = ParsedTargets::default();
    for arn in targets {
        match arns.parse_target(arn) {
            Some(Target::Thing(name)) => parsed.things.push(name),
            Some(Target::ThingGroup(name)) => parsed.groups.push(name),
            None => {
                return Err(ServiceError::invalid(format!(
                    "target {arn:?} is not a thing or thing group ARN of this account and region"
                )));
            }
        }
    }
    for names in [&mut parsed.things, &mut parsed.groups] {
        names.sort();
        names.dedup();
    }
    Ok(parsed)
}

/// The things a job created now with `targets` runs on: the named things and every member of
/// the named groups and their descendants, each once, in name order. Every named thing and
/// group must exist (ResourceNotFoundException otherwise). Takes the membership lock when a
/// group is named.
pub(super) async fn resolve(
    tx: &mut PgConnection,
    arns: &Arns,
    targets: &[String],
) -> Result<Vec<String>> {
    let parsed = parse(arns, targets)?;
    let known_things: Vec<String> =
        sqlx::query_scalar("select thing_name from engine.things where thing_name = any($1)")
            .bind(&parsed.things)
            .fetch_all(&mut *tx)
            .await?;
    missing("Things", &parsed.things, &known_things)?;
    if parsed.groups.is_empty() {
        return Ok(parsed.things);
    }
    lock_membership(tx).await?;
    let known_groups: Vec<String> =
        sqlx::query_scalar("select group_name from engine.thing_groups where group_name = any($1)")
            .bind(&parsed.groups)
            .fetch_all(&mut *tx)
            .await?;
    missing("Thing groups", &parsed.groups, &known_groups)?;
    let members: Vec<String> = sqlx::query_scalar(&format!(
        "{GROUP_TREE}
         select distinct m.thing_name from engine.thing_group_members m join tree using (group_name)"
    ))
    .bind(&parsed.groups)
    .fetch_all(&mut *tx)
    .await?;
    let mut things = parsed.things;
    things.extend(members);
    things.sort();
    things.dedup();
    Ok(things)
}

fn missing(what: &str, named: &[String], known: &[String]) -> Result<()> {
    let missing: Vec<&String> = named.iter().filter(|n| !known.contains(n)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!(
            "{what} not found: {missing:?}"
        )))
    }
}

/// What [`reconcile_continuous`] changed.
#[derive(Debug, Default)]
pub(super) struct Reconciled {
    /// Executions queued for things that joined a target group.
    pub queued: Vec<ExecutionRow>,
    /// QUEUED executions REMOVED because their thing is no longer a target.
    pub removed: Vec<ExecutionRow>,
}

impl Reconciled {
    /// The things whose execution was removed, each once: their next job may have changed.
    /// (Queued executions reach their devices when the rollout releases them.)
    pub(super) fn removed_things(&self) -> Vec<String> {
        let mut things: Vec<String> = self.removed.iter().map(|e| e.thing_name.clone()).collect();
        things.sort();
        things.dedup();
        things
    }
}

/// Brings the executions of every IN_PROGRESS continuous job in line with the current group
/// membership of `things`, after a membership change. The caller holds the membership lock;
/// this locks the jobs' rows (in id order, before their executions, as every path does).
pub(super) async fn reconcile_continuous(
    tx: &mut PgConnection,
    arns: &Arns,
    things: &[String],
) -> Result<Reconciled> {
    let jobs: Vec<(String, Vec<String>)> = sqlx::query_as(
        "select job_id, targets from engine.jobs
         where target_selection = 'CONTINUOUS' and status = 'IN_PROGRESS'
         order by job_id for update",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut reconciled = Reconciled::default();
    for (job_id, targets) in jobs {
        // Stored targets were valid when the job was created.
        let Ok(parsed) = parse(arns, &targets) else {
            continue;
        };
        let in_groups: Vec<String> = sqlx::query_scalar(&format!(
            "{GROUP_TREE}
             select distinct m.thing_name from engine.thing_group_members m join tree using (group_name)
             where m.thing_name = any($2)"
        ))
        .bind(&parsed.groups)
        .bind(things)
        .fetch_all(&mut *tx)
        .await?;
        let targeted: HashSet<&String> = in_groups
            .iter()
            .chain(parsed.things.iter().filter(|t| things.contains(t)))
            .collect();
        let (joined, left): (Vec<String>, Vec<String>) =
            things.iter().cloned().partition(|t| targeted.contains(t));

        // A thing without an execution gets its first; one whose execution was REMOVED gets
        // the next. Any other execution (pending or finished) stays as it is.
        let queued: Vec<ExecutionRow> = sqlx::query_as(&format!(
            "insert into engine.job_executions as e (job_id, thing_name, execution_number, status)
             select $1, thing, 1, 'QUEUED' from unnest($2::text[]) as thing
             on conflict (job_id, thing_name) do update set
                 status = 'QUEUED', execution_number = e.execution_number + 1,
                 status_details = '{{}}', version_number = 1, queued_at = now(),
                 started_at = null, last_updated_at = now(), step_timeout_at = null,
                 force_canceled = false, notified_at = null, in_progress_timeout_at = null,
                 failed_retries = 0, timed_out_retries = 0
             where e.status = 'REMOVED'
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(&job_id)
        .bind(&joined)
        .fetch_all(&mut *tx)
        .await?;
        let removed: Vec<ExecutionRow> = sqlx::query_as(&format!(
            "update engine.job_executions set status = 'REMOVED',
                 version_number = version_number + 1, last_updated_at = now()
             where job_id = $1 and thing_name = any($2) and status = 'QUEUED'
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(&job_id)
        .bind(&left)
        .fetch_all(&mut *tx)
        .await?;
        reconciled.queued.extend(queued);
        reconciled.removed.extend(removed);
    }
    Ok(reconciled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_things_and_groups_once_each() {
        let arns = Arns {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let targets = [
            arns.thing_group("g-2"),
            arns.thing("t-1"),
            arns.thing_group("g-1"),
            arns.thing("t-1"),
        ];
        let parsed = parse(&arns, &targets).expect("valid targets");
        assert_eq!(parsed.things, ["t-1"]);
        assert_eq!(parsed.groups, ["g-1", "g-2"]);
        let foreign = ["arn:aws:iot:eu-west-1:000000000000:thinggroup/g-1".to_owned()];
        assert!(parse(&arns, &foreign).is_err());
    }
}
