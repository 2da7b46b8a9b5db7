//! Logger setup shared by the daemons: `RUST_LOG` filters, default `info`, millisecond
//! timestamps (launchd log files have no other clock).

pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .target(env_logger::Target::Stderr)
        .try_init();
}
