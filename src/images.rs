//! Image inputs of a turn: `data:` URLs decoded, `http(s)://` URLs fetched under the SSRF rules,
//! the type decided by magic bytes, and the images saved into the workspace for the CLI.
//!
//! Limits: [`MAX_IMAGE_BYTES`] per image, [`MAX_FETCHES`] fetched images per request,
//! [`FETCH_TIMEOUT`] per fetch (data URLs are bounded by `[server].max_body_bytes`). A fetch
//! resolves the host once and refuses the whole URL when any of its addresses is loopback,
//! private, link-local, unspecified or otherwise not public ([`address_is_public`]) unless
//! `[server].image_fetch_private` allows it; the connection goes to the addresses checked (no
//! second lookup), redirects are not followed and no proxy is used. Must not know the wire JSON
//! (that is `api::turn_input`) or decide which messages' images a turn sends (the engine).

use crate::error::{Error, Result};
use crate::turns::prompt::Image;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest image accepted (decoded bytes), whether sent inline or fetched.
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// http(s) images one request may fetch: bounds the time and memory a request can cost (at most
/// 8 × 10 s). Data URLs are not counted: the body limit bounds them, and clients resend the
/// images of earlier turns with the history.
pub const MAX_FETCHES: usize = 8;
/// The bound on one fetch: resolving, connecting, and reading the whole body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Where attachments are saved, relative to the workspace (visible to the confined CLI).
pub const ATTACHMENTS_DIR: [&str; 2] = [".codara", "attachments"];

/// Loads the images of one request, counting fetches against [`MAX_FETCHES`].
#[derive(Debug, Default)]
pub struct Loader {
    /// `[server].image_fetch_private`: fetch from non-public addresses too.
    pub allow_private: bool,
    fetched: usize,
}

impl Loader {
    /// A loader for one request under the operator's fetch setting.
    pub fn new(allow_private: bool) -> Loader {
        Loader {
            allow_private,
            fetched: 0,
        }
    }

    /// The image `url` names (`data:` or `http(s)://`), checked; a 400 naming `param` otherwise.
    pub fn load(&mut self, url: &str, param: &str) -> Result<Image> {
        let bytes = match scheme(url).as_deref() {
            Some("data") => decode_data_url(url),
            Some("http" | "https") if self.fetched >= MAX_FETCHES => Err(format!(
                "at most {MAX_FETCHES} images per request may be fetched from URLs; send the \
                 others as data: URLs"
            )),
            Some("http" | "https") => {
                self.fetched += 1;
                fetch(url, self.allow_private)
            }
            Some(other) => Err(format!(
                "the URL scheme `{other}` is not accepted; send a data: URL or an http(s) URL"
            )),
            None => Err("`image_url` must be a data: URL or an http(s) URL".to_string()),
        }
        .map_err(|message| Error::bad_param(param, message))?;
        checked(bytes).map_err(|message| Error::bad_param(param, message))
    }
}

/// The image type of `bytes` from its magic bytes: PNG, JPEG, GIF or WebP.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The file extension for a sniffed mime type.
pub fn extension(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        _ => "webp",
    }
}

/// The workspace-relative path an image is saved under: the first 16 hex digits of its SHA-256,
/// so the same image is one file however often it is sent.
pub fn attachment_path(image: &Image) -> PathBuf {
    let hash = crate::crypto::sha256_hex(&image.bytes);
    let mut path: PathBuf = ATTACHMENTS_DIR.iter().collect();
    path.push(format!("{}.{}", &hash[..16], extension(&image.mime)));
    path
}

/// Saves `images` into `workspace` under [`ATTACHMENTS_DIR`] without following a symbolic link an
/// agent may have planted there; returns their workspace-relative paths, in order, once each.
pub fn save(workspace: &Path, images: &[&Image]) -> Result<Vec<PathBuf>> {
    let mut saved: Vec<PathBuf> = Vec::new();
    for image in images {
        let path = attachment_path(image);
        if saved.contains(&path) {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Internal("an attachment without a name".to_string()))?;
        crate::datadir::write_private_beneath(workspace, &ATTACHMENTS_DIR, name, &image.bytes)?;
        saved.push(path);
    }
    Ok(saved)
}

/// Whether a fetch may connect to `ip`: public unicast only. Refused: unspecified and "this
/// network" (0/8, ::), loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7),
/// shared CGNAT (100.64/10), link-local (169.254/16, fe80::/10), site-local (fec0::/10),
/// multicast, broadcast and reserved (240/4), IETF protocol assignments (192.0.0/24) and
/// benchmarking (198.18/15); IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64
/// 64:ff9b::/96, 6to4 2002::/16) are judged by that address.
pub fn address_is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => ipv4_is_public(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => ipv4_is_public(v4),
            None => ipv6_is_public(v6),
        },
    }
}

