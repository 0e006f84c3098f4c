//! The audit log's hash chain, checked: what `flotilla audit verify` and
//! `GET /api/v1/audit/verify` run.
//!
//! The database builds the chain (migration 0019): a trigger on every insert, under one
//! advisory lock, gives the entry the next `seq` and stores
//! `hash = sha256(previous hash || encoding of the entry)`, and other triggers refuse UPDATE,
//! DELETE and TRUNCATE. Verification recomputes every hash here, from the fields as stored,
//! with its own implementation of the encoding, so an entry changed directly in the database
//! (with the triggers disabled) no longer matches its hash, and a deleted entry leaves a gap
//! in `seq` and a successor that no longer follows from its predecessor.

use chrono::{DateTime, Utc};
use flotilla_api::{AuditBreak, AuditVerification};
use futures::TryStreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

/// The "previous hash" of the first entry.
const GENESIS: [u8; 32] = [0; 32];

/// An entry as its hash covers it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChainedEntry {
    pub seq: i64,
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    /// The request summary in jsonb's text form, as PostgreSQL renders it (its canonical
    /// form: keys sorted, fixed spacing).
    pub request: Option<String>,
    pub status: i32,
    pub outcome: String,
    pub source: Option<String>,
    pub hash: Vec<u8>,
}

impl ChainedEntry {
    /// The bytes the hash covers, as `server.audit_log_encoding` (migration 0019) makes them:
    /// integers big-endian, each text a presence byte, its length and its UTF-8 bytes.
    pub fn encoding(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.at.timestamp_micros().to_be_bytes());
        for text in [
            Some(self.actor.as_str()),
            self.role.as_deref(),
            Some(self.action.as_str()),
            Some(self.target.as_str()),
            self.request.as_deref(),
        ] {
            push_text(&mut out, text);
        }
        out.extend_from_slice(&self.status.to_be_bytes());
        push_text(&mut out, Some(&self.outcome));
        push_text(&mut out, self.source.as_deref());
        out
    }

    /// The hash this entry must have after `previous`.
    pub fn expected_hash(&self, previous: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        hasher.update(self.encoding());
        hasher.finalize().into()
    }
}

fn push_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            // Entries are far below 4 GiB; a longer text could not have been stored.
            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Walks the whole log in chain order and stops at the first entry that does not follow from
/// the one before it.
pub async fn verify(pool: &PgPool) -> sqlx::Result<AuditVerification> {
    let mut rows = sqlx::query_as::<_, ChainedEntry>(
        "select seq, id, at, actor, role, action, target, request::text as request, status,
                outcome, source, hash
             from server.audit_log
             order by seq",
    )
    .fetch(pool);
    let mut previous = GENESIS.to_vec();
    let mut verified = 0_i64;
    let mut head_id = None;
    while let Some(entry) = rows.try_next().await? {
        let expected_seq = verified + 1;
        let problem = if entry.seq != expected_seq {
            Some(format!(
                "it is number {} in the chain where number {expected_seq} was expected: \
                 the entry before it was deleted, or the chain renumbered",
                entry.seq
            ))
        } else if entry.expected_hash(&previous)[..] != entry.hash[..] {
            Some(
                "its hash does not match its fields and the previous entry's hash: it was \
                 changed (or the previous entry was replaced or deleted)"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            return Ok(AuditVerification {
                intact: false,
                entries: verified,
                head_id,
                head_hash: head_id.map(|_| hex::encode(&previous)),
                broken: Some(AuditBreak {
                    id: entry.id,
                    seq: entry.seq,
                    problem,
                }),
            });
        }
        verified += 1;
        head_id = Some(entry.id);
        previous = entry.hash;
    }
    Ok(AuditVerification {
        intact: true,
        entries: verified,
        head_id,
        head_hash: head_id.map(|_| hex::encode(&previous)),
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> ChainedEntry {
        ChainedEntry {
            seq: 1,
            id: 7,
            at: "2026-01-02T03:04:05.678901Z".parse().expect("a time"),
            actor: "ana".into(),
            role: Some("operator".into()),
            action: "POST /api/v1/jobs".into(),
            target: "/api/v1/jobs".into(),
            request: Some(r#"{"a": "é", "n": 1.50}"#.into()),
            status: 201,
            outcome: "ok".into(),
            source: Some("127.0.0.1".into()),
            hash: Vec::new(),
        }
    }

    /// The hashes PostgreSQL computes with migration 0019's `server.audit_log_encoding` for
    /// the same fields (`select encode(sha256(previous || server.audit_log_encoding(row(…))),
    /// 'hex')`): the two implementations of the encoding agree.
    #[test]
    fn the_encoding_is_the_databases() {
        assert_eq!(
            hex::encode(entry().expected_hash(&GENESIS)),
            "1d3ca658270d3f51c395ad65e2c69c1aa96a9f1aff0824a5162bacfa762cd500"
        );
        let anonymous = ChainedEntry {
            seq: 2,
            id: 8,
            at: "2026-01-02T03:04:05Z".parse().expect("a time"),
            actor: "anonymous".into(),
            role: None,
            action: "DELETE /api/v1/jobs/{job_id}".into(),
            target: "/api/v1/jobs/x".into(),
            request: None,
            status: 401,
            outcome: "unauthenticated".into(),
            source: None,
            hash: Vec::new(),
        };
        assert_eq!(
            hex::encode(anonymous.expected_hash(&[0x11; 32])),
            "af869d246c2e3cdb7279ef9593e60d5d4eec7e45346e6953515ead4aad71abd8"
        );
    }

    #[test]
    fn a_null_differs_from_an_empty_text_and_fields_cannot_shift() {
        let base = entry().expected_hash(&GENESIS);
        let mut empty_role = entry();
        empty_role.role = Some(String::new());
        assert_ne!(empty_role.expected_hash(&GENESIS), base);
        let mut no_role = entry();
        no_role.role = None;
        assert_ne!(no_role.expected_hash(&GENESIS), base);
        // Moving a character from one field to the next changes the hash: lengths are covered.
        let mut shifted = entry();
        shifted.actor = "an".into();
        shifted.role = Some("aoperator".into());
        assert_ne!(shifted.expected_hash(&GENESIS), base);
    }
}
