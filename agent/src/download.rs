//! Resumable HTTP downloads: a partial file continues with a `Range` request after a lost
//! connection or a restart of the agent, and the whole file is checked (size, SHA-256, ECDSA
//! P-256 signature) before anything uses it.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::client::Progress;

/// How many times a download is resumed after a transient error before the job fails.
const ATTEMPTS: u32 = 6;

/// Why a download stopped.
#[derive(Debug)]
pub enum DownloadError {
    /// The job was cancelled; the caller removes the partial file.
    Cancelled,
    /// It cannot succeed; the string says why.
    Failed(String),
    /// The URL was refused (HTTP 403: a presigned URL that expired). The partial file stays;
    /// a fresh URL from the job document continues it.
    Forbidden(String),
}

enum Attempt {
    Cancelled,
    Forbidden(String),
    Transient(String),
    Permanent(String),
}

/// Downloads `url` into `target`, continuing a partial `target`. `expected_size`, when known,
/// bounds the file. Progress goes to `progress` as `step` with a percentage.
pub async fn fetch(
    http: &reqwest::Client,
    url: &str,
    target: &Path,
    expected_size: Option<u64>,
    step: &str,
    progress: &Progress<'_>,
) -> Result<(), DownloadError> {
    let cancel = progress.cancelled();
    let mut reporter = Reporter::new(step);
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match fetch_once(
            http,
            url,
            target,
            expected_size,
            &cancel,
            &mut reporter,
            progress,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(Attempt::Cancelled) => return Err(DownloadError::Cancelled),
            Err(Attempt::Permanent(reason)) => return Err(DownloadError::Failed(reason)),
            Err(Attempt::Forbidden(reason)) => return Err(DownloadError::Forbidden(reason)),
            Err(Attempt::Transient(reason)) if attempt == ATTEMPTS => {
                return Err(DownloadError::Failed(format!(
                    "download failed after {ATTEMPTS} attempts: {reason}"
                )));
            }
            Err(Attempt::Transient(reason)) => {
                tracing::info!("download interrupted ({reason}); resuming in {delay:?}");
                tokio::select! {
                    () = cancel.cancelled() => return Err(DownloadError::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    unreachable!("the last attempt returns")
}

async fn fetch_once(
    http: &reqwest::Client,
    url: &str,
    target: &Path,
    expected_size: Option<u64>,
    cancel: &CancellationToken,
    reporter: &mut Reporter,
    progress: &Progress<'_>,
) -> Result<(), Attempt> {
    let mut have = tokio::fs::metadata(target)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if expected_size.is_some_and(|size| have > size) {
        have = 0;
    }
    if expected_size.is_some_and(|size| have == size) {
        return Ok(());
    }
    let mut request = http.get(url);
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = tokio::select! {
        () = cancel.cancelled() => return Err(Attempt::Cancelled),
        sent = request.send() => sent.map_err(|e| Attempt::Transient(format!("GET failed: {e}")))?,
    };
    let status = response.status();
    let resume = status == StatusCode::PARTIAL_CONTENT
        && response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|range| range.starts_with(&format!("bytes {have}-")));
    let mut written = if resume { have } else { 0 };
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        // The partial file is as long as the resource or longer: start over.
        let _ = tokio::fs::remove_file(target).await;
        return Err(Attempt::Transient(
            "the partial download did not fit the file".into(),
        ));
    }
    if status == StatusCode::FORBIDDEN {
        return Err(Attempt::Forbidden(format!(
            "the artifact URL answered HTTP {status} (an expired presigned URL?)"
        )));
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(Attempt::Transient(format!("HTTP {status}")));
    }
    if !(status == StatusCode::OK || resume) {
        return Err(Attempt::Permanent(format!(
            "the artifact URL answered HTTP {status}"
        )));
    }
    let total = expected_size.or_else(|| response.content_length().map(|l| l + written));
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resume)
        .truncate(!resume)
        .open(target)
        .await
        .map_err(|e| Attempt::Permanent(format!("cannot write {}: {e}", target.display())))?;
    loop {
        let chunk = tokio::select! {
            () = cancel.cancelled() => return Err(Attempt::Cancelled),
            chunk = response.chunk() => chunk,
        };
        match chunk {
            Ok(Some(bytes)) => {
                written += bytes.len() as u64;
                if let Some(size) = expected_size.filter(|size| written > *size) {
                    drop(file);
                    let _ = tokio::fs::remove_file(target).await;
                    return Err(Attempt::Permanent(format!(
                        "size mismatch: the server sent more than the {size} bytes the job document gives"
                    )));
                }
                file.write_all(&bytes).await.map_err(|e| {
                    Attempt::Permanent(format!("writing {}: {e}", target.display()))
                })?;
                reporter.maybe_report(written, total, progress).await;
            }
            Ok(None) => break,
            Err(error) => {
                let _ = file.flush().await;
                return Err(Attempt::Transient(format!("connection lost: {error}")));
            }
        }
    }
    file.flush()
        .await
        .and(file.sync_all().await)
        .map_err(|e| Attempt::Permanent(format!("writing {}: {e}", target.display())))?;
    if let Some(size) = expected_size.filter(|size| written < *size) {
        return Err(Attempt::Transient(format!(
            "the connection ended at {written} of {size} bytes"
        )));
    }
    Ok(())
}

/// Reports download progress at most once a second, and only when the percentage moved.
struct Reporter {
    step: String,
    last: Option<Instant>,
    last_percent: u8,
}

impl Reporter {
    fn new(step: &str) -> Self {
        Self {
            step: step.to_owned(),
            last: None,
            last_percent: 0,
        }
    }

    async fn maybe_report(&mut self, written: u64, total: Option<u64>, progress: &Progress<'_>) {
        let Some(total) = total.filter(|t| *t > 0) else {
            return;
        };
        let percent = (written.saturating_mul(100) / total).min(100) as u8;
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due && percent != self.last_percent {
            self.last = Some(Instant::now());
            self.last_percent = percent;
            if let Err(error) = progress.report(&self.step, percent).await {
                tracing::debug!("progress report failed: {error:#}");
            }
        }
    }
}

/// Checks a downloaded file against the size, signature (base64 ECDSA P-256 over the SHA-256,
/// DER or r‖s) and SHA-256 (hex) a job document gives, in that order. The error is the
/// precise reason.
pub fn verify(
    path: &Path,
    size: u64,
    sha256_hex: &str,
    signature_base64: &str,
    key: &VerifyingKey,
) -> Result<(), String> {
    let actual_size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the download: {e}"))?
        .len();
    if actual_size != size {
        return Err(format!(
            "size mismatch: downloaded {actual_size} bytes, the job document gives {size}"
        ));
    }
    let digest = sha256_file(path)?;
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature_base64.trim())
        .map_err(|e| format!("signature is not valid base64: {e}"))?;
    let signature = if raw.len() == 64 {
        Signature::from_slice(&raw)
    } else {
        Signature::from_der(&raw)
    }
    .map_err(|_| "signature is not an ECDSA P-256 signature (DER or 64-byte r||s)".to_owned())?;
    // The signature is checked over what was downloaded: a file changed in the bucket fails
    // here, whatever digest the document gives.
    key.verify_prehash(&digest, &signature).map_err(|_| {
        "signature mismatch: the downloaded artifact is not signed by the trusted key".to_owned()
    })?;
    let actual = hex::encode(digest);
    if !actual.eq_ignore_ascii_case(sha256_hex) {
        return Err(format!(
            "sha256 mismatch: the job document gives {}, the download has {actual}",
            sha256_hex.to_ascii_lowercase()
        ));
    }
    Ok(())
}

