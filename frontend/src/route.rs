//! The pages and their addresses: `#/` and `#/jobs/{id}` style hashes, so links and the back
//! button work and the server needs to know nothing about them.

/// One page of the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Overview,
    Jobs,
    Job(String),
    Rollout(String),
    New,
    Devices,
    Device(String),
    /// Technician mode, optionally with a device open.
    Tech(Option<String>),
    Templates,
    Artifacts,
    Audit,
    Settings,
    NotFound,
}

impl Route {
    /// The page a location hash (`#/jobs/a%2Fb`, with or without `#`) names.
    pub fn parse(hash: &str) -> Self {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        let path = path.split('?').next().unwrap_or_default();
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let first = parts.next();
        let second = parts.next().map(decode);
        if parts.next().is_some() {
            return Self::NotFound;
        }
        match (first, second) {
            (None, None) => Self::Overview,
            (Some("jobs"), None) => Self::Jobs,
            (Some("jobs"), Some(id)) => Self::Job(id),
            (Some("rollouts"), Some(id)) => Self::Rollout(id),
            (Some("new"), None) => Self::New,
            (Some("devices"), None) => Self::Devices,
            (Some("devices"), Some(name)) => Self::Device(name),
            (Some("tech"), name) => Self::Tech(name),
            (Some("templates"), None) => Self::Templates,
            (Some("artifacts"), None) => Self::Artifacts,
            (Some("audit"), None) => Self::Audit,
            (Some("settings"), None) => Self::Settings,
            _ => Self::NotFound,
        }
    }

    /// The link to this page.
    pub fn href(&self) -> String {
        match self {
            Self::Overview | Self::NotFound => "#/".into(),
            Self::Jobs => "#/jobs".into(),
            Self::Job(id) => format!("#/jobs/{}", encode(id)),
            Self::Rollout(id) => format!("#/rollouts/{}", encode(id)),
            Self::New => "#/new".into(),
            Self::Devices => "#/devices".into(),
            Self::Device(name) => format!("#/devices/{}", encode(name)),
            Self::Tech(None) => "#/tech".into(),
            Self::Tech(Some(name)) => format!("#/tech/{}", encode(name)),
            Self::Templates => "#/templates".into(),
            Self::Artifacts => "#/artifacts".into(),
            Self::Audit => "#/audit".into(),
            Self::Settings => "#/settings".into(),
        }
    }

    /// Which entry of the navigation this page belongs to.
    pub fn section(&self) -> &'static str {
        match self {
            Self::Overview | Self::Rollout(_) | Self::NotFound => "overview",
            Self::Jobs | Self::Job(_) => "jobs",
            Self::New => "new",
            Self::Devices | Self::Device(_) => "devices",
            Self::Tech(_) => "tech",
            Self::Templates => "templates",
            Self::Artifacts => "artifacts",
            Self::Audit => "audit",
            Self::Settings => "settings",
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for path segments and
/// query values.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undoes [`encode`]; a malformed escape is kept as it is.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_round_trips_through_its_link() {
        let pages = [
            Route::Overview,
            Route::Jobs,
            Route::Job("fw 2/a".into()),
            Route::Rollout("fw-2".into()),
            Route::New,
            Route::Devices,
            Route::Device("sim-0001".into()),
            Route::Tech(None),
            Route::Tech(Some("pump#7".into())),
            Route::Templates,
            Route::Artifacts,
            Route::Audit,
            Route::Settings,
        ];
        for page in pages {
            assert_eq!(Route::parse(&page.href()), page, "{}", page.href());
        }
    }

    #[test]
    fn unknown_and_empty_hashes() {
        assert_eq!(Route::parse(""), Route::Overview);
        assert_eq!(Route::parse("#"), Route::Overview);
        assert_eq!(Route::parse("#/"), Route::Overview);
        assert_eq!(Route::parse("#/nope"), Route::NotFound);
        assert_eq!(Route::parse("#/jobs/a/b"), Route::NotFound);
        assert_eq!(Route::parse("#/jobs?x=1"), Route::Jobs);
    }

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("sim-0001_a.b~"), "sim-0001_a.b~");
        assert_eq!(encode("a b/ñ"), "a%20b%2F%C3%B1");
        assert_eq!(decode("a%20b%2F%C3%B1"), "a b/ñ");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
