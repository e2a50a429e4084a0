//! The latest-release check against a GitHub-compatible API, and its comparison rules.
//!
//! Owns version parsing/comparison (pure) and the one outbound call. Must not run unless
//! `[release].enabled` is set and the caller asked; a failure is a status, never an error.

use crate::app::App;
use crate::config::ReleaseConfig;
use std::time::{Duration, Instant};

/// The outcome kind of a release check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// `[release].enabled` is false.
    Disabled,
    /// Enabled, but the caller did not ask.
    NotChecked,
    /// No usable `[release].repository`.
    Unconfigured,
    /// The API answered with a release.
    Ok,
    /// The API could not be reached or answered badly.
    Unavailable,
}

/// A release check result.
#[derive(Debug, Clone)]
pub struct ReleaseCheck {
    /// Whether checks are enabled.
    pub enabled: bool,
    /// What happened.
    pub status: CheckStatus,
    /// `owner/repo` when configured.
    pub repository: Option<String>,
    /// This build's version.
    pub current_version: String,
    /// The latest release's version.
    pub latest_version: Option<String>,
    /// Whether the latest release is newer.
    pub update_available: bool,
    /// The release page.
    pub release_url: Option<String>,
    /// Why the check failed.
    pub error: Option<String>,
    /// Whether this came from the management endpoint's cache.
    pub cached: bool,
}

/// The management endpoint's cache entry.
pub struct Cached {
    at: Instant,
    check: ReleaseCheck,
}

impl ReleaseCheck {
    fn new(config: &ReleaseConfig, status: CheckStatus) -> ReleaseCheck {
        ReleaseCheck {
            enabled: config.enabled,
            status,
            repository: config.repository.as_deref().and_then(normalize_repository),
            current_version: crate::VERSION.to_string(),
            latest_version: None,
            update_available: false,
            release_url: None,
            error: None,
            cached: false,
        }
    }
}

/// Checks now, bypassing any cache (the CLI path).
pub fn check(config: &ReleaseConfig) -> ReleaseCheck {
    if !config.enabled {
        return ReleaseCheck::new(config, CheckStatus::Disabled);
    }
    let mut result = ReleaseCheck::new(config, CheckStatus::Unavailable);
    let Some(repository) = result.repository.clone() else {
        result.status = CheckStatus::Unconfigured;
        result.error =
            Some("release repository is not configured ([release].repository)".to_string());
        return result;
    };
    let url = format!(
        "{}/repos/{repository}/releases/latest",
        config.api_base_url.trim_end_matches('/')
    );
    match fetch_latest(
        &url,
        Duration::from_secs(config.check_timeout_seconds.max(1)),
    ) {
        Ok((tag, html_url)) => {
            let latest = normalize_tag(&tag);
            result.update_available = is_newer(&latest, crate::VERSION);
            result.latest_version = Some(latest);
            result.release_url = html_url;
            result.status = CheckStatus::Ok;
        }
        Err(message) => result.error = Some(message),
    }
    result
}

/// The management endpoint's check: cached for `check_cache_ttl_seconds`, and only when asked.
pub fn check_cached(app: &App, requested: bool) -> ReleaseCheck {
    let config = &app.config.release;
    if !config.enabled {
        return ReleaseCheck::new(config, CheckStatus::Disabled);
    }
    if !requested {
        return ReleaseCheck::new(config, CheckStatus::NotChecked);
    }
    let ttl = Duration::from_secs(config.check_cache_ttl_seconds);
    if let Ok(cache) = app.release_cache.lock() {
        if let Some(entry) = cache.as_ref().filter(|entry| entry.at.elapsed() < ttl) {
            let mut check = entry.check.clone();
            check.cached = true;
            return check;
        }
    }
    let check = check(config);
    // Failures are not cached, so the next request tries again.
    if check.status == CheckStatus::Ok {
        if let Ok(mut cache) = app.release_cache.lock() {
            *cache = Some(Cached {
                at: Instant::now(),
                check: check.clone(),
            });
        }
    }
    check
}

fn fetch_latest(url: &str, timeout: Duration) -> Result<(String, Option<String>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Accept", "application/vnd.github+json")
        .header("User-Agent", format!("codara/{}", crate::VERSION))
        .header("X-GitHub-Api-Version", "2022-11-28")
        .call()
        .map_err(|e| format!("release check failed: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("release check returned HTTP {status}"));
    }
    let text = response
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("release check failed reading the answer: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("release check answer is not JSON: {e}"))?;
    let tag = value["tag_name"]
        .as_str()
        .or_else(|| value["name"].as_str())
        .filter(|t| !t.is_empty())
        .ok_or("release check answer has no tag_name")?;
    Ok((
        tag.to_string(),
        value["html_url"].as_str().map(str::to_string),
    ))
}

/// `owner/repo`, `https://github.com/owner/repo(.git)` or `git@github.com:owner/repo.git` → `owner/repo`.
pub fn normalize_repository(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/');
    let text = text.strip_suffix(".git").unwrap_or(text);
    let rest = text
        .strip_prefix("https://github.com/")
        .or_else(|| text.strip_prefix("http://github.com/"))
        .or_else(|| text.strip_prefix("git@github.com:"))
        .unwrap_or(text);
    let mut parts = rest.split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    (parts.next().is_none() && valid(owner) && valid(repo)).then(|| format!("{owner}/{repo}"))
}

/// Strips `refs/tags/` and a leading `v`.
pub fn normalize_tag(tag: &str) -> String {
    let tag = tag.trim();
    let tag = tag.strip_prefix("refs/tags/").unwrap_or(tag);
    tag.strip_prefix(['v', 'V']).unwrap_or(tag).to_string()
}

/// Whether `candidate` is a newer release than `current` (numeric parts, then pre-release < release).
pub fn is_newer(candidate: &str, current: &str) -> bool {
    fn split(version: &str) -> (Vec<u64>, bool) {
        let version = normalize_tag(version);
        let end = version.find(['-', '+']).unwrap_or(version.len());
        let numbers = version[..end]
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        (numbers, version[end..].starts_with('-'))
    }
    let (mut a, a_pre) = split(candidate);
    let (mut b, b_pre) = split(current);
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    match a.cmp(&b) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => b_pre && !a_pre,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        assert_eq!(
            normalize_repository("acme/codara").as_deref(),
            Some("acme/codara")
        );
        assert_eq!(
            normalize_repository("https://github.com/acme/codara.git").as_deref(),
            Some("acme/codara")
        );
        assert_eq!(
            normalize_repository("git@github.com:acme/codara.git").as_deref(),
            Some("acme/codara")
        );
        assert_eq!(normalize_repository("acme"), None);
        assert_eq!(normalize_repository("a/b/c"), None);
    }

    #[test]
    fn comparisons() {
        assert!(is_newer("v1.0.0", "1.0.0-rc.1"));
        assert!(!is_newer("v0.1.0", "0.1.0"));
        assert!(is_newer("0.10.0", "0.9.9"));
        assert!(!is_newer("0.9", "0.9.0"));
        assert!(!is_newer("1.0.0-rc.2", "1.0.0"));
        assert_eq!(normalize_tag("refs/tags/v2.1.0"), "2.1.0");
    }
}
