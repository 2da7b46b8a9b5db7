//! Worker mode: the lease holder runs queued tasks as Codex turns through codexd.
//!
//! - `model`: the task and run records; `validate`: `POST /v1/tasks` bodies;
//! - `store`: one JSON file per task and per run, the in-memory index, migration, pruning;
//!   `logs`: the per-task JSONL log; `progress`: the task fields and log lines derived
//!   from a run's step records;
//! - `scheduler`: the one thread that decides what runs; `gate`: whether new turns may start;
//!   `control`: what the scheduler, the runs and the routes share;
//! - `worker`: one run (a session, then a turn per step); `codexd`: its calls to codexd, and
//!   `replies` their typed answers; `events`: codexd's event stream; `reconcile`:
//!   exactly-once decisions for a step in flight;
//! - `api`: create, cancel, retry and the summary, for the routes; `review`: a worktree
//!   task's diff, merge and discard.

pub mod api;
pub mod codexd;
pub mod control;
pub mod events;
pub mod gate;
pub mod hold_notice;
pub mod limit_hold;
pub mod lines;
pub mod logs;
pub mod model;
pub mod progress;
pub mod reconcile;
pub mod replies;
pub mod review;
pub mod scheduler;
pub mod store;
pub mod usage;
pub mod validate;
pub mod worker;