fn ipv4_is_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || a >= 224
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

fn ipv6_is_public(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || (first & 0xff00) == 0xff00)
}

/// The IPv4 address an IPv6 address stands for, when it embeds one.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible; `::` and `::1` are IPv6's own).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        // 64:ff9b::a.b.c.d (NAT64).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The lower-cased scheme of `url`, when it starts with one (`scheme:`).
fn scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// The bytes of a `data:[<type>][;params];base64,<data>` URL; the claimed type is ignored (the
/// bytes decide).
fn decode_data_url(url: &str) -> std::result::Result<Vec<u8>, String> {
    let rest = &url["data:".len()..];
    let (header, data) = rest
        .split_once(',')
        .ok_or("a data: URL needs a `,` before its data")?;
    if !header
        .split(';')
        .any(|p| p.trim().eq_ignore_ascii_case("base64"))
    {
        return Err("a data: URL image must be base64 (`data:image/png;base64,…`)".to_string());
    }
    // Four characters per three bytes, plus padding: refuse before decoding what cannot fit.
    if data.len() > MAX_IMAGE_BYTES.div_ceil(3) * 4 {
        return Err(too_large());
    }
    crate::crypto::base64_decode(
        data,
        crate::crypto::Base64::Standard,
        crate::crypto::Padding::Optional,
    )
    .ok_or_else(|| "the data: URL is not valid base64".to_string())
}

/// An [`Image`] when `bytes` are one of the accepted types and within the size limit.
fn checked(bytes: Vec<u8>) -> std::result::Result<Image, String> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(too_large());
    }
    let mime = sniff(&bytes).ok_or("the data is not a PNG, JPEG, GIF or WebP image")?;
    Ok(Image {
        mime: mime.to_string(),
        bytes: bytes.into(),
    })
}

fn too_large() -> String {
    format!(
        "the image is larger than {} MiB",
        MAX_IMAGE_BYTES / (1024 * 1024)
    )
}

/// Fetches `url` (one GET, no redirects, no proxy, [`FETCH_TIMEOUT`], at most
/// [`MAX_IMAGE_BYTES`]) through [`Guard`], which checks every address the host resolves to.
fn fetch(url: &str, allow_private: bool) -> std::result::Result<Vec<u8>, String> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .max_redirects(0)
        .proxy(None)
        .http_status_as_error(false)
        .user_agent(format!("codara/{}", crate::VERSION))
        .build();
    let refused = Arc::new(Mutex::new(None));
    let guard = Guard {
        allow_private,
        refused: Arc::clone(&refused),
    };
    let agent = ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        guard,
    );
    let refusal = || refused.lock().ok().and_then(|r| r.clone());
    let mut response = agent.get(url).call().map_err(|error| {
        refusal().unwrap_or_else(|| format!("the image URL could not be fetched: {error}"))
    })?;
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
        return Err(format!(
            "the image URL answered a redirect (HTTP {status}); redirects are not followed"
        ));
    }
    if status != 200 {
        return Err(format!("the image URL answered HTTP {status}"));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_IMAGE_BYTES as u64)
        .read_to_vec()
        .map_err(|error| match error {
            ureq::Error::BodyExceedsLimit(_) => too_large(),
            other => format!("reading the image failed: {other}"),
        })
}

/// The resolver of image fetches: the default lookup, then every address checked with
/// [`address_is_public`]; one refused address refuses the URL (the reason is kept for the 400).
/// ureq connects only to the addresses returned here, so a second lookup cannot rebind the host.
#[derive(Debug)]
struct Guard {
    allow_private: bool,
    refused: Arc<Mutex<Option<String>>>,
}

