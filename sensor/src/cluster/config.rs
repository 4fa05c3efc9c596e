//! `[cluster]`: the NATS JetStream servers, this sensor's name, what it
//! publishes and how membership expires. Absent: a single sensor, nothing
//! of this module runs.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::detect::config::de_duration;

/// ```toml
/// [cluster]
/// servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
/// name = "fra1"                 # unique per sensor: [A-Za-z0-9_-], at most 64
/// fraction = 0.2                # publish destinations at 20 % of a threshold
/// heartbeat = "1s"              # membership heartbeat
/// member_ttl = "5s"             # a member silent this long is gone
/// credentials_file = "/etc/edge-sensor/nats.creds"
/// tls_ca_file = "/etc/edge-sensor/nats-ca.pem"
/// tls_cert_file = "/etc/edge-sensor/nats-client.pem"
/// tls_key_file = "/etc/edge-sensor/nats-client.key"
/// replicas = 1                  # JetStream replicas of the stream and bucket
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub servers: Vec<String>,
    pub name: String,
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    #[serde(default = "default_heartbeat", deserialize_with = "de_duration")]
    pub heartbeat: Duration,
    #[serde(default = "default_ttl", deserialize_with = "de_duration")]
    pub member_ttl: Duration,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    #[serde(default = "default_replicas")]
    pub replicas: usize,
}

fn default_fraction() -> f64 {
    0.2
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(1)
}
fn default_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_replicas() -> usize {
    1
}

/// A `[cluster]` value that cannot be used: the key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ClusterConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ClusterConfigError {
    ClusterConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A sensor name: a NATS subject token and a key-value key.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        if self.servers.is_empty() {
            return Err(bad("cluster.servers", "at least one NATS server is needed"));
        }
        for (i, s) in self.servers.iter().enumerate() {
            if s.parse::<async_nats::ServerAddr>().is_err() {
                return Err(bad(
                    format!("cluster.servers[{i}]"),
                    format!("`{s}` is not a NATS server address (nats://HOST:PORT)"),
                ));
            }
        }
        if !valid_name(&self.name) {
            return Err(bad(
                "cluster.name",
                format!(
                    "`{}` must be 1 to 64 of A-Z, a-z, 0-9, `-`, `_` (a NATS subject token)",
                    self.name
                ),
            ));
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(bad("cluster.fraction", "must be in (0, 1]"));
        }
        if self.heartbeat < Duration::from_millis(100) {
            return Err(bad("cluster.heartbeat", "must be at least 100ms"));
        }
        if self.member_ttl < 2 * self.heartbeat {
            return Err(bad(
                "cluster.member_ttl",
                "must be at least twice cluster.heartbeat",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(bad("cluster.replicas", "must be 1 to 5"));
        }
        for (key, path) in [
            ("cluster.credentials_file", &self.credentials_file),
            ("cluster.tls_ca_file", &self.tls_ca_file),
            ("cluster.tls_cert_file", &self.tls_cert_file),
            ("cluster.tls_key_file", &self.tls_key_file),
        ] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(bad(key, "must be an absolute path"));
            }
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => Err(bad("cluster.tls_key_file", "needed with tls_cert_file")),
            (None, Some(_)) => Err(bad("cluster.tls_cert_file", "needed with tls_key_file")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, String> {
        let c: ClusterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn the_documented_example_parses() {
        let src = include_str!("config.rs");
        let start = src.find("/// ```toml\n").unwrap() + "/// ```toml\n".len();
        let end = start + src[start..].find("/// ```\n").unwrap();
        let text: String = src[start..end]
            .lines()
            .map(|l| l.trim_start().strip_prefix("/// ").unwrap_or(""))
            .filter(|l| *l != "[cluster]")
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.name, "fra1");
        assert_eq!(c.fraction, 0.2);
        assert_eq!(c.member_ttl, Duration::from_secs(5));
    }

    #[test]
    fn defaults_need_servers_and_a_name() {
        let c = parse("servers = [\"nats://127.0.0.1:4222\"]\nname = \"a\"").unwrap();
        assert_eq!((c.fraction, c.replicas), (0.2, 1));
        assert_eq!(c.heartbeat, Duration::from_secs(1));
        assert!(parse("name = \"a\"").unwrap_err().contains("servers"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let ok = "servers = [\"nats://127.0.0.1:4222\"]\nname = \"a\"\n";
        let cases = [
            ("servers = []\nname = \"a\"", "cluster.servers"),
            (
                "servers = [\"nats://a b\"]\nname = \"a\"",
                "cluster.servers[0]",
            ),
            (
                "servers = [\"nats://x:4222\"]\nname = \"a.b\"",
                "cluster.name",
            ),
            ("servers = [\"nats://x:4222\"]\nname = \"\"", "cluster.name"),
            ("fraction = 0", "cluster.fraction"),
            ("fraction = 1.5", "cluster.fraction"),
            ("heartbeat = \"10ms\"", "cluster.heartbeat"),
            (
                "heartbeat = \"1s\"\nmember_ttl = \"1s\"",
                "cluster.member_ttl",
            ),
            ("replicas = 0", "cluster.replicas"),
            ("credentials_file = \"x.creds\"", "cluster.credentials_file"),
            ("tls_cert_file = \"/c.pem\"", "cluster.tls_key_file"),
            ("tls_key_file = \"/c.key\"", "cluster.tls_cert_file"),
            ("fraktion = 0.5", "fraktion"),
        ];
        for (text, key) in cases {
            let doc = if text.starts_with("servers") {
                text.to_string()
            } else {
                format!("{ok}{text}")
            };
            let e = parse(&doc).unwrap_err();
            assert!(e.contains(key), "{text:?}: {e:?} does not name {key}");
        }
    }
}
