//! Projects: named workspaces `<root>/<name>`, laid out from a template, described by
//! `.codara/project.toml` and made a git repository with an initial commit.
//!
//! Owns project names, templates and the metadata file format, and [`create`], the one
//! operation the API and the CLI both call (the workspace lock, the layout, the audit entry).
//! Writes only inside the project directory and never through a symbolic link; an existing
//! directory (a project already, or one Codara did not create) is taken over only with `force`.
//! Must not parse requests or render their answers: callers do.

use super::git::{Git, DEFAULT_IDENTITY};
use super::ops::Context;
use crate::audit::{self, Actor};
use crate::config::HostEnv;
use crate::error::{Error, Result};
use crate::sandbox::Sandbox;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest accepted project name.
pub const MAX_NAME_LEN: usize = 80;

/// The metadata file, relative to the project directory.
pub const METADATA_PATH: &str = ".codara/project.toml";

/// Message of the initial commit of a new project repository.
const INITIAL_COMMIT: &str = "Initialize Codara project";

/// A project layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `README.md`, `docs/`, `src/`, `scripts/`, `tests/`.
    Default,
    /// The default layout plus `src/<package>/__init__.py` and `tests/test_<package>.py`.
    Python,
    /// `README.md`, `docs/` (with `index.md`), `notes/`, `assets/`.
    Docs,
    /// Only the metadata file.
    Empty,
}

impl Template {
    /// Every template, in the order they are listed to people.
    pub const ALL: [Template; 4] = [
        Template::Default,
        Template::Python,
        Template::Docs,
        Template::Empty,
    ];

    /// Parses a template name (case-insensitive); a 400 naming `template` otherwise.
    pub fn parse(text: &str) -> Result<Template> {
        let lower = text.trim().to_ascii_lowercase();
        Template::ALL
            .into_iter()
            .find(|t| t.as_str() == lower)
            .ok_or_else(|| {
                Error::bad_param(
                    "template",
                    format!(
                        "unsupported template `{text}`; use one of: {}",
                        Template::names().join(", ")
                    ),
                )
            })
    }

    /// The lowercase name: `default`, `python`, `docs` or `empty`.
    pub fn as_str(self) -> &'static str {
        match self {
            Template::Default => "default",
            Template::Python => "python",
            Template::Docs => "docs",
            Template::Empty => "empty",
        }
    }

    /// Every template name.
    pub fn names() -> Vec<&'static str> {
        Template::ALL.iter().map(|t| t.as_str()).collect()
    }
}

/// Checks a project name: `[A-Za-z0-9][A-Za-z0-9._-]{0,79}`, one path segment, no `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let fail = |message: &str| Err(Error::bad_param("name", format!("`name` {message}")));
    if name.is_empty() {
        return fail("is required");
    }
    if name.contains('/') || name.contains('\\') {
        return fail("must be a single path segment (no `/` or `\\`)");
    }
    if name.starts_with('.') {
        return fail("cannot be hidden or relative (it starts with `.`)");
    }
    if name.contains("..") {
        return fail("must not contain `..`");
    }
    if name.len() > MAX_NAME_LEN {
        return fail(&format!("must be at most {MAX_NAME_LEN} characters"));
    }
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !first_ok || !rest_ok {
        return fail(
            "may contain only letters, digits, `.`, `_` and `-`, and must start with a letter or digit",
        );
    }
    Ok(())
}

/// Checks a default provider name against the supported CLIs; a 400 naming `provider`.
pub fn validate_provider(provider: &str) -> Result<()> {
    use crate::providers::Provider;
    if Provider::from_name(provider).is_some() {
        Ok(())
    } else {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        Err(Error::bad_param(
            "provider",
            format!(
                "unknown provider `{provider}`; use one of: {}",
                names.join(", ")
            ),
        ))
    }
}

