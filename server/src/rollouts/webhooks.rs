//! Webhook deliveries of rollout state changes, from the outbox table.
//!
//! An event's outbox rows are written in the transaction of the change itself, so no change
//! is ever announced that did not happen, nor one lost. Every replica sends: a row is locked
//! (`for update skip locked`) while it is sent, so two replicas never send it at once, and it
//! is marked delivered when the receiver answers 2xx; otherwise it is retried with
//! exponential back-off (1 s doubling to an hour). A receiver sees each event id once, except
//! when a replica dies between the receiver's answer and the mark: receivers deduplicate by
//! the `X-Flotilla-Event-Id` header.
//!
//! Each delivery is `POST` with the event as JSON ([`flotilla_api::RolloutEvent`]) and
//! `X-Flotilla-Signature: t={unix seconds},v1={hex HMAC-SHA256 of "{t}.{body}" under the
//! webhook's secret}`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Deliveries sent per batch.
const BATCH: i64 = 20;

/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The back-off before attempt `attempts + 1`.
fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 12) as u32).min(Duration::from_secs(3600))
}

#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    event_id: i64,
    url: String,
    secret: String,
    payload: String,
    attempts: i32,
}

/// Sends due deliveries until `shutdown`; `wake` says new events were written.
pub async fn run(
    pool: sqlx::PgPool,
    wake: Arc<Notify>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client: {error}");
            return;
        }
    };
    loop {
        match send_due(&pool, &client).await {
            // A full batch: there may be more right away.
            Ok(n) if n == BATCH as usize => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "sending webhooks failed: {error}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Sends one batch of due deliveries; how many were due.
async fn send_due(pool: &sqlx::PgPool, client: &reqwest::Client) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    let due: Vec<Due> = sqlx::query_as(
        "select o.id, o.event_id, w.url, w.secret, o.payload::text as payload, o.attempts
         from server.webhook_outbox o join server.rollout_webhooks w on w.id = o.webhook_id
         where o.delivered_at is null and o.next_attempt_at <= now()
         order by o.id limit $1
         for update of o skip locked",
    )
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    for delivery in &due {
        let timestamp = chrono::Utc::now().timestamp();
        let sent = client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("x-flotilla-event-id", delivery.event_id.to_string())
            .header(
                "x-flotilla-signature",
                signature(&delivery.secret, timestamp, delivery.payload.as_bytes()),
            )
            .body(delivery.payload.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the receiver answered {}", response.status())),
            Err(error) => Some(format!("{error}")),
        };
        match failure {
            None => {
                sqlx::query(
                    "update server.webhook_outbox
                     set delivered_at = now(), attempts = attempts + 1, last_error = null
                     where id = $1",
                )
                .bind(delivery.id)
                .execute(&mut *tx)
                .await?;
            }
            Some(error) => {
                let wait = backoff(delivery.attempts);
                tracing::info!(
                    webhook.url = %delivery.url, event.id = delivery.event_id,
                    "webhook delivery of event {} to {} failed ({error}); retrying in {wait:?}",
                    delivery.event_id, delivery.url
                );
                sqlx::query(
                    "update server.webhook_outbox
                     set attempts = attempts + 1, last_error = $2,
                         next_attempt_at = now() + make_interval(secs => $3)
                     where id = $1",
                )
                .bind(delivery.id)
                .bind(error)
                .bind(wait.as_secs_f64())
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // HMAC-SHA256(key "key", message "1.{}"), computed with Python's hmac module.
        assert_eq!(
            signature("key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(signature("other", 1, b"{}"), signature("key", 1, b"{}"));
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(3600));
    }
}