/// The SHA-256 of a file, read in blocks.
pub fn sha256_file(path: &Path) -> Result<[u8; 32], String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read the download: {e}"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| format!("cannot read the download: {e}"))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

/// Reads a trusted public key (PEM, SubjectPublicKeyInfo as `openssl ec -pubout` writes it).
pub fn load_trusted_key(pem: &str) -> Result<VerifyingKey, String> {
    use p256::pkcs8::DecodePublicKey as _;
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| format!("not a PEM P-256 public key: {e}"))
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    use super::*;

    #[test]
    fn verify_names_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("flotilla-verify-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("artifact");
        std::fs::write(&path, b"firmware v2").unwrap();
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let other = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let digest = sha256_file(&path).unwrap();
        let signature: Signature = key.sign_prehash(&digest).unwrap();
        use base64::Engine as _;
        let b64 = |s: &Signature| base64::engine::general_purpose::STANDARD.encode(s.to_der());
        let good = b64(&signature);
        let hex_digest = hex::encode(digest);
        let trusted = key.verifying_key();

        assert_eq!(verify(&path, 11, &hex_digest, &good, trusted), Ok(()));
        assert!(
            verify(&path, 12, &hex_digest, &good, trusted)
                .unwrap_err()
                .starts_with("size mismatch")
        );
        assert!(
            verify(&path, 11, &"0".repeat(64), &good, trusted)
                .unwrap_err()
                .starts_with("sha256 mismatch")
        );
        // The file changed after signing (same size): the signature no longer fits it.
        std::fs::write(&path, b"firmware v3").unwrap();
        assert!(
            verify(&path, 11, &hex_digest, &good, trusted)
                .unwrap_err()
                .starts_with("signature mismatch")
        );
        let forged: Signature = other.sign_prehash(&digest).unwrap();
        assert!(
            verify(&path, 11, &hex_digest, &b64(&forged), trusted)
                .unwrap_err()
                .starts_with("signature mismatch")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