/// The contents of `.codara/project.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectMeta {
    /// The project name (the directory name when the file has none).
    pub name: String,
    /// The template it was laid out with (`default` when the file has none).
    pub template: String,
    /// The provider turns in this project use by default.
    pub provider: Option<String>,
    /// When it was created, RFC 3339.
    pub created_at: Option<String>,
    /// Who created it: `cli`, `operator`, …
    pub created_by: Option<String>,
    /// Absolute path of the metadata file.
    pub metadata_path: PathBuf,
}

/// True when `dir` holds a project metadata file (readable or not).
pub fn has_metadata(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(METADATA_PATH)).is_ok()
}

/// Reads `dir`'s project metadata; `None` when the file is missing, not a regular file or not
/// TOML. Accepts the original gateway's `default_provider` and `[layout].template` keys.
pub fn read_metadata(dir: &Path) -> Option<ProjectMeta> {
    let path = dir.join(METADATA_PATH);
    if !std::fs::symlink_metadata(&path).ok()?.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let text_of = |value: Option<&toml::Value>| -> Option<String> {
        match value? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Datetime(d) => Some(d.to_string()),
            _ => None,
        }
    };
    let layout_template = table
        .get("layout")
        .and_then(|l| l.as_table())
        .and_then(|l| text_of(l.get("template")));
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(ProjectMeta {
        name: text_of(table.get("name")).unwrap_or(dir_name),
        template: text_of(table.get("template"))
            .or(layout_template)
            .unwrap_or_else(|| Template::Default.as_str().to_string()),
        provider: text_of(table.get("provider")).or_else(|| text_of(table.get("default_provider"))),
        created_at: text_of(table.get("created_at")),
        created_by: text_of(table.get("created_by")),
        metadata_path: path,
    })
}

/// A project on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Its metadata.
    pub meta: ProjectMeta,
    /// The canonical project directory.
    pub path: PathBuf,
    /// The directory relative to the root it was looked up in (the name).
    pub relative_path: String,
    /// False when [`create`] initialized a directory that already existed.
    pub created: bool,
}

/// Input of [`create`]: what the API's body and the CLI's arguments say.
#[derive(Debug, Clone, Copy)]
pub struct NewProject<'a> {
    /// The project name (one path segment).
    pub name: &'a str,
    /// The template; `[workspace].default_template` when `None`.
    pub template: Option<&'a str>,
    /// The default provider of the project's turns.
    pub provider: Option<&'a str>,
    /// Initialize a directory that already exists (a project or not).
    pub force: bool,
}

/// Creates project `name` under the workspaces root, for every front: under the directory's
/// turn lock (a 409 while a turn runs there), laid out by [`set_up`], then audited as
/// `project.created` or `project.initialized` (the files exist before the entry is written: a
/// directory cannot be part of a transaction). `created_by` in the metadata is the actor.
pub fn create(
    ctx: &Context<'_>,
    input: NewProject<'_>,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<ProjectInfo> {
    create_in(ctx, &ctx.config.workspace.root, input, actor, request_id)
}

/// [`create`] under `root` instead of the workspaces root: a user's own tree
/// (`<root>/<user_id>`), where the Telegram channel keeps a user's projects so that their turns
/// (confined to that tree) can run in them.
pub fn create_in(
    ctx: &Context<'_>,
    root: &Path,
    input: NewProject<'_>,
    actor: &Actor,
    request_id: Option<&str>,
) -> Result<ProjectInfo> {
    validate_name(input.name)?;
    let template = input
        .template
        .unwrap_or(&ctx.config.workspace.default_template);
    Template::parse(template)?;
    if let Some(provider) = input.provider {
        validate_provider(provider)?;
    }
    crate::datadir::ensure_private_dir(root)?;
    let dir = root
        .canonicalize()
        .map_err(|e| Error::io(root, e))?
        .join(input.name);
    let _guard = ctx.lock(&dir, super::ops::LOCK_WAIT, input.name)?;
    let info = set_up(
        root,
        &ctx.config.host,
        ctx.sandbox,
        input.name,
        template,
        input.provider,
        &actor.as_string(),
        input.force,
    )?;
    let action = if info.created {
        "project.created"
    } else {
        "project.initialized"
    };
    ctx.store.write(|tx| {
        audit::record(
            tx,
            audit::Record {
                actor,
                action,
                target_type: "project",
                target_id: &info.meta.name,
                before: None,
                after: Some(json!({
                    "name": info.meta.name,
                    "path": info.path.display().to_string(),
                    "relative_path": info.relative_path,
                    "template": info.meta.template,
                    "provider": info.meta.provider,
                    "created": info.created,
                    "metadata_path": info.meta.metadata_path.display().to_string(),
                })),
                request_id,
            },
        )
    })?;
    log::info!("{action}: {} ({})", info.meta.name, info.path.display());
    Ok(info)
}

