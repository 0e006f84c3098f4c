//! The artifact store: an S3-compatible endpoint on its own listener, so the dashboard server
//! reaches it through `aws-sdk-s3` exactly as it reaches S3 in AWS mode, and devices download
//! from it with presigned URLs exactly as they download from S3.
//!
//! The S3 protocol (REST routing, XML, SigV4 header, streaming and query authentication with
//! expiry, Range, multipart) is the `s3s` crate; objects live on disk under the artifact
//! directory through `s3s-fs` (one folder per bucket). Only the engine's access key is
//! accepted.
//!
//! - [`presign`]: presigned GET/PUT URLs of the store, made with the engine's key;
//! - [`placeholder`]: `${aws:iot:s3-presigned-url:…}` in job documents, replaced by fresh
//!   presigned URLs each time a device receives a document.

pub mod placeholder;
pub mod presign;

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::http::{Method, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::cors::{Any, CorsLayer};

pub use placeholder::{S3Object, parse_s3_url, safe_key, traversing_placeholder};
pub use presign::Presigner;

/// The largest job document read through `documentSource`, as for an inline document.
const MAX_SOURCE_DOCUMENT_BYTES: u64 = 32 * 1024;

/// CORS for browsers: the dashboard's upload page PUTs parts to presigned URLs on this
/// listener (another origin) and reads each part's ETag, and downloads may be fetched from a
/// page. Any origin is allowed because no cookie or ambient credential is involved: a request
/// is authorized only by the signature it carries, as with a bucket's CORS rule on S3.
fn browser_access() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::PUT])
        .allow_headers(Any)
        .expose_headers([header::ETAG, header::CONTENT_LENGTH])
        .max_age(std::time::Duration::from_secs(3600))
}

/// The store's files and credentials.
#[derive(Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    access_key_id: String,
    secret_access_key: String,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("root", &self.root)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Why an object named by an S3 URL could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0} is not an S3 URL of the form https://s3.amazonaws.com/bucket/key")]
    NotAnS3Url(String),
    #[error("no object {bucket}/{key} in the artifact store")]
    NotFound { bucket: String, key: String },
    #[error("object {bucket}/{key} is {size} bytes; the limit is {limit}")]
    TooLarge {
        bucket: String,
        key: String,
        size: u64,
        limit: u64,
    },
    #[error("reading {bucket}/{key}: {source}")]
    Io {
        bucket: String,
        key: String,
        source: std::io::Error,
    },
}

impl ArtifactStore {
    /// A store keeping its objects under `root` (created if missing), accepting only
    /// `access_key_id`/`secret_access_key`.
    pub fn new(
        root: impl Into<PathBuf>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> anyhow::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the artifact directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("resolving the artifact directory {}", root.display()))?;
        Ok(Self {
            root,
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        })
    }

    /// Where the objects live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves the S3 API on `listener` until `shutdown` is cancelled.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let service = match s3s_fs::FileSystem::new(&self.root) {
            Ok(fs) => {
                let mut builder = s3s::service::S3ServiceBuilder::new(fs);
                builder.set_auth(s3s::auth::SimpleAuth::from_single(
                    self.access_key_id.clone(),
                    self.secret_access_key.clone(),
                ));
                TowerToHyperService::new(browser_access().layer(builder.build()))
            }
            Err(error) => {
                tracing::error!(?error, root = %self.root.display(), "artifact store not started: {error:?}");
                return;
            }
        };
        let connections = ConnectionBuilder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let socket = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(error) => {
                        // A transient failure (out of descriptors, a reset during the
                        // handshake) must not stop the store.
                        tracing::warn!(%error, "artifact store: accepting a connection failed: {error}");
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            let connection = connections
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that disconnects mid-request is not the store's failure.
                let _ = connection.await;
            });
        }
        // Downloads in flight get a moment to finish; a stuck client does not hold the
        // shutdown.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    }

    /// The contents of the object `url` (an S3 URL) names, at most `MAX_SOURCE_DOCUMENT_BYTES`:
    /// how CreateJob reads a `documentSource`.
    pub async fn read_document(&self, url: &str) -> Result<Vec<u8>, ReadError> {
        let object = parse_s3_url(url).ok_or_else(|| ReadError::NotAnS3Url(url.to_owned()))?;
        let S3Object { bucket, key } = object;
        let path = self
            .object_path(&bucket, &key)
            .ok_or_else(|| ReadError::NotFound {
                bucket: bucket.clone(),
                key: key.clone(),
            })?;
        let metadata = match tokio::fs::metadata(&path).await {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return Err(ReadError::NotFound { bucket, key }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReadError::NotFound { bucket, key });
            }
            Err(source) => {
                return Err(ReadError::Io {
                    bucket,
                    key,
                    source,
                });
            }
        };
        if metadata.len() > MAX_SOURCE_DOCUMENT_BYTES {
            return Err(ReadError::TooLarge {
                bucket,
                key,
                size: metadata.len(),
                limit: MAX_SOURCE_DOCUMENT_BYTES,
            });
        }
        tokio::fs::read(&path)
            .await
            .map_err(|source| ReadError::Io {
                bucket,
                key,
                source,
            })
    }

    /// The file of `bucket/key`, or `None` for a name that would leave the store's folder
    /// (`..`, an absolute key) or address its internal files.
    fn object_path(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        let safe = |part: &str| !part.is_empty() && part != "." && part != "..";
        if !safe(bucket) || bucket.contains(['/', '\\']) || bucket.starts_with('.') {
            return None;
        }
        let mut path = self.root.join(bucket);
        for segment in key.split('/') {
            if !safe(segment) || segment.contains('\\') {
                return None;
            }
            path.push(segment);
        }
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_stay_inside_the_store() {
        let store = ArtifactStore {
            root: PathBuf::from("/store"),
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
        };
        assert_eq!(
            store.object_path("fw", "dir/app.bin"),
            Some(PathBuf::from("/store/fw/dir/app.bin"))
        );
        for (bucket, key) in [
            ("fw", "../x"),
            ("..", "x"),
            ("fw", "/etc/passwd"),
            ("fw", "a//b"),
            (".upload", "x"),
            ("fw", "a\\..\\b"),
        ] {
            assert_eq!(store.object_path(bucket, key), None, "{bucket}/{key}");
        }
    }
}
