//! Integration tests: the real `codara` binary on an ephemeral port, real SQLite files, raw HTTP.

mod support;

mod accounts;
mod attachments;
mod auth;
mod authz;
mod cli;
mod cli_admin;
mod config;
mod dashboard;
mod first_run;
mod hostile_http;
mod http_shapes;
mod isolation;
mod lifecycle;
mod mock_clis;
mod observability;
mod openai_fidelity;
mod responses;
mod smoke;
mod storage;
mod telegram;
mod turns;
mod users;
mod vault;
mod warm;
mod workspaces;