/// Lays out project `name` under `root` (created if missing) from `template`; with `force`,
/// initializes a directory that already exists (existing files are kept; `created_at` and
/// `created_by` of existing metadata too). Then makes the directory a git repository with an
/// initial commit of the layout when it has no commit yet. No lock, no audit: [`create`] is
/// the operation.
///
/// Errors: 400 for a bad name, template or provider; 409 when the directory exists and `force`
/// is off (a project already, or a directory Codara did not make), or when something in the
/// way is not a plain directory or file.
#[allow(clippy::too_many_arguments)] // Each is one field of the request; a struct would only rename them.
pub(crate) fn set_up(
    root: &Path,
    host: &HostEnv,
    sandbox: &Sandbox,
    name: &str,
    template: &str,
    provider: Option<&str>,
    created_by: &str,
    force: bool,
) -> Result<ProjectInfo> {
    validate_name(name)?;
    let template = Template::parse(template)?;
    if let Some(provider) = provider {
        validate_provider(provider)?;
    }
    crate::datadir::ensure_private_dir(root)?;
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let dir = root.join(name);
    let existing = match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => true,
        Ok(_) => {
            return Err(Error::Conflict(format!(
                "{} exists and is not a directory",
                dir.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let previous = if existing { read_metadata(&dir) } else { None };
    if existing && has_metadata(&dir) && !force {
        let template = previous.as_ref().map_or("unknown", |p| p.template.as_str());
        return Err(Error::Conflict(format!(
            "project {name} already exists (template {template}) at {}; use force (`--force`) \
             to initialize it again (its files are kept, its metadata is rewritten)",
            dir.display()
        )));
    }
    if existing && !has_metadata(&dir) && !force {
        return Err(Error::Conflict(format!(
            "project path already exists and was not initialized by Codara: {}; use force \
             (`--force`) to initialize it",
            dir.display()
        )));
    }
    crate::datadir::ensure_private_dir(&dir)?;
    lay_out(&dir, name, template)?;
    let meta = ProjectMeta {
        name: name.to_string(),
        template: template.as_str().to_string(),
        provider: provider
            .map(str::to_string)
            .or_else(|| previous.as_ref().and_then(|p| p.provider.clone())),
        created_at: previous
            .as_ref()
            .and_then(|p| p.created_at.clone())
            .or_else(|| Some(crate::clock::rfc3339(crate::clock::now_ms()))),
        created_by: previous
            .as_ref()
            .and_then(|p| p.created_by.clone())
            .or_else(|| Some(created_by.to_string())),
        metadata_path: dir.join(METADATA_PATH),
    };
    write_metadata(&dir, &meta)?;
    init_repo(&dir, host, sandbox)?;
    Ok(ProjectInfo {
        meta,
        path: dir,
        relative_path: name.to_string(),
        created: !existing,
    })
}

/// The projects directly under `root` (directories with metadata), sorted by name; empty when
/// the root does not exist yet.
pub fn list(root: &Path) -> Result<Vec<ProjectInfo>> {
    let root = match root.canonicalize() {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(root, e)),
    };
    let entries = std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))?;
    let mut projects = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&root, e))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_dir || validate_name(&name).is_err() {
            continue;
        }
        if let Some(meta) = read_metadata(&entry.path()) {
            projects.push(ProjectInfo {
                meta,
                path: entry.path(),
                relative_path: name,
                created: false,
            });
        }
    }
    projects.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    Ok(projects)
}

