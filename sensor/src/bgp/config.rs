//! The speaker's configuration (the `[bgp]` table): who we are, which
//! networks rules may cover, and each router we peer with, including what
//! that router can take (families, flow spec components and actions, how
//! many rules), so a rule it cannot take is refused before it is sent.
//!
//! Every error names its key; unknown keys are errors.
//!
//! ```toml
//! [bgp]
//! router_id = "192.0.2.10"
//! local_asn = 65001
//! announce_within = ["192.0.2.0/24", "2001:db8::/32"]   # our networks only
//! shutdown_message = "edge-sensor shutdown"             # RFC 9003 text
//!
//! [[bgp.peers]]
//! name = "edge1"                 # OcNOS: IPv4 flow spec + RTBH for both
//! address = "198.51.100.1"
//! local_address = "198.51.100.2" # optional
//! port = 179
//! peer_asn = 65001               # = local_asn: iBGP (LOCAL_PREF, empty AS_PATH)
//! hold_time = 90
//! connect_retry = 5              # seconds, doubling up to connect_retry_max
//! connect_retry_max = 120
//! probation = 5                  # seconds a new route is watched for resets
//! families = ["ipv4-flowspec", "ipv4-unicast", "ipv6-unicast"]
//! next_hop_v4 = "192.0.2.1"      # RTBH next hops, never martian
//! next_hop_v6 = "100::1"
//! communities = []               # on every route
//! blackhole_communities = ["65001:666"]  # besides 65535:666
//! no_export = true
//! local_pref = 100
//! md5_password = "secret"        # TCP-MD5, optional
//! passive = false
//! graceful_restart = 120         # optional: routers keep rules while we restart
//!
//! [bgp.peers.flowspec]
//! dialect = "ocnos"              # built-in profile (see bgp::dialect)
//! actions = ["discard", "traffic-rate-bytes"]  # override: policer checked in the lab
//! # also: components, operators, single_value, ipv4, ipv6, ipv6_offsets,
//! #       flow_label, redirect = ["as2", "ipv4", "as4"], max_components
//! max_rules = 1000
//! ```

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    attribute::Community,
    capability::{AddPathMode, Family},
    dialect::{Dialect, Operators, Profile, RedirectEncoding},
    flowspec::{ActionKind, ComponentKind},
    rtbh,
};

/// A BGP configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct BgpConfigError {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> BgpConfigError {
    BgpConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// The `[bgp]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our AS (a peer may override it with its own `local_asn`).
    pub local_asn: u32,
    /// The operator's own networks: a rule or blackhole whose destination is
    /// not inside one of them is refused (never a rule for someone else's
    /// network).
    pub announce_within: Vec<IpNet>,
    /// The RFC 9003 text sent with Cease on shutdown.
    #[serde(default = "default_shutdown_message")]
    pub shutdown_message: String,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

fn default_shutdown_message() -> String {
    "edge-sensor shutdown".into()
}

/// One router (`[[bgp.peers]]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// A name for logs and status; unique.
    pub name: String,
    /// The router's address.
    pub address: IpAddr,
    /// The router's BGP port (active), or the port we listen on (passive).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The address we connect from (and, when passive, listen on).
    #[serde(default)]
    pub local_address: Option<IpAddr>,
    pub peer_asn: u32,
    /// Our AS towards this router, if not `bgp.local_asn`.
    #[serde(default)]
    pub local_asn: Option<u32>,
    /// Seconds proposed in OPEN: 0, or 3 and more (RFC 4271 §4.2).
    #[serde(default = "default_hold_time")]
    pub hold_time: u16,
    /// Seconds before the first reconnect; doubles on each failure.
    #[serde(default = "default_connect_retry")]
    pub connect_retry: u64,
    /// The most seconds between reconnects.
    #[serde(default = "default_connect_retry_max")]
    pub connect_retry_max: u64,
    /// Seconds a newly sent route must stay without the router resetting
    /// the session before it is trusted; a reset sooner makes it a
    /// suspect (flap protection, see `bgp::flap`).
    #[serde(default = "default_probation")]
    pub probation: u64,
    /// The families to negotiate and send.
    #[serde(default = "default_families")]
    pub families: Vec<Family>,
    /// Next hop of IPv4 blackholes (needed with `ipv4-unicast`).
    #[serde(default)]
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop of IPv6 blackholes (needed with `ipv6-unicast`).
    #[serde(default)]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Communities added to every route.
    #[serde(default)]
    pub communities: Vec<Community>,
    /// Communities added to blackhole routes (besides 65535:666).
    #[serde(default)]
    pub blackhole_communities: Vec<Community>,
    /// Add NO_EXPORT to blackholes (RFC 7999 §3.2).
    #[serde(default = "yes")]
    pub no_export: bool,
    /// LOCAL_PREF on iBGP sessions.
    #[serde(default = "default_local_pref")]
    pub local_pref: u32,
    /// TCP-MD5 (RFC 2385) key, at most 80 octets.
    #[serde(default)]
    pub md5_password: Option<String>,
    /// Wait for the router to connect instead of connecting.
    #[serde(default)]
    pub passive: bool,
    /// Advertise graceful restart (RFC 4724) with this restart time in
    /// seconds, so the router keeps our rules while we restart.
    #[serde(default)]
    pub graceful_restart: Option<u16>,
    /// Add-Path (RFC 7911) for every configured family: `off` (default),
    /// `receive` (several paths per prefix from the router, stored by
    /// path identifier), `send` (our routes carry a path identifier) or
    /// `both`; in force where the router advertises the other side.
    #[serde(default)]
    pub add_path: AddPathMode,
    /// What the router's flow spec implementation takes.
    #[serde(default)]
    pub flowspec: FlowSpecSupport,
}

