//! AWS IoT policies: CreatePolicy, GetPolicy, DeletePolicy, AttachPolicy, DetachPolicy and
//! ListAttachedPolicies for certificates, and what a certificate's policies allow on the
//! broker's TLS listener.
//!
//! A certificate with policies attached connects as whatever client id its policies allow
//! (`iot:Connect` on `client/{clientId}`), subscribes where they allow `iot:Subscribe` (on
//! `topicfilter/{filter}`) and `iot:Receive` (on `topic/{filter}`: receipt is judged once, at
//! subscription, against the filter), and publishes where they allow `iot:Publish` (on
//! `topic/{topic}`). That is how a service such as the dashboard's event subscriber reads
//! `$aws/events/…` with a certificate in AWS mode. A certificate without policies keeps the
//! engine's device rule: it connects as the thing it is attached to and uses that thing's
//! topics only.
//!
//! Evaluation follows AWS: an explicit `Deny` wins, else any `Allow` grants, else the action
//! is denied. Actions and resources match with `*` and `?` wildcards (actions ignoring case);
//! the policy variable `${iot:ClientId}` is replaced by the connection's client id, and a
//! statement using any other variable does not match (the engine does not resolve them). A
//! policy has one version, `1`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::certificates::CertificateError;
use crate::model::Arns;

type Result<T, E = CertificateError> = std::result::Result<T, E>;

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
}

/// The statements of every policy attached to one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    statements: Vec<Statement>,
}

/// The longest policy document AWS accepts, whitespace excluded.
const MAX_DOCUMENT: usize = 2048;

/// Reads a policy document, or says why it is malformed (`MalformedPolicyException`).
fn parse_document(text: &str) -> std::result::Result<Vec<Statement>, String> {
    let length = text.chars().filter(|c| !c.is_whitespace()).count();
    if length == 0 || length > MAX_DOCUMENT {
        return Err(format!(
            "the policy document must have 1 to {MAX_DOCUMENT} characters, whitespace excluded; it has {length}"
        ));
    }
    let document: Value =
        serde_json::from_str(text).map_err(|error| format!("the policy is not JSON: {error}"))?;
    let statements = match document.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(item @ Value::Object(_)) => vec![item.clone()],
        _ => return Err("the policy has no Statement".into()),
    };
    if statements.is_empty() {
        return Err("the policy has no Statement".into());
    }
    let strings = |statement: &Value, name: &str| -> std::result::Result<Vec<String>, String> {
        match statement.get(name) {
            Some(Value::String(one)) => Ok(vec![one.clone()]),
            Some(Value::Array(many)) if !many.is_empty() => many
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{name} must hold strings"))
                })
                .collect(),
            _ => Err(format!("every statement needs {name}")),
        }
    };
    statements
        .iter()
        .map(|statement| {
            let allow = match statement.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err("every statement needs Effect Allow or Deny".to_owned()),
            };
            Ok(Statement {
                allow,
                actions: strings(statement, "Action")?,
                resources: strings(statement, "Resource")?,
            })
        })
        .collect()
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ti = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl PolicySet {
    /// The statements of these documents (stored documents were validated when created).
    pub fn from_documents<'a>(documents: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            statements: documents
                .into_iter()
                .filter_map(|text| parse_document(text).ok())
                .flatten()
                .collect(),
        }
    }

    /// Whether the policies allow `action` (e.g. `iot:Subscribe`) on `resource` (a full ARN)
    /// for the connection of `client_id`.
    pub fn allows(&self, action: &str, resource: &str, client_id: &str) -> bool {
        let matches = |statement: &Statement| {
            statement
                .actions
                .iter()
                .any(|a| glob(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
                && statement.resources.iter().any(|r| {
                    let resolved = r.replace("${iot:ClientId}", client_id);
                    !resolved.contains("${") && glob(&resolved, resource)
                })
        };
        let mut allowed = false;
        for statement in self.statements.iter().filter(|s| matches(s)) {
            if !statement.allow {
                return false;
            }
            allowed = true;
        }
        allowed
    }
}

/// A policy as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRow {
    pub policy_name: String,
    pub policy_document: String,
    pub generation_id: uuid::Uuid,
    pub created_at: DateTime<Utc>,
    pub last_modified_at: DateTime<Utc>,
}

/// Policy names: 1–128 of `[\w+=,.@-]`.
fn checked_name(name: &str) -> Result<&str> {
    let valid = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_+=,.@-".contains(c));
    if valid {
        Ok(name)
    } else {
        Err(CertificateError::Invalid(format!(
            "policyName must be 1-128 characters of [\\w+=,.@-], got {name:?}"
        )))
    }
}

/// The policy store. One per engine.
#[derive(Debug, Clone)]
pub struct Policies {
    pool: PgPool,
    arns: Arns,
}

impl Policies {
    pub fn new(pool: PgPool, arns: Arns) -> Self {
        Self { pool, arns }
    }

    pub fn arn(&self, policy_name: &str) -> String {
        format!(
            "arn:aws:iot:{}:{}:policy/{policy_name}",
            self.arns.region, self.arns.account_id
        )
    }