/// Project `name` under `root`: 400 for a bad name, 404 when there is no such project.
pub fn info(root: &Path, name: &str) -> Result<ProjectInfo> {
    validate_name(name)?;
    let missing = || Error::NotFound(format!("project not found: {name}"));
    let root = root.canonicalize().map_err(|_| missing())?;
    let dir = root.join(name);
    let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    let meta = is_dir
        .then(|| read_metadata(&dir))
        .flatten()
        .ok_or_else(missing)?;
    Ok(ProjectInfo {
        meta,
        path: dir,
        relative_path: name.to_string(),
        created: false,
    })
}

/// The Python package name for a project: `-` and `.` become `_`, and a leading digit gets a
/// `_` prefix, so the result is an importable identifier.
pub fn python_package(name: &str) -> String {
    let package: String = name
        .chars()
        .map(|c| if c == '-' || c == '.' { '_' } else { c })
        .collect();
    if package.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{package}")
    } else {
        package
    }
}

/// Creates the template's directories and files inside `dir`; existing files are kept (an
/// empty `README.md` gets the heading).
fn lay_out(dir: &Path, name: &str, template: Template) -> Result<()> {
    let readme = format!("# {name}\n\nCodara project workspace.\n");
    let mut dirs: Vec<String> = Vec::new();
    let mut files: Vec<(String, String)> = Vec::new();
    match template {
        Template::Default | Template::Python => {
            dirs.extend(["docs", "src", "scripts", "tests"].map(String::from));
            files.push(("README.md".into(), readme));
            if template == Template::Python {
                let package = python_package(name);
                dirs.push(format!("src/{package}"));
                files.push((format!("src/{package}/__init__.py"), String::new()));
                files.push((format!("tests/test_{package}.py"), String::new()));
            }
        }
        Template::Docs => {
            dirs.extend(["docs", "notes", "assets"].map(String::from));
            files.push(("README.md".into(), readme));
            files.push(("docs/index.md".into(), format!("# {name} Docs\n")));
        }
        Template::Empty => {}
    }
    for sub in &dirs {
        plain_dir(&dir.join(sub))?;
    }
    for (path, content) in &files {
        seed_file(&dir.join(path), content)?;
    }
    Ok(())
}

