//! The sensor's configuration file (TOML), its defaults and its validation.
//!
//! Every error names the key it is about, so an operator can fix the file
//! without reading code. Unknown keys are errors, not silently ignored: a typo
//! in a safety setting must not fall back to a default.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

pub use crate::xdp::attach::{AttachMode, validate_iface_name};
use crate::{
    bgp::BgpConfig,
    detect::DetectConfig,
    mitigate::MitigationConfig,
    telemetry::{self, sampling::SamplingRules, template::TemplateLimits},
};
use edge_sensor_common::{
    DEFAULT_MAX_DESTINATIONS, DEFAULT_PIN_DIR, MAX_ALLOW_PREFIXES, MAX_FLOW_PLANS,
    MAX_TELEMETRY_PORTS, TelemetryKind,
};
use edge_sensor_common::{
    MAX_SAMPLING_RATE, MAX_SAMPLING_RULES, SAMPLING_DEFAULT, SAMPLING_OVERRIDE, SamplingRule,
};
use ipnet::IpNet;
use serde::Deserialize;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub xdp: XdpConfig,
    pub telemetry: TelemetryConfig,
    pub exporters: ExportersConfig,
    /// Detection (`[detect]`); without it the sensor only counts.
    pub detect: Option<DetectConfig>,
    /// BGP peers (`[bgp]`); without it mitigations are decided and logged,
    /// announced nowhere.
    pub bgp: Option<BgpConfig>,
    /// Mitigation policy and safety limits (`[mitigation]`).
    pub mitigation: MitigationConfig,
    /// Several sensors, one network-wide view (`[cluster]`); without it a
    /// single sensor.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// The daemon's own files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Where state that must survive a restart is kept (learnt templates;
    /// active mitigations), written atomically.
    pub state_dir: PathBuf,
    /// The control socket the CLI talks to (root-only).
    pub control_socket: PathBuf,
    /// The HTTP listener: Prometheus `/metrics` and the JSON API
    /// `/api/v1/` ([`crate::http`]); `""` turns it off.
    pub metrics_listen: String,
    /// The API's write token (bans through `POST /api/v1/routes`): a file
    /// only root may read. Without it, the API only reads.
    pub api_token_file: Option<PathBuf>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/edge-sensor"),
            control_socket: PathBuf::from(crate::control::DEFAULT_SOCKET),
            metrics_listen: crate::metrics::DEFAULT_LISTEN.to_string(),
            api_token_file: None,
        }
    }
}

impl DaemonConfig {
    /// The metrics address, `None` when turned off.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        (!self.metrics_listen.is_empty()).then(|| self.metrics_listen.parse().ok())?
    }
}

/// Which exporters the sensor listens to.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExportersConfig {
    /// Source prefixes allowed to send telemetry; empty accepts any (with a
    /// warning at start).
    pub allow: Vec<IpNet>,
    /// Sampling rates set by configuration, per exporter prefix (the
    /// datagram's source address; the longest prefix wins).
    pub sampling: Vec<SamplingConfig>,
}

/// `[[exporters.sampling]]`: a rate for the exporters of `prefix`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    pub prefix: IpNet,
    /// One sampled packet in `rate`.
    pub rate: u32,
    /// `override`: replaces whatever the telemetry says; `default`: applies
    /// only where the telemetry states no rate.
    pub mode: SamplingMode,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SamplingMode {
    Override,
    Default,
}

impl ExportersConfig {
    /// The sampling rules, as the kernel and the decoders take them.
    pub fn sampling_rules(&self) -> SamplingRules {
        SamplingRules::new(self.sampling.iter().map(|s| {
            (
                s.prefix,
                SamplingRule {
                    rate: s.rate,
                    mode: match s.mode {
                        SamplingMode::Override => SAMPLING_OVERRIDE,
                        SamplingMode::Default => SAMPLING_DEFAULT,
                    },
                },
            )
        }))
    }
}

/// Where and how the XDP program runs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct XdpConfig {
    /// Interfaces the telemetry arrives on.
    pub interfaces: Vec<String>,
    /// Attach mode.
    pub mode: AttachMode,
    /// Directory (on a bpffs) under which the maps are pinned.
    pub pin_path: PathBuf,
    /// Destinations tracked at once (LRU: the least recently seen go first).
    pub destinations: u32,
    /// What runs when the kernel refuses the program or an interface
    /// cannot take it.
    pub fallback: Fallback,
}

