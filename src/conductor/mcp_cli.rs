//! `baa-conductor mcp-config`: prints how an MCP client connects to this node's `/mcp` —
//! the Codex `config.toml` entry and the Claude Code command — with the token always
//! taken from an environment variable, never printed. It reads no token and calls
//! nothing: the URL is resolved the way the task command resolves it.

use std::ffi::OsString;
use std::process::ExitCode;

use baa::common::cli::{self, USAGE_EXIT};
use baa::common::settings::Flags;

use crate::client_target::{self, WHERE};

const BINARY: &str = "baa-conductor";
/// The variable the snippets read the token from.
pub const TOKEN_ENV: &str = "BAA_MCP_TOKEN";
/// The server's name in the clients' configs (Codex shows the tools as `mcp__baa__<tool>`).
pub const SERVER_NAME: &str = "baa";

fn usage() -> String {
    format!(
        "{BINARY} mcp-config: print the MCP client configuration for this node (Codex, Claude Code).\n\n\
         USAGE:\n    {BINARY} mcp-config [--conductor-url URL]\n\n\
         Where it looks:{WHERE}\
         The snippets take the token from {TOKEN_ENV}; set it to the node's BAA_SHARED_TOKEN.\n\
         More: docs/mcp.md.\n"
    )
}

/// Runs `baa-conductor mcp-config <args>` (the words after `mcp-config`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let (help, flags) = match parse(args) {
        Ok(p) => p,
        Err(e) => {
            cli::error_line(BINARY, &format!("{e} (try '{BINARY} mcp-config --help')"));
            return ExitCode::from(USAGE_EXIT);
        }
    };
    if help {
        return cli::print(BINARY, &usage());
    }
    match conductor_url(&flags) {
        Ok(base) => cli::print(BINARY, &render(&base)),
        Err(e) => {
            cli::error_line(BINARY, &e);
            ExitCode::from(USAGE_EXIT)
        }
    }
}

/// The conductor's URL as every client command finds it: flag, env, node.env, loopback.
fn conductor_url(flags: &Flags) -> Result<String, String> {
    client_target::for_this_process(BINARY, flags, false)
        .map(|(t, _)| t.base)
        .map_err(|e| e.to_string())
}

fn parse(args: Vec<OsString>) -> Result<(bool, Flags), String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut flags = Flags::default();
    let mut help = false;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => help = true,
            Long("conductor-url") => {
                let v = p
                    .value()
                    .map_err(|_| "--conductor-url needs a value".to_string())?
                    .into_string()
                    .map_err(|_| "--conductor-url: the value is not valid UTF-8".to_string())?;
                flags.set("conductor-url", v);
            }
            Long(name) => return Err(format!("unknown flag --{name}")),
            Short(c) => return Err(format!("unknown flag -{c}")),
            Value(v) => return Err(format!("unexpected argument {:?}", v.to_string_lossy())),
        }
    }
    Ok((help, flags))
}

/// The snippets for the conductor at `base` (`http://HOST:PORT`).
pub fn render(base: &str) -> String {
    let url = format!("{base}/mcp");
    format!(
        "# baa-conductor MCP server: {url}\n\
         # Write tools (tasks_create, system_pause, ...) need the node's shared token in {TOKEN_ENV}:\n\
         #   export {TOKEN_ENV}=\"$(cat \"${{BAA_SHARED_TOKEN_FILE:-$HOME/.config/baa-conductor/shared-token.txt}}\")\"\n\
         \n\
         # Codex: add to ~/.codex/config.toml (or run: codex mcp add {SERVER_NAME} --url {url} --bearer-token-env-var {TOKEN_ENV})\n\
         [mcp_servers.{SERVER_NAME}]\n\
         url = \"{url}\"\n\
         bearer_token_env_var = \"{TOKEN_ENV}\"\n\
         # Codex asks before a write tool under on-request and refuses it under never; to let\n\
         # it run unasked (e.g. the node's own Codex queueing follow-up tasks):\n\
         # default_tools_approval_mode = \"approve\"\n\
         \n\
         # Claude Code: run once (the shell puts the token in Claude's config)\n\
         claude mcp add --transport http {SERVER_NAME} {url} --header \"Authorization: Bearer ${TOKEN_ENV}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippets_name_the_url_and_the_token_variable_only() {
        let s = render("http://100.64.0.7:4317");
        assert!(s.contains("[mcp_servers.baa]\nurl = \"http://100.64.0.7:4317/mcp\"\nbearer_token_env_var = \"BAA_MCP_TOKEN\"\n"), "{s}");
        assert!(
            s.contains("\n# default_tools_approval_mode = \"approve\"\n"),
            "{s}"
        );
        assert!(s.contains("claude mcp add --transport http baa http://100.64.0.7:4317/mcp --header \"Authorization: Bearer $BAA_MCP_TOKEN\""), "{s}");
    }

    #[test]
    fn flags() {
        let (help, f) = parse(vec!["--conductor-url".into(), "http://x:1".into()]).unwrap();
        assert!(!help);
        assert_eq!(f.get("conductor-url"), Some("http://x:1"));
        assert!(parse(vec!["--help".into()]).unwrap().0);
        assert!(parse(vec!["--nope".into()]).is_err());
        assert!(parse(vec!["extra".into()]).is_err());
    }
}
