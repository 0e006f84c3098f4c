//! Code signing: ECDSA P-256 signatures over the SHA-256 of an artifact, the form the agent
//! checks (`flotilla_agent::download::verify`) before it installs anything.
//!
//! The key is either a local PKCS#8 PEM file (`flotilla keys generate`) or, in AWS mode, an
//! AWS KMS asymmetric key (`ECC_NIST_P256`, signing with `ECDSA_SHA_256` on the digest, so the
//! file itself never goes to KMS). Either way every signature is checked against the public
//! key before it is handed out, and the public key is what devices are provisioned with
//! (`GET /api/v1/signing/public-key`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};

/// The algorithm named in install documents and artifact records.
pub const ALGORITHM: &str = "ECDSA_P256_SHA256";

/// Signs digests with the configured key. Cheap to clone.
#[derive(Clone)]
pub struct Signer(Arc<Inner>);

enum Backend {
    Local(SigningKey),
    Kms {
        client: aws_sdk_kms::Client,
        key_id: String,
    },
}

struct Inner {
    backend: Backend,
    public_key: VerifyingKey,
    public_key_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        let kind = match &self.0.backend {
            Backend::Local(_) => "local key file".to_owned(),
            Backend::Kms { key_id, .. } => format!("KMS key {key_id}"),
        };
        f.debug_struct("Signer").field("key", &kind).finish()
    }
}

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("KMS Sign failed: {0}")]
    Kms(String),
    #[error("the signature made does not verify with the signing public key ({0})")]
    Verify(String),
}

impl Signer {
    /// A signer with a local key.
    pub fn from_key(key: SigningKey) -> Self {
        let public_key = *key.verifying_key();
        Self::new(Backend::Local(key), public_key)
    }

    /// Reads a private key file: PKCS#8 PEM (`BEGIN PRIVATE KEY`, what `flotilla keys generate`
    /// and `openssl genpkey` write) or SEC1 PEM (`BEGIN EC PRIVATE KEY`, `openssl ecparam`).
    pub fn from_key_file(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .or_else(|_| {
                p256::SecretKey::from_sec1_pem(pem.trim()).map(|secret| SigningKey::from(&secret))
            })
            .map_err(|_| {
                anyhow::anyhow!(
                    "{} is not a PEM P-256 private key (PKCS#8 or SEC1)",
                    path.display()
                )
            })?;
        Ok(Self::from_key(key))
    }

    /// A signer with an AWS KMS key; reads and checks its public key once.
    pub async fn from_kms(client: aws_sdk_kms::Client, key_id: String) -> anyhow::Result<Self> {
        let out = client
            .get_public_key()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_kms::error::DisplayErrorContext(e)))
            .with_context(|| format!("reading the public key of KMS key {key_id}"))?;
        if out.key_spec() != Some(&aws_sdk_kms::types::KeySpec::EccNistP256) {
            anyhow::bail!(
                "KMS key {key_id} is {:?}; code signing needs an ECC_NIST_P256 key",
                out.key_spec()
            );
        }
        let der = out
            .public_key()
            .context("KMS returned no public key")?
            .as_ref();
        let public_key = VerifyingKey::from_public_key_der(der)
            .map_err(|e| anyhow::anyhow!("KMS key {key_id}: not a P-256 public key: {e}"))?;
        Ok(Self::new(Backend::Kms { client, key_id }, public_key))
    }

    fn new(backend: Backend, public_key: VerifyingKey) -> Self {
        let public_key_pem = public_key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key always encodes");
        Self(Arc::new(Inner {
            backend,
            public_key,
            public_key_pem,
        }))
    }

    /// The public key, PEM SubjectPublicKeyInfo, as the agent's `--trusted-key` reads it.
    pub fn public_key_pem(&self) -> &str {
        &self.0.public_key_pem
    }

    /// A DER ECDSA signature over `digest` (a SHA-256), verified before it is returned.
    pub async fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        let der = match &self.0.backend {
            Backend::Local(key) => {
                let signature: Signature = key
                    .sign_prehash(digest)
                    .map_err(|e| SignError::Verify(e.to_string()))?;
                signature.to_der().as_bytes().to_vec()
            }
            Backend::Kms { client, key_id } => {
                use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
                let out = client
                    .sign()
                    .key_id(key_id)
                    .message(aws_sdk_kms::primitives::Blob::new(digest.to_vec()))
                    .message_type(MessageType::Digest)
                    .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                    .send()
                    .await
                    .map_err(|e| {
                        SignError::Kms(aws_sdk_kms::error::DisplayErrorContext(e).to_string())
                    })?;
                out.signature()
                    .ok_or_else(|| SignError::Kms("no signature in the answer".into()))?
                    .as_ref()
                    .to_vec()
            }
        };
        // A key that does not match what devices trust would make every job fail on the
        // devices; better to refuse here.
        let signature = Signature::from_der(&der).map_err(|e| SignError::Verify(e.to_string()))?;
        self.0
            .public_key
            .verify_prehash(digest, &signature)
            .map_err(|e| SignError::Verify(e.to_string()))?;
        Ok(der)
    }
}

/// `flotilla keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Write a new P-256 signing key (PKCS#8 PEM, mode 0600) and print its public key, which
    /// devices are provisioned with (the agent's `--trusted-key`).
    Generate {
        /// Where to write the private key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

impl KeysCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Generate { out } => {
                let public = generate_key_file(&out)?;
                eprintln!(
                    "wrote the private key to {}; its public key:",
                    out.display()
                );
                print!("{public}");
                Ok(())
            }
        }
    }
}

/// `flotilla keys generate`: a new P-256 key as PKCS#8 PEM at `out`, readable by its owner
/// only; an existing file is never overwritten. Returns the public key (PEM).
pub fn generate_key_file(out: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    let key = random_key()?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(out).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(Signer::from_key(key).public_key_pem().to_owned())
}

/// A P-256 key from the operating system's random source.
fn random_key() -> anyhow::Result<SigningKey> {
    use rand::TryRngCore as _;
    loop {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .context("reading the operating system's random source")?;
        // Fails only for zero or a value not below the group order: practically never.
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return Ok(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signatures_verify_the_way_the_agent_checks_them() {
        let dir = std::env::temp_dir().join(format!("flotilla-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let public_pem = generate_key_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            generate_key_file(&path).is_err(),
            "an existing key was overwritten"
        );
        let signer = Signer::from_key_file(&path).unwrap();
        assert_eq!(signer.public_key_pem(), public_pem);

        let file = dir.join("artifact");
        std::fs::write(&file, b"firmware 2.0").unwrap();
        let digest = flotilla_agent::download::sha256_file(&file).unwrap();
        let signature = signer.sign_digest(&digest).await.unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(signature);
        let trusted = flotilla_agent::download::load_trusted_key(&public_pem).unwrap();
        assert_eq!(
            flotilla_agent::download::verify(&file, 12, &hex::encode(digest), &b64, &trusted),
            Ok(())
        );
        std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
        assert!(Signer::from_key_file(&dir.join("bad.pem")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
