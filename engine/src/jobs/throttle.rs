//! Per-device request throttling for the Jobs MQTT API.
//!
//! AWS IoT Core limits each connection to 100 publish requests per second and answers a Jobs
//! request over the limit with `RequestThrottled`. The engine does the same per thing, so a
//! device in a retry storm slows only itself and a device agent's backoff can be tested.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second a thing may make, and how many it may make at once after being idle.
pub const REQUESTS_PER_SECOND: f64 = 100.0;
const BURST: f64 = 100.0;

/// A token bucket per thing.
#[derive(Debug, Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Throttle {
    /// Takes one request's token for `thing`; `false` when the thing is over its rate.
    pub fn admit(&self, thing: &str) -> bool {
        self.admit_at(thing, Instant::now())
    }

    fn admit_at(&self, thing: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(thing.to_owned()).or_insert(Bucket {
            tokens: BURST,
            refilled_at: now,
        });
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * REQUESTS_PER_SECOND).min(BURST);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_admitted_then_the_rate_applies_per_thing() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..BURST as usize {
            assert!(throttle.admit_at("a", start));
        }
        assert!(!throttle.admit_at("a", start), "over the burst");
        assert!(throttle.admit_at("b", start), "other things are unaffected");
        let later = start + Duration::from_millis(50);
        let admitted = (0..10).filter(|_| throttle.admit_at("a", later)).count();
        assert_eq!(admitted, 5, "50 ms at 100/s refill 5 tokens");
    }
}