impl ureq::unversioned::resolver::Resolver for Guard {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let addrs = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        if self.allow_private {
            return Ok(addrs);
        }
        if let Some(bad) = addrs.iter().find(|a| !address_is_public(a.ip())) {
            let host = uri.host().unwrap_or_default();
            let message = format!(
                "the image host {host} resolves to {}, which is not a public address; the \
                 gateway does not fetch from loopback, private, link-local or unspecified \
                 addresses",
                bad.ip()
            );
            if let Ok(mut slot) = self.refused.lock() {
                *slot = Some(message.clone());
            }
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                message,
            )));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn data_url(bytes: &[u8]) -> String {
        format!(
            "data:image/png;base64,{}",
            crate::workspace::inventory::base64url_encode(bytes)
                .replace('-', "+")
                .replace('_', "/")
        )
    }

    #[test]
    fn magic_bytes_decide_the_type() {
        for (bytes, expected) in [
            (PNG, Some("image/png")),
            (&[0xff, 0xd8, 0xff, 0xe0][..], Some("image/jpeg")),
            (b"GIF89a..", Some("image/gif")),
            (b"GIF87a..", Some("image/gif")),
            (b"RIFF\x10\0\0\0WEBPVP8 ", Some("image/webp")),
            (b"RIFF\x10\0\0\0WAVEfmt ", None),
            (b"<svg xmlns=", None),
            (b"hello", None),
            (b"", None),
        ] {
            assert_eq!(sniff(bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn data_urls_decode_and_the_bytes_decide() {
        let mut loader = Loader::new(false);
        // The claimed type is ignored: PNG bytes labelled JPEG are a PNG.
        let url = data_url(PNG).replace("image/png", "image/jpeg");
        let image = loader.load(&url, "p").unwrap();
        assert_eq!((image.mime.as_str(), &image.bytes[..]), ("image/png", PNG));
        let refusals = [
            (
                data_url(b"hello, not an image"),
                "not a PNG, JPEG, GIF or WebP",
            ),
            (
                "data:image/png;base64,iVBOR$$$".to_string(),
                "not valid base64",
            ),
            ("data:image/png,%89PNG".to_string(), "must be base64"),
            ("data:image/png;base64".to_string(), "needs a `,`"),
            ("file:///etc/passwd".to_string(), "scheme `file`"),
            ("FTP://example.com/a.png".to_string(), "scheme `ftp`"),
            ("gopher://example.com/".to_string(), "scheme `gopher`"),
            ("/etc/passwd".to_string(), "must be a data: URL"),
            ("not a url".to_string(), "must be a data: URL"),
        ];
        for (url, needle) in refusals {
            let error = loader.load(&url, "messages[0].content[1]").unwrap_err();
            assert_eq!(error.status(), 400);
            assert_eq!(error.param(), Some("messages[0].content[1]"), "{url}");
            assert!(error.to_string().contains(needle), "{url}: {error}");
        }
    }

    #[test]
    fn size_and_count_limits() {
        let mut big = PNG.to_vec();
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        let error = Loader::new(false).load(&data_url(&big), "p").unwrap_err();
        assert!(error.to_string().contains("larger than 10 MiB"), "{error}");
        big.truncate(MAX_IMAGE_BYTES);
        Loader::new(false).load(&data_url(&big), "p").unwrap();

        // Data URLs are not counted (the body limit bounds them); fetches are, refused or not.
        let mut loader = Loader::new(false);
        for _ in 0..3 * MAX_FETCHES {
            loader.load(&data_url(PNG), "p").unwrap();
        }
        for _ in 0..MAX_FETCHES {
            let error = loader.load("http://127.0.0.1:9/a.png", "p").unwrap_err();
            assert!(
                error.to_string().contains("not a public address"),
                "{error}"
            );
        }
        let error = loader.load("http://127.0.0.1:9/a.png", "p").unwrap_err();
        assert!(error.to_string().contains("at most 8 images"), "{error}");
        loader.load(&data_url(PNG), "p").unwrap();
    }

    #[test]
    fn only_public_addresses_are_fetched() {
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
        ];
        for text in public {
            assert!(address_is_public(text.parse().unwrap()), "{text} is public");
        }
        for text in refused {
            assert!(
                !address_is_public(text.parse().unwrap()),
                "{text} is refused"
            );
        }
    }

    #[test]
    fn loopback_urls_are_refused_before_connecting() {
        // Nothing listens on port 9: a refusal here comes from the resolver check, not the
        // connection.
        for url in [
            "http://127.0.0.1:9/a.png",
            "http://[::1]:9/a.png",
            "http://localhost:9/a.png",
            "https://0.0.0.0:9/a.png",
        ] {
            let error = Loader::new(false).load(url, "p").unwrap_err();
            assert!(
                error.to_string().contains("not a public address"),
                "{url}: {error}"
            );
        }
        let error = Loader::new(true)
            .load("http://127.0.0.1:9/a.png", "p")
            .unwrap_err();
        assert!(
            error.to_string().contains("could not be fetched"),
            "{error}"
        );
    }

    #[test]
    fn saved_once_per_content_under_its_hash() {
        let dir = std::env::temp_dir().join(crate::crypto::random_id("codara-images-test-"));
        crate::datadir::ensure_private_dir(&dir).unwrap();
        let image = checked(PNG.to_vec()).unwrap();
        let other = checked(b"GIF89a-other".to_vec()).unwrap();
        let saved = save(&dir, &[&image, &other, &image]).unwrap();
        let hash = crate::crypto::sha256_hex(PNG);
        assert_eq!(
            saved,
            [
                PathBuf::from(format!(".codara/attachments/{}.png", &hash[..16])),
                attachment_path(&other),
            ]
        );
        assert!(saved[1].to_string_lossy().ends_with(".gif"));
        assert_eq!(std::fs::read(dir.join(&saved[0])).unwrap(), PNG);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
