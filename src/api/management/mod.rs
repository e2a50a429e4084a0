//! Handlers of `/management/v1/*`: one file per resource.

pub mod auth;
pub mod overview;
pub mod projects;
pub mod sessions;
pub mod workspaces;
pub mod version;