/// `[bgp.peers.flowspec]`: the router's dialect (a built-in profile, see
/// [`super::dialect`]) and per-feature overrides on top of it. Every
/// override left out keeps the profile's value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSpecSupport {
    /// `generic` (everything, the default), `ocnos`, `junos`, `iosxr`,
    /// `eos`, `sros`, `frr`, `bird` or `gobgp`.
    pub dialect: Profile,
    /// IPv4 Flow Spec (RFC 8955) taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<bool>,
    /// IPv6 Flow Spec (RFC 8956) taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// The components taken (replaces the profile's list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<ComponentKind>>,
    /// `all`, `eq-and-ranges` or `eq` (RFC 8955 §4.2.1.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operators: Option<Operators>,
    /// Components matched on a single `==` value only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_value: Option<Vec<ComponentKind>>,
    /// IPv6 prefix offsets (RFC 8956 §3.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_offsets: Option<bool>,
    /// The flow label component (RFC 8956 §3.7); wins over `components`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_label: Option<bool>,
    /// The actions taken (replaces the profile's list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ActionKind>>,
    /// Redirect encodings taken: `as2`, `ipv4`, `as4` (RFC 8955 §7.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Vec<RedirectEncoding>>,
    /// The most components in one rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_components: Option<usize>,
    /// The most rules (both families) the router takes from us.
    pub max_rules: usize,
}

impl Default for FlowSpecSupport {
    fn default() -> Self {
        Self {
            dialect: Profile::Generic,
            ipv4: None,
            ipv6: None,
            components: None,
            operators: None,
            single_value: None,
            ipv6_offsets: None,
            flow_label: None,
            actions: None,
            redirect: None,
            max_components: None,
            max_rules: 1000,
        }
    }
}

impl FlowSpecSupport {
    /// The profile with the overrides applied.
    pub fn dialect(&self) -> Dialect {
        let mut d = Dialect::profile(self.dialect);
        if let Some(v) = self.ipv4 {
            d.ipv4 = v;
        }
        if let Some(v) = self.ipv6 {
            d.ipv6 = v;
        }
        if let Some(v) = &self.components {
            d.components = v.clone();
        }
        if let Some(v) = self.operators {
            d.operators = v;
        }
        if let Some(v) = &self.single_value {
            d.single_value = v.clone();
        }
        if let Some(v) = self.ipv6_offsets {
            d.ipv6_offsets = v;
        }
        if let Some(v) = self.flow_label {
            d.set_flow_label(v);
        }
        if let Some(v) = &self.actions {
            d.actions = v.clone();
        }
        if let Some(v) = &self.redirect {
            d.redirect = v.clone();
        }
        if let Some(v) = self.max_components {
            d.max_components = Some(v);
        }
        d
    }
}

fn default_port() -> u16 {
    179
}
fn default_hold_time() -> u16 {
    90
}
fn default_connect_retry() -> u64 {
    5
}
fn default_connect_retry_max() -> u64 {
    120
}
fn default_probation() -> u64 {
    5
}

fn default_families() -> Vec<Family> {
    vec![
        Family::Ipv4FlowSpec,
        Family::Ipv4Unicast,
        Family::Ipv6Unicast,
    ]
}
fn yes() -> bool {
    true
}
fn default_local_pref() -> u32 {
    100
}

