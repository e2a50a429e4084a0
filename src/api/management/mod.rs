//! Handlers of `/management/v1/*`: one file per resource.

pub mod auth;
pub mod overview;
pub mod sessions;
pub mod version;