    /// The certificate id a target ARN names (only certificates are policy targets here).
    fn target_certificate(&self, target: &str) -> Result<String> {
        let prefix = format!(
            "arn:aws:iot:{}:{}:cert/",
            self.arns.region, self.arns.account_id
        );
        target
            .strip_prefix(&prefix)
            .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                CertificateError::Invalid(format!(
                    "target must be a certificate ARN of this account ({prefix}…), got {target:?}"
                ))
            })
    }

    /// CreatePolicy.
    pub async fn create(&self, name: &str, document: &str) -> Result<PolicyRow> {
        checked_name(name)?;
        parse_document(document).map_err(CertificateError::Malformed)?;
        let row: Option<PolicyRow> = sqlx::query_as(
            "insert into engine.policies (policy_name, policy_document, generation_id)
             values ($1, $2, $3) on conflict do nothing
             returning policy_name, policy_document, generation_id, created_at, last_modified_at",
        )
        .bind(name)
        .bind(document)
        .bind(uuid::Uuid::new_v4())
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| CertificateError::AlreadyExists(format!("Policy {name} already exists")))
    }

    /// GetPolicy.
    pub async fn get(&self, name: &str) -> Result<PolicyRow> {
        checked_name(name)?;
        let row: Option<PolicyRow> = sqlx::query_as(
            "select policy_name, policy_document, generation_id, created_at, last_modified_at
             from engine.policies where policy_name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| CertificateError::NotFound(format!("Policy {name} not found")))
    }

    /// DeletePolicy: only a policy attached to nothing.
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.get(name).await?;
        let deleted = sqlx::query(
            "delete from engine.policies p where policy_name = $1
             and not exists (select 1 from engine.policy_targets t where t.policy_name = p.policy_name)",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(CertificateError::DeleteConflict(format!(
                "Policy {name} is attached to one or more targets; detach it first"
            )));
        }
        Ok(())
    }

    /// AttachPolicy (idempotent).
    pub async fn attach(&self, name: &str, target: &str) -> Result<()> {
        let certificate_id = self.target_certificate(target)?;
        self.get(name).await?;
        sqlx::query(
            "insert into engine.policy_targets (policy_name, certificate_id) values ($1, $2)
             on conflict do nothing",
        )
        .bind(name)
        .bind(&certificate_id)
        .execute(&self.pool)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                CertificateError::NotFound(format!(
                    "Policy {name} or certificate {certificate_id} not found"
                ))
            }
            _ => error.into(),
        })?;
        Ok(())
    }

    /// DetachPolicy. Sessions already connected keep what they were granted at CONNECT.
    pub async fn detach(&self, name: &str, target: &str) -> Result<()> {
        let certificate_id = self.target_certificate(target)?;
        checked_name(name)?;
        sqlx::query(
            "delete from engine.policy_targets where policy_name = $1 and certificate_id = $2",
        )
        .bind(name)
        .bind(&certificate_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// ListAttachedPolicies of a certificate: names in order, after `after`.
    pub async fn attached(
        &self,
        target: &str,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<String>> {
        let certificate_id = self.target_certificate(target)?;
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from engine.certificates where certificate_id = $1)",
        )
        .bind(&certificate_id)
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Err(CertificateError::NotFound(format!(
                "Certificate {certificate_id} not found"
            )));
        }
        let names = sqlx::query_scalar(
            "select policy_name from engine.policy_targets
             where certificate_id = $1 and ($2::text is null or policy_name > $2)
             order by policy_name limit $3",
        )
        .bind(&certificate_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READER: &str = r#"{
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": "arn:aws:iot:us-east-1:1:client/flotilla-server-*"},
            {"Effect": "Allow", "Action": ["iot:Subscribe"],
             "Resource": ["arn:aws:iot:us-east-1:1:topicfilter/$aws/events/job/*",
                          "arn:aws:iot:us-east-1:1:topicfilter/$aws/events/jobExecution/*"]},
            {"Effect": "Deny", "Action": "iot:*",
             "Resource": "arn:aws:iot:us-east-1:1:topicfilter/$aws/events/job/secret/*"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:us-east-1:1:topic/replies/${iot:ClientId}"}
        ]
    }"#;

    #[test]
    fn allow_deny_wildcards_and_variables() {
        let set = PolicySet::from_documents([READER]);
        let arn = |rest: &str| format!("arn:aws:iot:us-east-1:1:{rest}");
        let c = "flotilla-server-1";
        assert!(set.allows("iot:Connect", &arn("client/flotilla-server-1"), c));
        assert!(!set.allows("iot:Connect", &arn("client/other"), c));
        assert!(set.allows("IOT:SUBSCRIBE", &arn("topicfilter/$aws/events/job/#"), c));
        assert!(!set.allows(
            "iot:Subscribe",
            &arn("topicfilter/$aws/events/presence/#"),
            c
        ));
        assert!(!set.allows(
            "iot:Subscribe",
            &arn("topicfilter/$aws/events/job/secret/x"),
            c
        ));
        assert!(!set.allows("iot:Receive", &arn("topic/$aws/events/job/x"), c));
        assert!(set.allows("iot:Publish", &arn("topic/replies/flotilla-server-1"), c));
        assert!(!set.allows("iot:Publish", &arn("topic/replies/other"), c));
        assert!(!PolicySet::default().allows("iot:Connect", &arn("client/x"), "x"));
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(parse_document("").is_err());
        assert!(parse_document("{}").is_err());
        assert!(parse_document(r#"{"Statement": []}"#).is_err());
        assert!(
            parse_document(
                r#"{"Statement": {"Effect": "Maybe", "Action": "iot:*", "Resource": "*"}}"#
            )
            .is_err()
        );
        assert!(parse_document(r#"{"Statement": {"Effect": "Allow", "Resource": "*"}}"#).is_err());
        assert!(
            parse_document(&format!(
                r#"{{"Statement": {{"Effect": "Allow", "Action": "iot:*", "Resource": "{}"}}}}"#,
                "a".repeat(3000)
            ))
            .is_err()
        );
        assert_eq!(parse_document(READER).map(|s| s.len()), Ok(4));
        assert!(glob("a*b?c", "axxbyc") && !glob("a*b?c", "axxbc") && glob("*", ""));
    }
}