impl Default for XdpConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            mode: AttachMode::Auto,
            pin_path: PathBuf::from(DEFAULT_PIN_DIR),
            destinations: DEFAULT_MAX_DESTINATIONS,
            fallback: Fallback::Userspace,
        }
    }
}

/// `xdp.fallback`: when the XDP program cannot run (refused by the verifier,
/// no XDP on an interface in the requested mode, no BPF at all).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Keep protecting: run the userspace collector, with a warning.
    #[default]
    Userspace,
    /// Refuse to start (exit non-zero).
    None,
}

/// UDP ports the telemetry arrives on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub sflow_ports: Vec<u16>,
    pub ipfix_ports: Vec<u16>,
    pub netflow_ports: Vec<u16>,
    /// Pass datagrams the kernel consumed on to the stack instead of
    /// dropping them (for a host that also runs another collector).
    pub pass_telemetry: bool,
    /// Seconds a NetFlow v9 / IPFIX template (and a learnt sampling rate)
    /// is kept without being announced again (RFC 7011 §8.4). Exporters
    /// resend every few minutes at most (Cisco's default template timeout
    /// is 30 min), so the default keeps them through one missed refresh.
    pub template_lifetime: u64,
    /// Templates kept per exporter address (all its source ports and
    /// domains), and their estimated bytes; past either the least recently
    /// announced goes (counted as `templates_evicted`).
    pub max_templates_per_exporter: usize,
    pub max_template_bytes_per_exporter: usize,
    /// The same, for all exporters together.
    pub max_templates: usize,
    pub max_template_bytes: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            sflow_ports: telemetry::default_ports(TelemetryKind::Sflow),
            ipfix_ports: telemetry::default_ports(TelemetryKind::Ipfix),
            netflow_ports: telemetry::default_ports(TelemetryKind::Netflow),
            pass_telemetry: false,
            template_lifetime: 3600,
            max_templates_per_exporter: TemplateLimits::DEFAULT.per_exporter,
            max_template_bytes_per_exporter: TemplateLimits::DEFAULT.per_exporter_bytes,
            max_templates: TemplateLimits::DEFAULT.total,
            max_template_bytes: TemplateLimits::DEFAULT.total_bytes,
        }
    }
}

impl TelemetryConfig {
    /// The template store's bounds.
    pub fn template_limits(&self) -> TemplateLimits {
        TemplateLimits {
            per_exporter: self.max_templates_per_exporter,
            per_exporter_bytes: self.max_template_bytes_per_exporter,
            total: self.max_templates,
            total_bytes: self.max_template_bytes,
        }
    }

