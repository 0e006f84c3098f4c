//! Who may connect, and as whom: the engine's answer to the broker's authentication hook.
//!
//! - The service identity: the configured username and password, on either listener.
//! - A client on the TLS listener: its certificate (already verified against the engine's CA in
//!   the handshake) must be registered, ACTIVE and unexpired ([`Certificates::admit`]); with
//!   policies attached, they must allow `iot:Connect` as its client id (and decide the rest:
//!   [`crate::policies`]); without, it is the device of the thing its client id names and
//!   the certificate must be attached to that thing.
//! - A device on the plain listener: its client id must be a registered thing and, when the
//!   engine has a device-token secret, its password that thing's [`device_token`].

use std::sync::Arc;

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Admitted, ConnectInfo, Grant, Hooks, Identity, ListenerKind, Refusal};
use crate::EngineConfig;
use crate::certificates::{self, Certificates};
use crate::jobs::Jobs;
use crate::model::valid_thing_name;
use crate::policies::PolicySet;

/// The token a device presents as its MQTT password on the plain listener when the engine
/// requires one: HMAC-SHA256 of the thing name under the engine's device-token secret, in hex.
/// Whoever holds the secret (the operator) can hand a device its token; a token opens only its
/// own thing.
pub fn device_token(secret: &str, thing_name: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(thing_name.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Compares without leaking, through timing, how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The engine's [`Hooks`]: authentication here, device requests to the jobs logic.
pub struct EngineHooks {
    pub config: Arc<EngineConfig>,
    pub jobs: Arc<Jobs>,
    pub certificates: Arc<Certificates>,
}

impl EngineHooks {
    async fn authenticate(&self, info: ConnectInfo) -> Result<Admitted, Refusal> {
        let config = &self.config;
        if let Some(username) = info.username.as_deref()
            && same_secret(username.as_bytes(), config.service_username.as_bytes())
        {
            let password = info.password.as_deref().unwrap_or_default();
            return if same_secret(password, config.service_password.as_bytes()) {
                Ok(Admitted {
                    identity: Identity::Service,
                    certificate_id: None,
                })
            } else {
                tracing::info!(client_id = info.client_id, peer = %info.peer, "refused the service identity's login from {}: wrong password", info.peer);
                Err(Refusal::BadUsernameOrPassword)
            };
        }
        // A thing name never contains `+ # / $` or NUL, so a client id cannot act as a wildcard
        // in the topic rules.
        if !valid_thing_name(&info.client_id) {
            tracing::info!(client_id = info.client_id, peer = %info.peer, "refused client id {:?}: not a thing name", info.client_id);
            return Err(Refusal::BadClientId);
        }
        let client_id = info.client_id.clone();
        if info.listener == ListenerKind::Tls {
            return self.authenticate_certificate(&info, client_id).await;
        }
        // The plain listener: a registered thing, with its token when the engine wants one.
        let thing = client_id;
        self.require_thing(&thing, &info).await?;
        if let Some(secret) = config.device_token_secret.as_deref() {
            let expected = device_token(secret, &thing);
            let given = info.password.as_deref().unwrap_or_default();
            if !same_secret(given, expected.as_bytes()) {
                tracing::info!(client_id = thing, peer = %info.peer, "refused {thing}: wrong or missing device token");
                return Err(Refusal::BadUsernameOrPassword);
            }
        }
        Ok(Admitted {
            identity: Identity::Thing(thing),
            certificate_id: None,
        })
    }
}

impl EngineHooks {
    /// Refuses a client id that is not a registered thing.
    async fn require_thing(&self, thing: &str, info: &ConnectInfo) -> Result<(), Refusal> {
        let known = self
            .jobs
            .thing(thing)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        if known.is_none() {
            tracing::info!(client_id = thing, peer = %info.peer, "refused unknown thing {thing}");
            return Err(Refusal::NotAuthorized);
        }
        Ok(())
    }

    /// A client on the TLS listener: its certificate must admit it now; then its policies,
    /// if it has any, decide whether it may connect as `client_id` (and later what it may
    /// do); without policies it must be attached to the registered thing `client_id` names.
    async fn authenticate_certificate(
        &self,
        info: &ConnectInfo,
        client_id: String,
    ) -> Result<Admitted, Refusal> {
        let Some(serial) = info.certificate_serial.as_deref() else {
            tracing::info!(client_id, peer = %info.peer, "refused {client_id}: no client certificate");
            return Err(Refusal::NotAuthorized);
        };
        let refuse = |why: String| {
            tracing::info!(client_id, peer = %info.peer, certificate.serial = serial, "refused {client_id}: {why}");
            Refusal::NotAuthorized
        };
        let admission = match self.certificates.admit(serial, &client_id).await {
            Ok(Ok(admission)) => admission,
            Ok(Err(refusal)) => {
                return Err(refuse(match refusal {
                    certificates::Refusal::Unknown => "the certificate is not registered".into(),
                    certificates::Refusal::NotActive(status) => {
                        format!("the certificate is {status}")
                    }
                    certificates::Refusal::Expired => "the certificate has expired".into(),
                    certificates::Refusal::NotAttached => {
                        format!("the certificate is not attached to {client_id}")
                    }
                }));
            }
            Err(_) => return Err(Refusal::Unavailable),
        };
        if !admission.policies.is_empty() {
            let grant = Grant {
                arn_prefix: format!(
                    "arn:aws:iot:{}:{}:",
                    self.config.region, self.config.account_id
                ),
                policies: PolicySet::from_documents(admission.policies.iter().map(String::as_str)),
                client_id: client_id.clone(),
            };
            if !grant.allows("iot:Connect", &format!("client/{client_id}")) {
                return Err(refuse(format!(
                    "the certificate's policies do not allow iot:Connect as {client_id}"
                )));
            }
            return Ok(Admitted {
                identity: Identity::Policy(Arc::new(grant)),
                certificate_id: Some(admission.certificate_id),
            });
        }
        self.require_thing(&client_id, info).await?;
        if !admission.attached {
            return Err(refuse(format!(
                "the certificate is not attached to {client_id}"
            )));
        }
        Ok(Admitted {
            identity: Identity::Thing(client_id),
            certificate_id: Some(admission.certificate_id),
        })
    }
}

impl Hooks for EngineHooks {
    fn authenticate(&self, info: ConnectInfo) -> BoxFuture<'_, Result<Admitted, Refusal>> {
        Box::pin(EngineHooks::authenticate(self, info))
    }

    fn consumes(&self, topic: &str) -> bool {
        Jobs::is_device_request(topic)
    }

    fn handle<'a>(
        &'a self,
        identity: &'a Identity,
        topic: &'a str,
        payload: bytes::Bytes,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.jobs.handle_device_request(identity, topic, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_thing_and_per_secret() {
        let a = device_token("secret", "thing-a");
        assert_eq!(a.len(), 64);
        assert_eq!(a, device_token("secret", "thing-a"));
        assert_ne!(a, device_token("secret", "thing-b"));
        assert_ne!(a, device_token("other", "thing-a"));
        assert!(same_secret(a.as_bytes(), a.as_bytes()));
        assert!(!same_secret(a.as_bytes(), &a.as_bytes()[1..]));
    }
}