/// Creates `dir` (0700) unless it exists as a real directory; refuses symbolic links and files.
fn plain_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Conflict(format!(
            "{} is in the way: it is not a plain directory",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::datadir::ensure_private_dir(dir)
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Writes `content` to `path` when it is missing or an empty regular file; never follows a
/// symbolic link.
fn seed_file(path: &Path, content: &str) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() == 0 && !content.is_empty() => {
            std::fs::write(path, content).map_err(|e| Error::io(path, e))
        }
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Error::Conflict(format!(
            "{} is in the way: it is not a regular file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            file.write_all(content.as_bytes())
                .map_err(|e| Error::io(path, e))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes `.codara/project.toml` (replacing the file, never through a symbolic link).
fn write_metadata(dir: &Path, meta: &ProjectMeta) -> Result<()> {
    plain_dir(&dir.join(".codara"))?;
    let path = dir.join(METADATA_PATH);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        return Err(Error::Conflict(format!(
            "{} is in the way: it is not a regular file",
            path.display()
        )));
    }
    std::fs::write(&path, render_metadata(meta)).map_err(|e| Error::io(&path, e))
}

/// The TOML text of the metadata file.
fn render_metadata(meta: &ProjectMeta) -> String {
    let mut text = format!(
        "name = {}\ntemplate = {}\n",
        toml_string(&meta.name),
        toml_string(&meta.template)
    );
    if let Some(provider) = &meta.provider {
        text.push_str(&format!("provider = {}\n", toml_string(provider)));
    }
    if let Some(created_at) = &meta.created_at {
        text.push_str(&format!("created_at = {}\n", toml_string(created_at)));
    }
    if let Some(created_by) = &meta.created_by {
        text.push_str(&format!("created_by = {}\n", toml_string(created_by)));
    }
    text
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Makes `dir` a git repository (see `git::ensure_repo`) and, when it has no commit yet,
/// commits everything in it as the initial commit (no hooks, no signing; the default identity
/// only when none is configured). The repository may be one an agent prepared (`force` on an
/// existing directory), so git runs confined to the project directory when the sandbox is
/// enforced; without it only a repository created in this call (whose config is Codara's) gets
/// the commit.
fn init_repo(dir: &Path, host: &HostEnv, sandbox: &Sandbox) -> Result<()> {
    let created = super::git::ensure_repo(dir, host, sandbox.repository_writer(dir))?;
    let confine = sandbox.repository_writer(dir);
    if confine.is_none() && !created {
        log::warn!(
            "{}: not committing into an existing repository without the sandbox",
            dir.display()
        );
        return Ok(());
    }
    let git = Git::user(dir, host, confine)?;
    if git.output(["rev-parse", "-q", "--verify", "HEAD"])?.code == Some(0) {
        return Ok(());
    }
    // Like snapshots: a file git cannot add (unreadable, an embedded repository without a
    // commit) is left out of the initial commit instead of failing the whole project.
    let args = ["add", "-A", "--ignore-errors", "--no-warn-embedded-repo"];
    let added = git.output(args)?;
    let partial = added.code == Some(1) && !added.stderr.contains("fatal:");
    if added.code != Some(0) && !partial {
        return Err(git.failure(args, &added));
    }
    let mut args: Vec<String> = Vec::new();
    for (key, value) in DEFAULT_IDENTITY {
        if git.output(["config", "--get", key])?.code != Some(0) {
            args.extend(["-c".to_string(), format!("{key}={value}")]);
        }
    }
    args.extend(
        [
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            INITIAL_COMMIT,
        ]
        .map(String::from),
    );
    git.run(&args)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostEnv {
        HostEnv {
            path: "/usr/local/bin:/usr/bin:/bin".to_string(),
            home: None,
        }
    }

    struct Temp(PathBuf);

    impl Temp {
        fn new() -> Temp {
            Temp(std::env::temp_dir().join(crate::crypto::random_id("codara-projects-test-")))
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Every path under `dir` (relative, `/`-separated, dirs with a trailing `/`), sorted,
    /// without `.git/`.
    fn tree(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let rel = entry
                    .path()
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if rel == ".git" {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    walk(base, &entry.path(), out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn names() {
        let long = "a".repeat(80);
        for ok in ["news-pulse", "A", "a.b_c-d", "9lives", long.as_str()] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let too_long = "a".repeat(81);
        let table: &[(&str, &str)] = &[
            ("", "required"),
            ("../x", "single path segment"),
            ("a/b", "single path segment"),
            ("a\\b", "single path segment"),
            ("/absolute", "single path segment"),
            (".hidden", "hidden"),
            ("..", "hidden"),
            ("a..b", "`..`"),
            (&too_long, "at most 80"),
            ("-dash", "start with a letter"),
            ("_under", "start with a letter"),
            ("sp ace", "may contain only"),
            ("naïve", "may contain only"),
            ("semi;colon", "may contain only"),
        ];
        for (name, needle) in table {
            let error = validate_name(name).unwrap_err();
            assert_eq!(error.param(), Some("name"), "{name}");
            assert_eq!(error.status(), 400, "{name}");
            assert!(error.to_string().contains(needle), "{name}: {error}");
        }
    }

    #[test]
    fn templates_and_providers() {
        assert_eq!(Template::parse("Python").unwrap(), Template::Python);
        assert_eq!(Template::names(), ["default", "python", "docs", "empty"]);
        let error = Template::parse("rust").unwrap_err();
        assert_eq!(error.param(), Some("template"));
        validate_provider("codex").unwrap();
        assert_eq!(
            validate_provider("gpt").unwrap_err().param(),
            Some("provider")
        );
        assert_eq!(python_package("my-proj.x"), "my_proj_x");
        assert_eq!(python_package("2fa"), "_2fa");
    }

    #[test]
    fn each_template_lays_out_its_files() {
        let temp = Temp::new();
        let expected: &[(&str, &[&str])] = &[
            (
                "default",
                &[
                    ".codara/",
                    ".codara/project.toml",
                    "README.md",
                    "docs/",
                    "scripts/",
                    "src/",
                    "tests/",
                ],
            ),
            (
                "python",
                &[
                    ".codara/",
                    ".codara/project.toml",
                    "README.md",
                    "docs/",
                    "scripts/",
                    "src/",
                    "src/py_proj/",
                    "src/py_proj/__init__.py",
                    "tests/",
                    "tests/test_py_proj.py",
                ],
            ),
            (
                "docs",
                &[
                    ".codara/",
                    ".codara/project.toml",
                    "README.md",
                    "assets/",
                    "docs/",
                    "docs/index.md",
                    "notes/",
                ],
            ),
            ("empty", &[".codara/", ".codara/project.toml"]),
        ];
        for (template, files) in expected {
            let name = if *template == "python" {
                "py-proj".to_string()
            } else {
                format!("{template}-proj")
            };
            let info = set_up(
                &temp.0,
                &host(),
                &Sandbox::for_tests(),
                &name,
                template,
                Some("codex"),
                "cli",
                false,
            )
            .unwrap();
            assert!(info.created);
            assert_eq!(tree(&info.path), *files, "{template}");
            assert!(info.path.join(".git").is_dir());
            assert_eq!(info.meta.template, *template);
            assert_eq!(info.meta.provider.as_deref(), Some("codex"));
            assert_eq!(info.meta.created_by.as_deref(), Some("cli"));
            assert_eq!(read_metadata(&info.path).unwrap(), info.meta);
            let created_at = info.meta.created_at.clone().unwrap();
            assert!(
                crate::clock::parse_rfc3339(&created_at).is_some(),
                "{created_at}"
            );
            if *template != "empty" {
                let readme = std::fs::read_to_string(info.path.join("README.md")).unwrap();
                assert!(readme.starts_with(&format!("# {name}\n")), "{readme}");
            }
            let host = host();
            let git = Git::user(&info.path, &host, None).unwrap();
            let files = git.run(["ls-files"]).unwrap();
            assert!(files.contains(".codara/project.toml"), "{files}");
            let subject = git.run(["log", "-1", "--format=%s"]).unwrap();
            assert_eq!(subject.trim(), INITIAL_COMMIT);
        }
        let docs = std::fs::read_to_string(temp.0.join("docs-proj/docs/index.md")).unwrap();
        assert_eq!(docs, "# docs-proj Docs\n");
        let toml = std::fs::read_to_string(temp.0.join("empty-proj").join(METADATA_PATH)).unwrap();
        assert!(
            toml.starts_with("name = \"empty-proj\"\ntemplate = \"empty\"\nprovider = \"codex\"\n"),
            "{toml}"
        );
        let names: Vec<String> = list(&temp.0)
            .unwrap()
            .into_iter()
            .map(|p| p.relative_path)
            .collect();
        assert_eq!(
            names,
            ["default-proj", "docs-proj", "empty-proj", "py-proj"]
        );
        assert_eq!(info(&temp.0, "docs-proj").unwrap().meta.template, "docs");
        assert_eq!(info(&temp.0, "nope").unwrap_err().status(), 404);
        assert_eq!(info(&temp.0, "../x").unwrap_err().status(), 400);
    }

    #[test]
    fn existing_directories_need_force_and_keep_their_files() {
        let temp = Temp::new();
        std::fs::create_dir_all(temp.0.join("mine")).unwrap();
        std::fs::write(temp.0.join("mine/README.md"), "mine\n").unwrap();
        let error = set_up(
            &temp.0,
            &host(),
            &Sandbox::for_tests(),
            "mine",
            "default",
            None,
            "cli",
            false,
        )
        .unwrap_err();
        assert_eq!(error.status(), 409);
        assert!(error.to_string().contains("force"), "{error}");
        let info = set_up(
            &temp.0,
            &host(),
            &Sandbox::for_tests(),
            "mine",
            "default",
            None,
            "operator",
            true,
        )
        .unwrap();
        assert!(!info.created);
        assert_eq!(
            std::fs::read_to_string(info.path.join("README.md")).unwrap(),
            "mine\n"
        );
        // An existing project is not laid out again without force (its template stays).
        let error = set_up(
            &temp.0,
            &host(),
            &Sandbox::for_tests(),
            "mine",
            "docs",
            Some("gemini"),
            "cli",
            false,
        )
        .unwrap_err();
        assert_eq!(error.status(), 409);
        assert!(
            error
                .to_string()
                .contains("already exists (template default)"),
            "{error}"
        );
        assert_eq!(read_metadata(&info.path).unwrap().template, "default");
        assert!(!info.path.join("notes").exists());
        // Re-initializing a project with force keeps when and by whom it was created.
        let again = set_up(
            &temp.0,
            &host(),
            &Sandbox::for_tests(),
            "mine",
            "docs",
            Some("gemini"),
            "cli",
            true,
        )
        .unwrap();
        assert_eq!(again.meta.created_at, info.meta.created_at);
        assert_eq!(again.meta.created_by.as_deref(), Some("operator"));
        assert_eq!(again.meta.template, "docs");
        assert!(again.path.join("notes").is_dir());
        // Something that is not a directory is in the way.
        std::fs::write(temp.0.join("file"), "x").unwrap();
        assert_eq!(
            set_up(
                &temp.0,
                &host(),
                &Sandbox::for_tests(),
                "file",
                "empty",
                None,
                "cli",
                true
            )
            .unwrap_err()
            .status(),
            409
        );
        // Symbolic links are never written through.
        let outside = temp.0.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(temp.0.join("linked")).unwrap();
        std::os::unix::fs::symlink(&outside, temp.0.join("linked/.codara")).unwrap();
        let error = set_up(
            &temp.0,
            &host(),
            &Sandbox::for_tests(),
            "linked",
            "empty",
            None,
            "cli",
            true,
        )
        .unwrap_err();
        assert_eq!(error.status(), 409, "{error}");
        assert!(!outside.join("project.toml").exists());
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn taking_over_a_prepared_repository_runs_nothing_outside_it() {
        let temp = Temp::new();
        let dir = temp.0.join("trap");
        crate::workspace::ensure_repo(&dir, &host(), None).unwrap();
        let marker = temp.0.join("PWNED");
        let run = format!("touch {}", marker.display());
        let config = dir.join(".git/config");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[filter \"x\"]\n\tclean = {run}\n[core]\n\tfsmonitor = {run}\n\
             [include]\n\tpath = {}\n",
            dir.join("inc").display()
        ));
        std::fs::write(&config, text).unwrap();
        std::fs::write(
            dir.join("inc"),
            format!("[core]\n\thooksPath = {}\n", dir.display()),
        )
        .unwrap();
        std::fs::write(dir.join("pre-commit"), format!("#!/bin/sh\n{run}\n")).unwrap();
        std::fs::write(dir.join(".gitattributes"), "* filter=x\n").unwrap();
        let info = set_up(
            &temp.0,
            &host(),
            &Sandbox::for_tests(),
            "trap",
            "default",
            None,
            "cli",
            true,
        )
        .unwrap();
        assert!(!info.created);
        assert!(
            !marker.exists(),
            "a planted command ran outside the project"
        );
    }
}
