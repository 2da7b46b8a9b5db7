//! The one integration-test crate: every test here drives the real binaries over loopback.
//! One crate means one link step, which matters on a 2-core machine.

mod cli;
mod codex_rig;
mod codexd_child;
mod codexd_durable;
mod codexd_event_log;
mod codexd_faults;
mod codexd_history;
mod codexd_hot_set;
mod codexd_lifecycle;
mod codexd_models;
mod codexd_real;
mod codexd_socket;
mod codexd_state_heal;
mod conductor_api;
mod conductor_codex_proxy;
mod conductor_firefox;
mod conductor_host_ops;
mod conductor_lease;
mod conductor_security;
mod conductor_system_state;
mod conductor_task_cli;
mod conductor_tasks;
mod conductor_tasks_kill;
mod conductor_tasks_real;
mod docs_drift;
mod http_layer;
mod logs;
mod mock_model;
mod stack_e2e;
mod state_files;
mod status_api;
mod status_page;
mod strict_bodies;
mod support;
mod torture;