impl BgpConfig {
    /// Parses a TOML document holding the `[bgp]` table's contents.
    pub fn from_toml(text: &str) -> Result<Self, BgpConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| invalid("bgp", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), BgpConfigError> {
        if self.router_id.is_unspecified() {
            return Err(invalid("bgp.router_id", "must not be 0.0.0.0"));
        }
        check_asn("bgp.local_asn", self.local_asn)?;
        if self.announce_within.is_empty() {
            return Err(invalid(
                "bgp.announce_within",
                "list the operator's own networks; rules outside them are refused",
            ));
        }
        if self.shutdown_message.len() > 255 {
            return Err(invalid(
                "bgp.shutdown_message",
                "at most 255 octets (RFC 9003)",
            ));
        }
        let mut names = HashSet::new();
        for p in &self.peers {
            let key = |k: &str| format!("bgp.peers[{}].{k}", p.name);
            if p.name.is_empty() {
                return Err(invalid("bgp.peers[].name", "must not be empty"));
            }
            if !names.insert(&p.name) {
                return Err(invalid(key("name"), "duplicate peer name"));
            }
            if p.address.is_unspecified() || p.address.is_multicast() {
                return Err(invalid(key("address"), "not a unicast address"));
            }
            if let Some(local) = p.local_address
                && local.is_ipv4() != p.address.is_ipv4()
            {
                return Err(invalid(
                    key("local_address"),
                    "not of the peer address's family",
                ));
            }
            check_asn(&key("peer_asn"), p.peer_asn)?;
            if let Some(asn) = p.local_asn {
                check_asn(&key("local_asn"), asn)?;
            }
            if p.hold_time == 1 || p.hold_time == 2 {
                return Err(invalid(
                    key("hold_time"),
                    "must be 0 or at least 3 (RFC 4271 §4.2)",
                ));
            }
            if p.connect_retry == 0 {
                return Err(invalid(key("connect_retry"), "must be at least 1 second"));
            }
            if p.probation == 0 {
                return Err(invalid(key("probation"), "must be at least 1 second"));
            }
            if p.connect_retry_max < p.connect_retry {
                return Err(invalid(
                    key("connect_retry_max"),
                    "must be at least connect_retry",
                ));
            }
            if p.families.is_empty() {
                return Err(invalid(key("families"), "name at least one family"));
            }
            if p.families.contains(&Family::Ipv4Unicast) {
                match p.next_hop_v4 {
                    None => {
                        return Err(invalid(
                            key("next_hop_v4"),
                            "needed for ipv4-unicast (RTBH)",
                        ));
                    }
                    Some(nh) if rtbh::is_martian(nh.into()) => {
                        return Err(invalid(
                            key("next_hop_v4"),
                            format!("{nh} is a martian next hop"),
                        ));
                    }
                    _ => {}
                }
            }
            if p.families.contains(&Family::Ipv6Unicast) {
                match p.next_hop_v6 {
                    None => {
                        return Err(invalid(
                            key("next_hop_v6"),
                            "needed for ipv6-unicast (RTBH)",
                        ));
                    }
                    Some(nh) if rtbh::is_martian(nh.into()) => {
                        return Err(invalid(
                            key("next_hop_v6"),
                            format!("{nh} is a martian next hop"),
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(pw) = &p.md5_password
                && (pw.is_empty() || pw.len() > 80)
            {
                return Err(invalid(
                    key("md5_password"),
                    "1 to 80 octets (TCP_MD5SIG_MAXKEYLEN)",
                ));
            }
            if p.graceful_restart.is_some_and(|t| t > 4095) {
                return Err(invalid(
                    key("graceful_restart"),
                    "at most 4095 seconds (RFC 4724 §3)",
                ));
            }
            let has_flowspec = p
                .families
                .iter()
                .any(|f| matches!(f, Family::Ipv4FlowSpec | Family::Ipv6FlowSpec));
            if has_flowspec {
                check_dialect(&p.flowspec, &p.families, &key)?;
            }
        }
        Ok(())
    }
}

impl PeerConfig {
    /// Our AS towards this peer.
    pub fn local_asn(&self, global: &BgpConfig) -> u32 {
        self.local_asn.unwrap_or(global.local_asn)
    }
}

/// A dialect that cannot carry our rules, or that contradicts the families.
fn check_dialect(
    fs: &FlowSpecSupport,
    families: &[Family],
    key: &dyn Fn(&str) -> String,
) -> Result<(), BgpConfigError> {
    let d = fs.dialect();
    let name = d.profile;
    if !d.component(ComponentKind::DestinationPrefix) {
        return Err(invalid(
            key("flowspec.components"),
            "must include destination-prefix: every rule we send has one",
        ));
    }
    if d.actions.is_empty() {
        return Err(invalid(key("flowspec.actions"), "name at least one action"));
    }
    if d.action(ActionKind::Redirect) && d.redirect.is_empty() {
        return Err(invalid(
            key("flowspec.redirect"),
            "redirect is an accepted action: name at least one encoding (as2, ipv4, as4)",
        ));
    }
    if fs.max_components == Some(0) {
        return Err(invalid(
            key("flowspec.max_components"),
            "must be at least 1",
        ));
    }
    for (family, ok) in [
        (Family::Ipv4FlowSpec, d.ipv4),
        (Family::Ipv6FlowSpec, d.ipv6),
    ] {
        if families.contains(&family) && !ok {
            return Err(invalid(
                key("families"),
                format!(
                    "{family} is configured, but the {name} dialect has none ({}); \
                     remove it, or override with flowspec.{} = true",
                    d.source,
                    if family == Family::Ipv4FlowSpec {
                        "ipv4"
                    } else {
                        "ipv6"
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn check_asn(key: &str, asn: u32) -> Result<(), BgpConfigError> {
    if asn == 0 || asn == u32::from(super::attribute::AS_TRANS) || asn == u32::MAX {
        return Err(invalid(key, format!("{asn} is a reserved AS number")));
    }
    Ok(())
}
