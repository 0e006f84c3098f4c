//! Which things a rollout reaches and which wave takes each.
//!
//! The target set is read from IoT (named things, thing-group members, attribute filter).
//! Waves take things in the order of a stable hash of rollout id and thing name, so the same
//! rollout over the same set always picks the same things (a preview shows exactly what will
//! happen, a restarted orchestrator re-selects the same wave), while different rollouts spread
//! their canaries over different devices. Explicit canary things go first.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_api::{RolloutTargets, WaveSpec};
use sha2::{Digest, Sha256};

use crate::iot::{Iot, IotError};

/// Every thing `targets` names now, by name.
pub async fn target_set(iot: &Iot, targets: &RolloutTargets) -> Result<BTreeSet<String>, IotError> {
    let mut set: BTreeSet<String> = targets.things.iter().cloned().collect();
    for group in &targets.thing_groups {
        let mut pages = iot
            .sdk()
            .list_things_in_thing_group()
            .thing_group_name(group)
            .recursive(true)
            .max_results(250)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(IotError::from_sdk)?;
            set.extend(page.things.unwrap_or_default());
        }
    }
    if !targets.attributes.is_empty() {
        let attributes = attributes(iot, &targets.attributes).await?;
        set.retain(|thing| {
            attributes.get(thing).is_some_and(|have| {
                targets
                    .attributes
                    .iter()
                    .all(|(k, v)| have.get(k) == Some(v))
            })
        });
    }
    Ok(set)
}

/// The attributes of every thing carrying the first of `filter`'s attributes (ListThings
/// applies that one; the caller checks the rest).
async fn attributes(
    iot: &Iot,
    filter: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, IotError> {
    let first = filter.iter().next();
    let mut pages = iot
        .sdk()
        .list_things()
        .set_attribute_name(first.map(|(k, _)| k.clone()))
        .set_attribute_value(first.map(|(_, v)| v.clone()))
        .max_results(250)
        .into_paginator()
        .send();
    let mut all = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(IotError::from_sdk)?;
        for thing in page.things.unwrap_or_default() {
            if let Some(name) = thing.thing_name {
                all.insert(
                    name,
                    thing.attributes.unwrap_or_default().into_iter().collect(),
                );
            }
        }
    }
    Ok(all)
}

/// The stable position of `thing` in `rollout_id`'s order.
fn rank(rollout_id: &str, thing: &str) -> [u8; 32] {
    Sha256::digest(format!("{rollout_id}\n{thing}")).into()
}

/// How many of `remaining` things a wave of `spec` takes.
fn wave_size(spec: &WaveSpec, remaining: usize) -> usize {
    let size = match (spec.count, spec.percent) {
        (Some(count), _) => usize::try_from(count).unwrap_or(0),
        (None, Some(percent)) => (remaining as f64 * percent / 100.0).ceil() as usize,
        (None, None) => remaining,
    };
    size.clamp(usize::from(remaining > 0), remaining)
}

/// The things wave `number` (1-based) takes from `remaining` (the target set less the things
/// reached already): canaries first in wave 1, then in hash order.
pub fn take(
    rollout_id: &str,
    number: i32,
    spec: &WaveSpec,
    canary: &[String],
    remaining: &BTreeSet<String>,
) -> Vec<String> {
    let size = wave_size(spec, remaining.len());
    let mut chosen: Vec<String> = if number == 1 {
        canary
            .iter()
            .filter(|c| remaining.contains(*c))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let mut ordered: Vec<&String> = remaining.iter().filter(|t| !chosen.contains(*t)).collect();
    ordered.sort_by_cached_key(|thing| rank(rollout_id, thing));
    let wanted = size.saturating_sub(chosen.len());
    chosen.extend(ordered.into_iter().take(wanted).cloned());
    chosen.sort();
    chosen
}

/// The things each of `waves` (numbered from `first`) would take from `remaining`, and what
/// none of them takes.
pub fn plan(
    rollout_id: &str,
    first: i32,
    waves: &[WaveSpec],
    canary: &[String],
    mut remaining: BTreeSet<String>,
) -> (Vec<Vec<String>>, Vec<String>) {
    let mut planned = Vec::new();
    for (i, spec) in waves.iter().enumerate() {
        let things = take(rollout_id, first + i as i32, spec, canary, &remaining);
        for thing in &things {
            remaining.remove(thing);
        }
        planned.push(things);
    }
    (planned, remaining.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> BTreeSet<String> {
        (1..=n).map(|i| format!("sim-{i:04}")).collect()
    }

    fn percent(p: f64) -> WaveSpec {
        WaveSpec {
            percent: Some(p),
            ..WaveSpec::default()
        }
    }

    #[test]
    fn selection_is_reproducible_and_covers_the_set_once() {
        let waves = [
            WaveSpec {
                count: Some(2),
                ..WaveSpec::default()
            },
            percent(10.0),
            percent(50.0),
            percent(100.0),
        ];
        let canary = vec!["sim-0042".to_owned()];
        let (a, left) = plan("fw-2", 1, &waves, &canary, fleet(100));
        let (b, _) = plan("fw-2", 1, &waves, &canary, fleet(100));
        assert_eq!(a, b);
        assert!(left.is_empty());
        let sizes: Vec<usize> = a.iter().map(Vec::len).collect();
        // 2, then 10% of 98 rounded up, half of the 88 left, and the rest.
        assert_eq!(sizes, [2, 10, 44, 44]);
        assert!(a[0].contains(&"sim-0042".to_owned()));
        let all: BTreeSet<&String> = a.iter().flatten().collect();
        assert_eq!(all.len(), 100);
        // Another rollout picks other things first.
        let (other, _) = plan("fw-3", 1, &waves, &[], fleet(100));
        assert_ne!(other[1], a[1]);
    }

    #[test]
    fn small_waves_take_at_least_one_and_leftovers_are_reported() {
        let (waves, left) = plan("r", 1, &[percent(1.0)], &[], fleet(5));
        assert_eq!(waves[0].len(), 1);
        assert_eq!(left.len(), 4);
        let (waves, left) = plan("r", 1, &[percent(50.0)], &[], BTreeSet::new());
        assert!(waves[0].is_empty() && left.is_empty());
    }
}
