//! HTTP handlers: plain functions from a parsed request and the app to a response.
//!
//! Owns the JSON wire types (only `api/` builds request/response JSON) and the mapping of
//! credentials to a [`auth::Principal`]. Must not run SQL: it calls domain modules and `store`.

pub mod auth;
pub mod health;
pub mod management;
pub mod metrics;
pub mod openai;
pub mod params;
pub mod responses;
pub mod telegram;
#[cfg(test)]
pub(crate) mod testing;
pub mod turn_input;
pub mod user;
pub mod wire;
