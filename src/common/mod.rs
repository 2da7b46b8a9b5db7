//! Code shared by the three daemons. Nothing here knows a daemon's routes or state:
//! the daemons talk to each other over local HTTP, exactly as the deployed processes do.

pub mod api_error;
pub mod cli;
pub mod client;
pub mod codex_fields;
pub mod codex_home;
pub mod cron;
pub mod daemon;
pub mod dirlock;
pub mod http;
pub mod ids;
pub mod jsonl;
pub mod listen;
pub mod logfile;
pub mod logging;
pub mod malloc;
pub mod netaddr;
pub mod node_env;
pub mod proc;
pub mod responses;
pub mod runtime_root;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod state_health;
pub mod store;
pub mod strict_json;
pub mod sync;
pub mod text;
pub mod time;
pub mod tz;
pub mod ws;