    /// Every configured port with what it carries.
    pub fn ports(&self) -> impl Iterator<Item = (u16, TelemetryKind)> + '_ {
        self.sflow_ports
            .iter()
            .map(|&p| (p, TelemetryKind::Sflow))
            .chain(self.ipfix_ports.iter().map(|&p| (p, TelemetryKind::Ipfix)))
            .chain(
                self.netflow_ports
                    .iter()
                    .map(|&p| (p, TelemetryKind::Netflow)),
            )
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, iface) in self.xdp.interfaces.iter().enumerate() {
            validate_iface_name(iface).map_err(|m| invalid(format!("xdp.interfaces[{i}]"), m))?;
        }
        let pin = self.xdp.pin_path.as_os_str().as_encoded_bytes();
        if !self.xdp.pin_path.is_absolute() || pin.contains(&0) {
            return Err(invalid(
                "xdp.pin_path",
                "must be an absolute path on a bpffs",
            ));
        }

        if !self.daemon.state_dir.is_absolute() {
            return Err(invalid("daemon.state_dir", "must be an absolute path"));
        }
        if self
            .daemon
            .api_token_file
            .as_ref()
            .is_some_and(|p| !p.is_absolute())
        {
            return Err(invalid("daemon.api_token_file", "must be an absolute path"));
        }
        if !self.daemon.control_socket.is_absolute() {
            return Err(invalid("daemon.control_socket", "must be an absolute path"));
        }
        if !self.daemon.metrics_listen.is_empty() && self.daemon.metrics_addr().is_none() {
            return Err(invalid(
                "daemon.metrics_listen",
                format!(
                    "`{}` is not ADDRESS:PORT (\"\" turns it off)",
                    self.daemon.metrics_listen
                ),
            ));
        }
        if let Some(d) = &self.detect {
            d.validate().map_err(|e| match e {
                crate::detect::DetectConfigError::Invalid { key, message } => invalid(key, message),
                other => invalid("detect", other.to_string()),
            })?;
        }
        if let Some(c) = &self.cluster {
            c.validate().map_err(|e| invalid(e.key, e.message))?;
            if self.detect.is_none() {
                return Err(invalid(
                    "cluster",
                    "needs [detect]: the network-wide view detects with its thresholds",
                ));
            }
        }
        if let Some(b) = &self.bgp {
            b.validate().map_err(|e| invalid(e.key, e.message))?;
            // Two sessions to one router: each would replace the other's
            // routes, and the router would see flapping sessions.
            for (i, p) in b.peers.iter().enumerate() {
                if let Some(first) = b.peers[..i].iter().position(|q| q.address == p.address) {
                    return Err(invalid(
                        format!("bgp.peers[{i}].address"),
                        format!("{} is already bgp.peers[{first}]'s address", p.address),
                    ));
                }
            }
            // Every prefix the speaker may announce for must be one the
            // detector watches over: one definition of "our networks".
            // (With networks learnt from BGP, `announce_within` is the
            // ceiling they are learnt within instead.)
            if let Some(d) = &self.detect
                && d.networks_from_bgp.is_empty()
            {
                for (i, net) in b.announce_within.iter().enumerate() {
                    if !d.own_networks.iter().any(|own| own.contains(net)) {
                        return Err(invalid(
                            format!("bgp.announce_within[{i}]"),
                            format!("{net} is not inside detect.own_networks"),
                        ));
                    }
                }
            }
        }
        if let Some(d) = &self.detect {
            for (i, n) in d.networks_from_bgp.iter().enumerate() {
                let key = format!("detect.networks_from_bgp[{i}]");
                let peer = self
                    .bgp
                    .as_ref()
                    .and_then(|b| b.peers.iter().find(|p| p.name == n.peer));
                let Some(peer) = peer else {
                    return Err(invalid(
                        format!("{key}.peer"),
                        format!("{:?} is not one of bgp.peers", n.peer),
                    ));
                };
                if !peer.families.iter().any(|f| f.to_string() == n.family) {
                    return Err(invalid(
                        format!("{key}.family"),
                        format!("{} is not in bgp.peers {:?}'s families", n.family, n.peer),
                    ));
                }
            }
        }
        self.mitigation
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        if !(60..=7 * 86400).contains(&self.telemetry.template_lifetime) {
            return Err(invalid(
                "telemetry.template_lifetime",
                format!(
                    "{} s is outside 60 ..= 604800 (one minute to a week)",
                    self.telemetry.template_lifetime
                ),
            ));
        }
        let t = &self.telemetry;
        for (key, value, min, max) in [
            (
                "max_templates_per_exporter",
                t.max_templates_per_exporter,
                1,
                1 << 20,
            ),
            // Every template may need a plan in the kernel's FLOW_PLANS.
            ("max_templates", t.max_templates, 1, MAX_FLOW_PLANS as usize),
            // Below 64 KiB an exporter's ordinary set of templates may not fit.
            (
                "max_template_bytes_per_exporter",
                t.max_template_bytes_per_exporter,
                64 << 10,
                1 << 30,
            ),
            (
                "max_template_bytes",
                t.max_template_bytes,
                64 << 10,
                1 << 30,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    format!("telemetry.{key}"),
                    format!("{value} is outside {min} ..= {max}"),
                ));
            }
        }
        if t.max_templates_per_exporter > t.max_templates
            || t.max_template_bytes_per_exporter > t.max_template_bytes
        {
            return Err(invalid(
                "telemetry.max_templates_per_exporter",
                "a per-exporter limit above the total one: one exporter could evict every other's",
            ));
        }

        // Below this an LRU hash is a toy; above it the map alone takes
        // more than 11 GiB (about 176 bytes per destination).
        if !(1024..=(64 << 20)).contains(&self.xdp.destinations) {
            return Err(invalid(
                "xdp.destinations",
                format!("{} is outside 1024 ..= 67108864", self.xdp.destinations),
            ));
        }
        if self.exporters.allow.len() > MAX_ALLOW_PREFIXES as usize {
            return Err(invalid(
                "exporters.allow",
                format!("at most {MAX_ALLOW_PREFIXES} prefixes"),
            ));
        }
        for (i, net) in self.exporters.allow.iter().enumerate() {
            if net.trunc() != *net {
                return Err(invalid(
                    format!("exporters.allow[{i}]"),
                    format!("{net} has host bits set (did you mean {}?)", net.trunc()),
                ));
            }
        }

        if self.exporters.sampling.len() > MAX_SAMPLING_RULES as usize {
            return Err(invalid(
                "exporters.sampling",
                format!("at most {MAX_SAMPLING_RULES} rules"),
            ));
        }
        for (i, rule) in self.exporters.sampling.iter().enumerate() {
            let key = format!("exporters.sampling[{i}]");
            if rule.prefix.trunc() != rule.prefix {
                return Err(invalid(
                    format!("{key}.prefix"),
                    format!(
                        "{} has host bits set (did you mean {}?)",
                        rule.prefix,
                        rule.prefix.trunc()
                    ),
                ));
            }
            if !(1..=MAX_SAMPLING_RATE).contains(&rule.rate) {
                return Err(invalid(
                    format!("{key}.rate"),
                    format!("{} is outside 1 ..= {MAX_SAMPLING_RATE}", rule.rate),
                ));
            }
            if let Some(j) = self.exporters.sampling[..i]
                .iter()
                .position(|r| r.prefix == rule.prefix)
            {
                return Err(invalid(
                    format!("{key}.prefix"),
                    format!("{} is also in exporters.sampling[{j}]", rule.prefix),
                ));
            }
        }

        let t = &self.telemetry;
        let lists = [
            ("telemetry.sflow_ports", &t.sflow_ports),
            ("telemetry.ipfix_ports", &t.ipfix_ports),
            ("telemetry.netflow_ports", &t.netflow_ports),
        ];
        let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
        for (key, ports) in lists {
            for &port in ports {
                if port == 0 {
                    return Err(invalid(key, "port 0 is not a valid UDP port"));
                }
                if let Some(other) = seen.insert(port, key) {
                    return Err(invalid(
                        key,
                        format!("port {port} is also listed in `{other}`"),
                    ));
                }
            }
        }
        if seen.is_empty() {
            return Err(invalid(
                "telemetry",
                "no telemetry port configured: the sensor would see nothing",
            ));
        }
        if seen.len() > MAX_TELEMETRY_PORTS as usize {
            return Err(invalid(
                "telemetry",
                format!(
                    "{} ports configured, at most {MAX_TELEMETRY_PORTS}",
                    seen.len()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::default());
        let ports: Vec<_> = c.telemetry.ports().collect();
        assert_eq!(
            ports,
            vec![
                (6343, TelemetryKind::Sflow),
                (4739, TelemetryKind::Ipfix),
                (2055, TelemetryKind::Netflow)
            ]
        );
        assert_eq!(c.xdp.pin_path, PathBuf::from("/sys/fs/bpf/edge-sensor/v2"));
        assert_eq!(c.xdp.mode, AttachMode::Auto);
        assert_eq!(c.xdp.fallback, Fallback::Userspace);
    }

    #[test]
    fn the_fast_path_settings_parse() {
        let c = Config::from_toml("[xdp]\nmode = \"userspace\"\nfallback = \"none\"\n").unwrap();
        assert_eq!(
            (c.xdp.mode, c.xdp.fallback),
            (AttachMode::Userspace, Fallback::None)
        );
        let e = Config::from_toml("[xdp]\nfallback = \"kernel\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fallback") && e.contains("userspace"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/edge-sensor.example.toml");
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.telemetry.sflow_ports, vec![6343]);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = Config::from_toml("[telemetry]\nsflow_port = [6343]\n").unwrap_err();
        assert!(e.to_string().contains("sflow_port"), "{e}");
        let e = Config::from_toml("[xdpp]\n").unwrap_err();
        assert!(e.to_string().contains("xdpp"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "[telemetry]\nipfix_ports = [6343]\n",
                "telemetry.ipfix_ports",
            ),
            (
                "[telemetry]\nnetflow_ports = [0]\n",
                "telemetry.netflow_ports",
            ),
            ("[telemetry]\nsflow_ports = [70000]\n", "sflow_ports"),
            ("[xdp]\ninterfaces = [\"a/b\"]\n", "xdp.interfaces[0]"),
            ("[xdp]\ninterfaces = [\"\"]\n", "xdp.interfaces[0]"),
            ("[xdp]\npin_path = \"relative\"\n", "xdp.pin_path"),
            ("[xdp]\nmode = \"turbo\"\n", "mode"),
            ("[xdp]\nfallback = \"skb\"\n", "fallback"),
            ("[xdp]\ndestinations = 10\n", "xdp.destinations"),
            (
                "[exporters]\nallow = [\"198.18.0.1/24\"]\n",
                "exporters.allow[0]",
            ),
            ("[exporters]\nallow = [\"not-a-prefix\"]\n", "allow"),
            (
                "[telemetry]\nsflow_ports = []\nipfix_ports = []\nnetflow_ports = []\n",
                "telemetry",
            ),
            (
                "[[exporters.sampling]]\nprefix = \"192.0.2.1/24\"\nrate = 10\nmode = \"override\"\n",
                "exporters.sampling[0].prefix",
            ),
            (
                "[[exporters.sampling]]\nprefix = \"192.0.2.0/24\"\nrate = 0\nmode = \"default\"\n",
                "exporters.sampling[0].rate",
            ),
            (
                "[[exporters.sampling]]\nprefix = \"192.0.2.0/24\"\nrate = 10\nmode = \"sometimes\"\n",
                "mode",
            ),
            (
                "[[exporters.sampling]]\nprefix = \"192.0.2.0/24\"\nrate = 10\nmode = \"default\"\n\
                 [[exporters.sampling]]\nprefix = \"192.0.2.0/24\"\nrate = 20\nmode = \"override\"\n",
                "exporters.sampling[1].prefix",
            ),
            (
                "[telemetry]\ntemplate_lifetime = 5\n",
                "telemetry.template_lifetime",
            ),
            ("[daemon]\nstate_dir = \"var/lib\"\n", "daemon.state_dir"),
        ];
        for (text, key) in cases {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: error {e:?} does not name {key}");
        }
    }

    /// Issue 19 item 6: nonsense that used to be accepted.
    #[test]
    fn nonsense_is_refused_with_the_key_named() {
        let peer = |name: &str| {
            format!(
                "[[bgp.peers]]\nname = \"{name}\"\naddress = \"192.0.2.1\"\npeer_asn = 65001\n\
                 families = [\"ipv4-flowspec\"]\n"
            )
        };
        let two_peers = format!(
            "[detect]\nown_networks = [\"192.0.2.0/24\"]\n[bgp]\nrouter_id = \"192.0.2.10\"\n\
             local_asn = 65001\nannounce_within = [\"192.0.2.0/24\"]\n{}{}",
            peer("a"),
            peer("b")
        );
        let cases = [
            (
                "[detect]\nown_networks = [\"192.0.2.0/24\"]\n[detect.thresholds.all]\npps = 1e30\n"
                    .to_string(),
                "pps",
            ),
            (
                "[detect]\nown_networks = [\"192.0.2.0/24\"]\n[detect.thresholds.udp]\nbps = \"2000T\"\n"
                    .to_string(),
                "bps",
            ),
            (two_peers, "bgp.peers[1].address"),
            (
                "[mitigation]\nmin_prefix_v4 = 0\n".to_string(),
                "mitigation.min_prefix_v4",
            ),
            (
                "[mitigation]\nmin_prefix_v6 = 0\n".to_string(),
                "mitigation.min_prefix_v6",
            ),
            (
                "[detect]\nown_networks = [\"192.0.2.0/24\", \"0.0.0.0/0\"]\n".to_string(),
                "detect.own_networks[1]",
            ),
            (
                "[detect]\nown_networks = [\"::/0\"]\n".to_string(),
                "detect.own_networks[0]",
            ),
            (
                "[mitigation]\nmanual_duration = \"100000h\"\n".to_string(),
                "mitigation.manual_duration",
            ),
            (
                "[mitigation]\nmin_hold = \"9000h\"\n".to_string(),
                "mitigation.min_hold",
            ),
            (
                "[telemetry]\nmax_templates_per_exporter = 0\n".to_string(),
                "telemetry.max_templates_per_exporter",
            ),
            (
                "[telemetry]\nmax_template_bytes = 100\n".to_string(),
                "telemetry.max_template_bytes",
            ),
            (
                "[telemetry]\nmax_templates = 20000\n".to_string(),
                "telemetry.max_templates",
            ),
        ];
        for (text, key) in &cases {
            let e = match Config::from_toml(text) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(key), "{text:?}: error {e:?} does not name {key}");
        }
        // The default route is an own network only when asked for.
        Config::from_toml("[detect]\nown_networks = [\"0.0.0.0/0\"]\nallow_default_route = true\n")
            .expect("explicitly allowed");
    }

    #[test]
    fn networks_from_bgp_name_a_peer_and_family_it_has() {
        let base = |nfb: &str| {
            format!(
                "[detect]\nown_networks = []\n{nfb}\n[[detect.host_groups]]\nname = \"web\"\n\
                 prefixes = [\"192.0.2.0/25\"]\n[bgp]\nrouter_id = \"192.0.2.10\"\nlocal_asn = 65001\n\
                 announce_within = [\"192.0.2.0/24\", \"198.18.0.0/15\"]\n[[bgp.peers]]\nname = \"r1\"\n\
                 address = \"192.0.2.1\"\npeer_asn = 65000\nnext_hop_v4 = \"192.0.2.254\"\nfamilies = [\"ipv4-flowspec\", \"ipv4-unicast\"]\n"
            )
        };
        let entry = |body: &str| format!("[[detect.networks_from_bgp]]\n{body}");
        // Host group prefixes must still be inside the configured own
        // networks: with none configured, only learnt networks exist.
        let ok = base(&entry("peer = \"r1\"\ncommunity = \"65000:100\"")).replace(
            "[[detect.host_groups]]\nname = \"web\"\nprefixes = [\"192.0.2.0/25\"]\n",
            "",
        );
        let c = Config::from_toml(&ok).expect("own networks from BGP only");
        let n = &c.detect.unwrap().networks_from_bgp[0];
        assert_eq!(
            (n.family.as_str(), n.host_group.as_deref()),
            ("ipv4-unicast", None)
        );
        for (body, key) in [
            (
                "peer = \"r9\"\ncommunity = \"65000:100\"",
                "detect.networks_from_bgp[0].peer",
            ),
            (
                "peer = \"r1\"\nfamily = \"ipv6-unicast\"\ncommunity = \"65000:100\"",
                "detect.networks_from_bgp[0].family",
            ),
            (
                "peer = \"r1\"\ncommunity = \"65000:x\"",
                "detect.networks_from_bgp[0].community",
            ),
            (
                "peer = \"r1\"\ncommunity = \"70000:1\"",
                "detect.networks_from_bgp[0].community",
            ),
            (
                "peer = \"r1\"\ncommunity = \"65000:1:2\"\nhost_group = \"dns\"",
                "detect.networks_from_bgp[0].host_group",
            ),
        ] {
            let text = base(&entry(body))
                .replace("own_networks = []", "own_networks = [\"192.0.2.0/24\"]");
            let e = Config::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{body}: {e}");
        }
    }

    #[test]
    fn too_many_ports_are_refused() {
        let ports: Vec<String> = (1000..1100).map(|p| p.to_string()).collect();
        let text = format!("[telemetry]\nsflow_ports = [{}]\n", ports.join(","));
        let e = Config::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("at most 64"), "{e}");
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = Config::from_file(Path::new("/nonexistent/edge-sensor.toml")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/edge-sensor.toml"),
            "{e}"
        );
    }
}
