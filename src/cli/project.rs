//! `codara project create|list|info`: named workspaces under the workspaces root, created from
//! a template.
//!
//! Works on the root and the data dir directly, beside a running server: it never takes the
//! server's instance lock, and the audit entry of a creation goes through its own SQLite
//! connection (WAL). `create` is `workspace::projects::create`, the operation the API runs
//! too. Bad input exits 2, other failures (an existing project without `--force`) 1.

use crate::audit::Actor;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::workspace::{inventory, ops, projects};
use std::path::Path;

const HELP: &str = "\
Usage:
  codara project create NAME [--template T] [--provider P] [--force] [--config FILE]
  codara project list [--config FILE]
  codara project info NAME [--config FILE]

A project is a named workspace <workspaces root>/NAME with .codara/project.toml and a git
repository. Run `codara project <command> --help` for details.
";

const CREATE_HELP: &str = "\
Usage: codara project create NAME [--template T] [--provider P] [--force] [--config FILE]

Creates <workspaces root>/NAME from a template and makes it a git repository with an initial
commit. NAME: letters, digits, `.`, `_`, `-`, starting with a letter or digit, at most 80.
An existing project is left alone (exit 1) unless --force is given.

Options:
  --template T   default | python | docs | empty ([workspace].default_template if omitted)
  --provider P   default provider of the project: codex | gemini | opencode
  --force        initialize a directory that exists: one Codara did not create, or a project
                 again (its metadata is rewritten); its files are kept
  --config FILE  the codara.toml to read
";

const LIST_HELP: &str = "\
Usage: codara project list [--config FILE]

Lists the projects directly under the workspaces root: name, template, relative path.
";

const INFO_HELP: &str = "\
Usage: codara project info NAME [--config FILE]

Shows a project's path, template, default provider, git state and bound sessions.
";

/// Dispatches `codara project ...`.
pub fn run(mut args: pico_args::Arguments) -> Result<i32> {
    let sub = args
        .subcommand()
        .map_err(|e| Error::bad_request(e.to_string()))?;
    match sub.as_deref() {
        None => {
            let asked = super::wants_help(&mut args, HELP);
            if !asked {
                out!("{HELP}");
            }
            Ok(if asked { 0 } else { 2 })
        }
        Some("create") => create(args),
        Some("list") => list(args),
        Some("info") => info(args),
        Some(other) => Err(Error::bad_request(format!(
            "unknown project command `{other}`; see `codara project --help`"
        ))),
    }
}

fn create(mut args: pico_args::Arguments) -> Result<i32> {
    if super::wants_help(&mut args, CREATE_HELP) {
        return Ok(0);
    }
    let overrides = super::config_flag(&mut args)?;
    let template: Option<String> = args
        .opt_value_from_str("--template")
        .map_err(|e| Error::bad_param("template", e.to_string()))?;
    let provider: Option<String> = args
        .opt_value_from_str("--provider")
        .map_err(|e| Error::bad_param("provider", e.to_string()))?;
    let force = args.contains("--force");
    let name = name_arg(&mut args)?;
    super::finish(args)?;
    projects::validate_name(&name)?;
    if let Some(template) = &template {
        projects::Template::parse(template)?;
    }
    if let Some(provider) = &provider {
        projects::validate_provider(provider)?;
    }
    let config = Config::load(&overrides)?;
    let store = super::create_store(&config)?;
    let sandbox = crate::sandbox::Sandbox::for_config(&config)?;
    // This process's own locks: a server beside it keeps its locks in its own memory.
    let locks = crate::turns::locks::Locks::default();
    let ctx = ops::Context {
        config: &config,
        store: &store,
        sandbox: &sandbox,
        locks: &locks,
    };
    let info = projects::create(
        &ctx,
        projects::NewProject {
            name: &name,
            template: template.as_deref(),
            provider: provider.as_deref(),
            force,
        },
        &Actor::Cli,
        None,
    )?;
    let verb = if info.created {
        "Created"
    } else {
        "Initialized"
    };
    outln!("{verb} project: {}", info.meta.name);
    outln!("Path: {}", info.path.display());
    outln!("Template: {}", info.meta.template);
    if let Some(provider) = &info.meta.provider {
        outln!("Default provider: {provider}");
    }
    outln!("Metadata: {}", info.meta.metadata_path.display());
    Ok(0)
}

fn list(mut args: pico_args::Arguments) -> Result<i32> {
    if super::wants_help(&mut args, LIST_HELP) {
        return Ok(0);
    }
    let overrides = super::config_flag(&mut args)?;
    super::finish(args)?;
    let config = Config::load(&overrides)?;
    let found = projects::list(&config.workspace.root)?;
    if found.is_empty() {
        outln!("No Codara projects found.");
        return Ok(0);
    }
    outln!("{:<24} {:<10} Relative Path", "Name", "Template");
    outln!("{}", "-".repeat(70));
    for project in found {
        outln!(
            "{:<24} {:<10} {}",
            project.meta.name,
            project.meta.template,
            project.relative_path
        );
    }
    Ok(0)
}

fn info(mut args: pico_args::Arguments) -> Result<i32> {
    if super::wants_help(&mut args, INFO_HELP) {
        return Ok(0);
    }
    let overrides = super::config_flag(&mut args)?;
    let name = name_arg(&mut args)?;
    super::finish(args)?;
    projects::validate_name(&name)?;
    let config = Config::load(&overrides)?;
    let project = projects::info(&config.workspace.root, &name)?;
    let root = config
        .workspace
        .root
        .canonicalize()
        .map_err(|e| Error::io(&config.workspace.root, e))?;
    let sandbox = crate::sandbox::Sandbox::for_config(&config)?;
    let mut record = inventory::record(
        &root,
        Path::new(&project.relative_path),
        &config.host,
        &sandbox,
    );
    // Reading: without a database there are no bound sessions, and none is created.
    if let Some(store) = super::existing_store(&config)? {
        store.read(|conn| inventory::count_sessions(conn, std::slice::from_mut(&mut record)))?;
    }
    let meta = &project.meta;
    let git = &record.git;
    outln!("Name: {}", meta.name);
    outln!("Path: {}", project.path.display());
    outln!("Template: {}", meta.template);
    outln!(
        "Default provider: {}",
        meta.provider.as_deref().unwrap_or("n/a")
    );
    outln!(
        "Created: {} by {}",
        meta.created_at.as_deref().unwrap_or("unknown"),
        meta.created_by.as_deref().unwrap_or("unknown")
    );
    outln!("Git repo: {}", if git.is_git_repo { "yes" } else { "no" });
    if git.is_git_repo {
        outln!("Branch: {}", git.branch.as_deref().unwrap_or("n/a"));
        match (&git.short_commit, &git.head_summary) {
            (Some(commit), Some(summary)) => outln!("Head: {commit} {summary}"),
            _ => outln!("Head: no commits"),
        }
        let dirty = match git.dirty {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown (needs the sandbox)",
        };
        outln!("Dirty: {dirty}");
    }
    outln!("Workspace id: {}", record.id);
    outln!("Bound sessions: {}", record.bound_sessions_count);
    Ok(0)
}

/// The positional NAME (a usage error naming `name` when missing).
fn name_arg(args: &mut pico_args::Arguments) -> Result<String> {
    args.opt_free_from_str::<String>()
        .map_err(|e| Error::bad_param("name", e.to_string()))?
        .ok_or_else(|| Error::bad_param("name", "NAME is required; see `codara project --help`"))
}
