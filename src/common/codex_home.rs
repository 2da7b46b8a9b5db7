//! A `CODEX_HOME` whose `config.toml` points `codex` at a local Responses-API model on
//! loopback, so it runs with no network, account or API key. Written by codexd's demo
//! mode and by the tests' mock model fixture.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Writes `dir/config.toml` for the model at `base_url` (codex POSTs `{base_url}/responses`).
///
/// Defaults are `approval_policy = "never"` and `sandbox_mode = "workspace-write"`; a
/// caller that wants approvals overrides them per thread (`thread/start.approvalPolicy`).
/// Retries are off so a failed request fails the turn at once, and a stalled stream fails
/// after 3 s instead of minutes.
pub fn write_codex_home(dir: &Path, base_url: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.toml"), codex_config_toml(base_url))
}

/// The text [`write_codex_home`] writes.
pub fn codex_config_toml(base_url: &str) -> String {
    format!(
        r#"# Written by baa: run codex fully offline against a local Responses-API model.
# gpt-5.5 is a slug codex knows, so it offers exec_command and apply_patch without warnings.
model = "gpt-5.5"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "workspace-write"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

# Without this, app-server startup tries to sync curated plugins from github.com and chatgpt.com.
[features]
plugins = false

[model_providers.mock]
name = "mock"
base_url = {base_url}
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 3000
"#,
        base_url = toml_string(base_url)
    )
}

/// A TOML basic string. Only the escapes TOML requires; a URL rarely needs any.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_string_escapes_quotes_and_controls() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
    }

    #[test]
    fn config_points_the_mock_provider_at_the_url() {
        let toml = codex_config_toml("http://127.0.0.1:9/v1");
        assert!(
            toml.contains("base_url = \"http://127.0.0.1:9/v1\"\n"),
            "{toml}"
        );
        assert!(toml.contains("model_provider = \"mock\"\n"), "{toml}");
    }
}
