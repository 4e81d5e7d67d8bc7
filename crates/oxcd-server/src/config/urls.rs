//! URL lists (`--listen-client-urls` and friends) and `--initial-cluster`.

use std::collections::BTreeMap;

use url::Url;

use super::ConfigError;

/// A URL as etcd prints it: `scheme://host:port` without a trailing slash.
pub fn url_text(u: &Url) -> String {
    let s = u.as_str();
    s.strip_suffix('/').unwrap_or(s).to_string()
}

/// Parses a comma-separated list of `http(s)://host:port` URLs for `--<flag>`.
pub(super) fn parse_urls(flag: &'static str, text: &str) -> Result<Vec<Url>, ConfigError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |reason: &str| ConfigError::BadUrl {
            flag,
            url: part.to_string(),
            reason: reason.to_string(),
        };
        let u = Url::parse(part).map_err(|e| bad(&e.to_string()))?;
        match u.scheme() {
            "http" | "https" => {}
            s => return Err(bad(&format!("scheme {s:?} is not http or https"))),
        }
        if u.host_str().is_none() {
            return Err(bad("it has no host"));
        }
        if u.port().is_none() {
            return Err(bad("it has no port"));
        }
        if !(u.path().is_empty() || u.path() == "/") {
            return Err(bad("it must not have a path"));
        }
        out.push(u);
    }
    if out.is_empty() {
        return Err(ConfigError::BadUrl {
            flag,
            url: text.to_string(),
            reason: "no URL given".into(),
        });
    }
    Ok(out)
}

/// Parses `name=url,name=url,...` into each member's peer URLs.
pub(super) fn parse_initial_cluster(text: &str) -> Result<BTreeMap<String, Vec<Url>>, ConfigError> {
    let mut map: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(ConfigError::BadInitialCluster {
                value: text.to_string(),
                reason: format!("{part:?} is not name=url"),
            });
        };
        let urls = parse_urls("initial-cluster", url)?;
        map.entry(name.to_string()).or_default().extend(urls);
    }
    if map.is_empty() {
        return Err(ConfigError::BadInitialCluster {
            value: text.to_string(),
            reason: "it names no member".into(),
        });
    }
    Ok(map)
}
