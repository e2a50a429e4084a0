//! Configuration as the running binary sees it: precedence of environment, `codara.toml` and
//! `.env`, validation errors that stop start-up, and `--config`/`CODARA_CONFIG`.

use crate::support::{self, TempDir, SECRET};
use std::path::{Path, PathBuf};

/// The effective `workspaces_root` of a server started in `dir` with `env`.
fn workspaces_root(dir: &Path, env: &[(&str, &str)]) -> String {
    let mut builder = support::server().dir(dir);
    for (name, value) in env {
        builder = builder.env(name, Some(value));
    }
    let mut server = builder.start();
    let overview = server.get("/management/v1/overview", Some(SECRET));
    assert_eq!(overview.status, 200, "{}", overview.text());
    let root = overview.json()["data"]["workspaces_root"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
    root
}

fn canonical(dir: &TempDir) -> PathBuf {
    dir.path().canonicalize().unwrap()
}

#[test]
fn workspaces_root_precedence_env_over_file_over_dotenv() {
    let dotenv = "# comment\nUAG_WORKSPACES_ROOT=ws-dotenv\n";
    let toml = "[workspace]\nroot = \"ws-toml\"\n";

    // `.env` alone applies (relative to the directory it sits in).
    let only_dotenv = TempDir::new("cfg-dotenv");
    std::fs::write(only_dotenv.path().join(".env"), dotenv).unwrap();
    let root = workspaces_root(only_dotenv.path(), &[]);
    assert_eq!(
        root,
        canonical(&only_dotenv)
            .join("ws-dotenv")
            .display()
            .to_string(),
        ".env beats the built-in default"
    );

    // codara.toml beats `.env`.
    let file_and_dotenv = TempDir::new("cfg-file");
    std::fs::write(file_and_dotenv.path().join(".env"), dotenv).unwrap();
    std::fs::write(file_and_dotenv.path().join("codara.toml"), toml).unwrap();
    let root = workspaces_root(file_and_dotenv.path(), &[]);
    assert_eq!(
        root,
        canonical(&file_and_dotenv)
            .join("ws-toml")
            .display()
            .to_string(),
        "codara.toml beats .env"
    );

    // The environment beats both.
    let all = TempDir::new("cfg-env");
    std::fs::write(all.path().join(".env"), dotenv).unwrap();
    std::fs::write(all.path().join("codara.toml"), toml).unwrap();
    let root = workspaces_root(all.path(), &[("UAG_WORKSPACES_ROOT", "/srv/ws-env")]);
    assert_eq!(
        root, "/srv/ws-env",
        "environment beats codara.toml and .env"
    );
}

#[test]
fn api_token_from_environment_beats_dotenv() {
    let dotenv_secret = "dotenv-operator-secret-abcdef";
    let dir = TempDir::new("cfg-token");
    std::fs::write(
        dir.path().join(".env"),
        format!("export API_TOKEN=\"{dotenv_secret}\"\n"),
    )
    .unwrap();

    // Environment set: it wins, the .env value is not accepted.
    let mut server = support::server().dir(dir.path()).start();
    let body = |s: &str| format!(r#"{{"operator_secret":"{s}"}}"#);
    let ok = server.post_json("/management/v1/auth/token", None, &body(SECRET));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let refused = server.post_json("/management/v1/auth/token", None, &body(dotenv_secret));
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(server.signal_and_wait("TERM"), Some(0));

    // Environment unset: the .env value is the operator secret.
    let mut server = support::server()
        .dir(dir.path())
        .env("API_TOKEN", None)
        .start();
    assert!(
        !server.stdout.iter().any(|l| l.contains("generated")),
        "a configured secret is not generated: {:?}",
        server.stdout
    );
    let ok = server.post_json("/management/v1/auth/token", None, &body(dotenv_secret));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let refused = server.post_json("/management/v1/auth/token", None, &body(SECRET));
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(
        !server.data_dir().join("operator.secret").exists(),
        "no secret file when one is configured"
    );
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}

/// Starts with `toml` (and `env`), expects exit code 2 and every fragment in stderr.
fn expect_config_error(toml: Option<&str>, env: &[(&str, &str)], fragments: &[&str]) {
    let dir = TempDir::new("cfg-bad");
    let mut builder = support::server().dir(dir.path());
    if let Some(toml) = toml {
        builder = builder.toml(toml);
    }
    for (name, value) in env {
        builder = builder.env(name, Some(value));
    }
    match builder.try_start() {
        Ok(_) => panic!("started despite bad configuration {toml:?} {env:?}"),
        Err((code, stdout, stderr)) => {
            assert_eq!(
                code,
                Some(2),
                "exit code for {toml:?} {env:?}; stderr:\n{stderr}"
            );
            for fragment in fragments {
                assert!(
                    stderr.contains(fragment),
                    "stderr lacks {fragment:?} for {toml:?} {env:?}:\n{stderr}"
                );
            }
            assert!(!stdout.contains("listening"), "{stdout}");
        }
    }
    assert!(
        !dir.path().join("data").exists(),
        "a configuration error stops start-up before the data dir is created"
    );
}

#[test]
fn unknown_key_in_server_table() {
    expect_config_error(
        Some("[server]\nhost = \"127.0.0.1\"\nbogus = 1\n"),
        &[],
        &["codara.toml:3", "server.bogus", "unknown field `bogus`"],
    );
}

#[test]
fn unknown_table() {
    expect_config_error(
        Some("[nonsense]\nx = 1\n"),
        &[],
        &["codara.toml", "nonsense", "unknown field `nonsense`"],
    );
}

#[test]
fn port_out_of_range() {
    expect_config_error(
        Some("[server]\nport = 70000\n"),
        &[],
        &["codara.toml:2", "server.port", "invalid value", "70000"],
    );
}

#[test]
fn port_of_the_wrong_type() {
    expect_config_error(
        Some("[server]\nport = \"x\"\n"),
        &[],
        &["codara.toml:2", "server.port", "invalid type"],
    );
}

#[test]
fn unknown_log_level() {
    expect_config_error(
        Some("[logging]\nlevel = \"loud\"\n"),
        &[],
        &["codara.toml", "logging.level", "must be one of"],
    );
}

#[test]
fn bad_port_in_the_environment() {
    // `--port 0` on the command line would win, but a malformed value is still an error.
    expect_config_error(
        None,
        &[("CODARA_PORT", "abc")],
        &["CODARA_PORT", "server.port", "abc"],
    );
}

#[test]
fn missing_config_file_given_by_flag() {
    let dir = TempDir::new("cfg-missing");
    let result = support::server()
        .dir(dir.path())
        .arg("--config")
        .arg("missing.toml")
        .try_start();
    let Err((code, _, stderr)) = result else {
        panic!("started without its --config file");
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert!(stderr.contains("cannot read the config file"), "{stderr}");
}

#[test]
fn codara_config_in_another_dir_resolves_paths_against_that_dir() {
    let root = TempDir::new("cfg-elsewhere");
    let conf = root.path().join("conf");
    let cwd = root.path().join("cwd");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(
        conf.join("codara.toml"),
        "[storage]\ndata_dir = \"state\"\n[workspace]\nroot = \"ws\"\n",
    )
    .unwrap();
    // The `.env` beside that file is the one read, not one in the working directory.
    std::fs::write(conf.join(".env"), "API_TOKEN=secret-beside-the-config\n").unwrap();
    std::fs::write(cwd.join(".env"), "API_TOKEN=secret-in-the-cwd\n").unwrap();
    let conf = conf.canonicalize().unwrap();
    let config_path = conf.join("codara.toml");

    let mut server = support::server()
        .dir(&cwd)
        .env("API_TOKEN", None)
        .env("CODARA_CONFIG", Some(config_path.to_str().unwrap()))
        .start();
    let overview = server.get("/management/v1/overview", Some("secret-beside-the-config"));
    assert_eq!(overview.status, 200, "{}", overview.text());
    let data = &overview.json()["data"];
    assert_eq!(
        data["storage"]["data_dir"],
        conf.join("state").display().to_string()
    );
    assert_eq!(
        data["workspaces_root"],
        conf.join("ws").display().to_string()
    );
    assert!(conf.join("state").join("codara.db").is_file());
    assert!(!cwd.join("data").exists(), "nothing is created in the cwd");
    let refused = server.get("/management/v1/overview", Some("secret-in-the-cwd"));
    assert_eq!(refused.status, 401);
    assert_eq!(server.signal_and_wait("TERM"), Some(0));
}
