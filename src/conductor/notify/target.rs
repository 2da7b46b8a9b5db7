//! Where notifications go (`BAA_NOTIFY_URLS`): a plain JSON webhook (`http://…`,
//! `https://…`) or an ntfy topic (`ntfy:<topic>` on ntfy.sh, or `ntfy+https://host/topic`
//! for another server).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Ntfy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As configured (the outbox keys entries by it).
    raw: String,
    kind: Kind,
    /// The URL requests go to.
    url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError(pub String);

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Target {
    pub fn parse(raw: &str) -> Result<Target, TargetError> {
        let raw = raw.trim();
        let (kind, url) = if let Some(topic) = raw.strip_prefix("ntfy:") {
            if let Some(url) = topic.strip_prefix("//") {
                return Err(TargetError(format!(
                    "{raw:?}: write ntfy+https://{url} for a server, or ntfy:<topic> for ntfy.sh"
                )));
            }
            if topic.is_empty()
                || !topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(TargetError(format!(
                    "{raw:?}: an ntfy topic is letters, digits, - and _"
                )));
            }
            (Kind::Ntfy, format!("https://ntfy.sh/{topic}"))
        } else if let Some(url) = raw.strip_prefix("ntfy+") {
            (Kind::Ntfy, url.to_string())
        } else {
            (Kind::Webhook, raw.to_string())
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                TargetError(format!(
                    "{raw:?}: not an http(s) URL, ntfy:<topic> or ntfy+https://host/topic"
                ))
            })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(TargetError(format!("{raw:?}: no host")));
        }
        Ok(Target {
            raw: raw.to_string(),
            kind,
            url,
        })
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `scheme://host[:port]/…`: what listings show (paths and user info may hold secrets).
    pub fn redact(raw: &str) -> String {
        let (prefix, rest) = match raw.find("://") {
            Some(i) => (&raw[..i + 3], &raw[i + 3..]),
            None => match raw.strip_prefix("ntfy:") {
                Some(_) => return "ntfy:…".into(),
                None => return "…".into(),
            },
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        format!("{prefix}{host}/…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let t = Target::parse("ntfy:baa-alerts").unwrap();
        assert_eq!(
            (t.kind(), t.url()),
            (&Kind::Ntfy, "https://ntfy.sh/baa-alerts")
        );
        let t = Target::parse("ntfy+http://127.0.0.1:8080/t").unwrap();
        assert_eq!(
            (t.kind(), t.url()),
            (&Kind::Ntfy, "http://127.0.0.1:8080/t")
        );
        let t = Target::parse(" https://hooks.example/x ").unwrap();
        assert_eq!(
            (t.kind(), t.url()),
            (&Kind::Webhook, "https://hooks.example/x")
        );
        for bad in [
            "ftp://x",
            "ntfy:",
            "ntfy:a/b",
            "ntfy://h/t",
            "https:///x",
            "x",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redacts_paths_and_user_info() {
        assert_eq!(
            Target::redact("https://u:p@hooks.example:8443/secret?k=1"),
            "https://hooks.example:8443/…"
        );
        assert_eq!(Target::redact("ntfy:topic"), "ntfy:…");
        assert_eq!(
            Target::redact("ntfy+https://ntfy.example/t"),
            "ntfy+https://ntfy.example/…"
        );
    }
}
