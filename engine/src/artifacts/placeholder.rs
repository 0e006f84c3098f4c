//! `${aws:iot:s3-presigned-url:…}` placeholders in job documents.
//!
//! A job document names its downloads by S3 URL; AWS IoT replaces each placeholder by a fresh
//! presigned URL every time a device receives the document, so a URL a device holds is always
//! short-lived and the job itself never contains one. The engine does the same against its
//! own store. The forms the developer guide shows are all accepted:
//! `https://s3.amazonaws.com/bucket/key`, `https://s3.region.amazonaws.com/bucket/key`, the
//! older `https://s3-region.amazonaws.com/bucket/key`, and virtual-hosted
//! `https://bucket.s3[.region].amazonaws.com/key`.

use std::sync::LazyLock;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use regex::Regex;

use super::presign::Presigner;

/// A placeholder and the S3 URL inside it. The URL ends at the closing brace; JSON string
/// text around it is left alone.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{aws:iot:s3-presigned-url:([^}\s]+)\}").expect("a valid pattern")
});

/// An object named by an S3 URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

/// The bucket and key of an S3 URL in one of the forms AWS documents, or `None` for anything
/// else (another host, no key).
pub fn parse_s3_url(url: &str) -> Option<S3Object> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix(".amazonaws.com")?;
    // `s3`, `s3.region`, `s3-region` address the path's first segment as the bucket;
    // `bucket.s3…` names the bucket in the host.
    let is_service =
        |name: &str| name == "s3" || name.starts_with("s3.") || name.starts_with("s3-");
    let decoded = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .ok()
            .map(|t| t.into_owned())
    };
    let (bucket, key) = if is_service(host) {
        let (bucket, key) = path.split_once('/')?;
        (decoded(bucket)?, decoded(key)?)
    } else {
        let (bucket, service) = host.split_once('.')?;
        if !is_service(service) {
            return None;
        }
        (bucket.to_owned(), decoded(path)?)
    };
    if bucket.is_empty() || key.is_empty() || !safe_key(&key) {
        return None;
    }
    Some(S3Object { bucket, key })
}

/// Whether an object key stays where it says: no empty, `.` or `..` segment and no
/// backslash, so no store that maps keys to paths (or URL normalization on the way) can
/// take it elsewhere.
pub fn safe_key(key: &str) -> bool {
    !key.contains('\\')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The URL of the first `${aws:iot:s3-presigned-url:…}` placeholder in `document` whose
/// bucket or key has a `.` or `..` segment or a backslash (once percent-decoded), or `None`.
pub fn traversing_placeholder(document: &str) -> Option<String> {
    PLACEHOLDER.captures_iter(document).find_map(|captures| {
        let url = &captures[1];
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (_, path) = rest.split_once('/')?;
        let path = percent_decode_str(path).decode_utf8_lossy();
        let traverses = path.contains('\\')
            || path
                .split('/')
                .any(|segment| segment == "." || segment == "..");
        traverses.then(|| url.to_owned())
    })
}

/// `document` with every placeholder replaced by a presigned GET URL of the store valid for
/// `expires_in`. A placeholder whose URL is not an S3 URL, or that cannot be signed, is left
/// as it is: the device then fails on a URL it cannot fetch, which says more than a silently
/// dropped field.
pub fn substitute(document: &str, presigner: &Presigner, expires_in: Duration) -> String {
    if !document.contains("${aws:iot:s3-presigned-url:") {
        return document.to_owned();
    }
    PLACEHOLDER
        .replace_all(document, |captures: &regex::Captures<'_>| {
            let whole = captures[0].to_owned();
            let Some(object) = parse_s3_url(&captures[1]) else {
                tracing::warn!(url = %&captures[1], "placeholder URL {} is not an S3 URL; left as is", &captures[1]);
                return whole;
            };
            match presigner.get(&object.bucket, &object.key, expires_in) {
                Ok(url) => url,
                Err(error) => {
                    tracing::warn!(%error, "could not presign {}/{}: {error}", object.bucket, object.key);
                    whole
                }
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str) -> Option<S3Object> {
        Some(S3Object {
            bucket: bucket.into(),
            key: key.into(),
        })
    }

    #[test]
    fn every_documented_url_form_parses() {
        assert_eq!(
            parse_s3_url("https://s3.amazonaws.com/bucket/key"),
            object("bucket", "key")
        );
        assert_eq!(
            parse_s3_url("https://s3.eu-west-1.amazonaws.com/bucket/dir/image.bin"),
            object("bucket", "dir/image.bin")
        );
        assert_eq!(
            parse_s3_url("https://s3-eu-west-1.amazonaws.com/bucket/a%20b"),
            object("bucket", "a b")
        );
        assert_eq!(
            parse_s3_url("https://bucket.s3.amazonaws.com/dir/key"),
            object("bucket", "dir/key")
        );
        assert_eq!(
            parse_s3_url("https://bucket.s3.us-east-1.amazonaws.com/key"),
            object("bucket", "key")
        );
    }

    #[test]
    fn keys_that_leave_their_folder_are_refused() {
        for url in [
            "https://s3.amazonaws.com/bucket/../etc/passwd",
            "https://s3.amazonaws.com/bucket/a/%2e%2e/b",
            "https://bucket.s3.amazonaws.com/a/./b",
            "https://s3.amazonaws.com/bucket/a\\..\\b",
        ] {
            assert_eq!(parse_s3_url(url), None, "{url}");
            let document = format!("{{\"url\":\"${{aws:iot:s3-presigned-url:{url}}}\"}}");
            assert_eq!(
                traversing_placeholder(&document).as_deref(),
                Some(url),
                "{document}"
            );
        }
        let fine =
            "{\"url\":\"${aws:iot:s3-presigned-url:https://s3.amazonaws.com/b/dir/app.bin}\"}";
        assert_eq!(traversing_placeholder(fine), None);
        assert_eq!(parse_s3_url("https://s3.amazonaws.com/bucket/a//b"), None);
    }

    #[test]
    fn other_urls_do_not_parse() {
        for url in [
            "https://example.com/bucket/key",
            "https://s3.amazonaws.com/bucket",
            "https://s3.amazonaws.com/bucket/",
            "ftp://s3.amazonaws.com/bucket/key",
            "https://bucket.ec2.amazonaws.com/key",
        ] {
            assert_eq!(parse_s3_url(url), None, "{url}");
        }
    }

    #[test]
    fn placeholders_become_presigned_urls() {
        let presigner = Presigner::new("http://127.0.0.1:9000", "us-east-1", "AKID", "secret");
        let document = r#"{"url":"${aws:iot:s3-presigned-url:https://s3.us-east-1.amazonaws.com/fw/app.bin}","other":"${aws:iot:s3-presigned-url:https://example.com/x/y}","n":1}"#;
        let substituted = substitute(document, &presigner, Duration::from_secs(120));
        let value: serde_json::Value = serde_json::from_str(&substituted).expect("still JSON");
        let url = value["url"].as_str().expect("a string");
        assert!(
            url.starts_with("http://127.0.0.1:9000/fw/app.bin?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=120"), "{url}");
        assert_eq!(
            value["other"],
            "${aws:iot:s3-presigned-url:https://example.com/x/y}"
        );
        assert_eq!(value["n"], 1);
        assert_eq!(substitute("{}", &presigner, Duration::from_secs(1)), "{}");
    }
}
