//! Integration tests: the real `codara` binary on an ephemeral port, real SQLite files, raw HTTP.

mod support;

mod smoke;
