//! One HTTP try of one outbox entry: the signed JSON body for a webhook, a short text with
//! `Title`, `Priority`, `Tags` (and `Actions`) headers for ntfy. Bounded in time.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use baa::common::time::now_ms;

use super::outbox::Entry;
use super::sign::webhook_signature;
use super::target::{Kind, Target};

/// Connect and whole-request bounds of one try.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sender {
    agent: ureq::Agent,
    secret: Option<String>,
}

impl Sender {
    /// `ca_file`: PEM certificates trusted for https targets instead of the built-in Mozilla
    /// roots. Fails when the file cannot be read or holds no certificate.
    pub fn new(secret: Option<String>, ca_file: Option<&Path>) -> Result<Sender, String> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            // Loopback and LAN receivers must not go through an environment proxy.
            .proxy(None)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Sender { agent, secret })
    }

    /// One try; Ok on a 2xx.
    pub fn send(&self, target: &Target, e: &Entry) -> Result<(), String> {
        let sent = match target.kind() {
            Kind::Webhook => {
                let body = serde_json::to_vec(&e.body).map_err(|err| err.to_string())?;
                let ts = now_ms() / 1000;
                let mut req = self
                    .agent
                    .post(target.url())
                    .header("Content-Type", "application/json")
                    .header("User-Agent", "baa-conductor")
                    .header("X-Baa-Event", &e.kind)
                    .header("X-Baa-Delivery", &e.id)
                    .header("X-Baa-Timestamp", &ts.to_string());
                if let Some(secret) = &self.secret {
                    req = req.header("X-Baa-Signature", &webhook_signature(secret, ts, &body));
                }
                req.send(&body[..])
            }
            Kind::Ntfy => {
                let b = &e.body;
                let mut req = self
                    .agent
                    .post(target.url())
                    .header("Title", &header_text(str_at(b, "title")))
                    .header("Priority", &ntfy_priority(str_at(b, "priority")))
                    .header("Tags", str_at(b, "tags"))
                    .header("X-Baa-Delivery", &e.id);
                if let Some(actions) = ntfy_actions(b) {
                    req = req.header("Actions", &actions);
                }
                req.send(str_at(b, "message").as_bytes())
            }
        };
        match sent {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
            Err(err) => Err(err.to_string()),
        }
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A header value: printable ASCII only (others become `?`), at most 200 characters.
fn header_text(s: &str) -> String {
    s.chars()
        .take(200)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

fn ntfy_priority(p: &str) -> String {
    match p {
        "low" => "2",
        "high" => "4",
        _ => "3",
    }
    .into()
}

/// ntfy's `Actions` header: `http, <label>, <url>, method=POST, clear=true; …`.
pub fn ntfy_actions(body: &Value) -> Option<String> {
    let actions = body.get("actions")?.as_array()?;
    let parts: Vec<String> = actions
        .iter()
        .map(|a| {
            format!(
                "http, {}, {}, method=POST, clear=true",
                header_text(str_at(a, "label")).replace([',', ';'], " "),
                str_at(a, "url")
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ntfy_headers_are_ascii_and_actions_list_the_buttons() {
        assert_eq!(header_text("done ✓"), "done ?");
        assert_eq!(ntfy_priority("high"), "4");
        let b = json!({"actions": [
            {"label": "Accept", "url": "http://h/v1/approvals/r/accept?exp=1&sig=a"},
            {"label": "Decline", "url": "http://h/v1/approvals/r/decline?exp=1&sig=b"}]});
        assert_eq!(
            ntfy_actions(&b).unwrap(),
            "http, Accept, http://h/v1/approvals/r/accept?exp=1&sig=a, method=POST, clear=true; http, Decline, http://h/v1/approvals/r/decline?exp=1&sig=b, method=POST, clear=true"
        );
        assert_eq!(ntfy_actions(&json!({})), None);
    }
}
