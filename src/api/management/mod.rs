//! Handlers of `/management/v1/*`: one file per resource.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod channels;
pub mod observability;
pub mod overview;
pub mod playground;
pub mod projects;
pub mod providers;
pub mod sessions;
pub mod settings;
pub mod users;
pub mod version;
pub mod workspaces;
