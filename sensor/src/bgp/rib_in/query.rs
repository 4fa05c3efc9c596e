//! The lookups of `edge-sensor rib`: by peer, family, prefix (exact,
//! longest match, more specific), community (RFC 1997) or large community
//! (RFC 8092), answered from the Adj-RIBs-In as rows.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    AdjRibIn,
    attributes::{Attributes, LargeCommunity},
    flow::Validation,
    table::Path,
};
use crate::bgp::{attribute::Community, capability::Family, flowspec::Action};

/// The rows an answer holds unless the query says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;

/// How a prefix selects routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchMode {
    /// The longest prefix that covers the query (an address: the route
    /// traffic to it follows).
    #[default]
    Longest,
    /// Exactly the query prefix.
    Exact,
    /// The query prefix and every prefix inside it.
    MoreSpecific,
}

/// What `edge-sensor rib` asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RibQuery {
    pub peer: Option<String>,
    pub family: Option<Family>,
    pub prefix: Option<IpNet>,
    #[serde(rename = "match")]
    pub mode: MatchMode,
    /// `ASN:VALUE` (RFC 1997) or `GLOBAL:LOCAL1:LOCAL2` (RFC 8092).
    pub community: Option<String>,
    /// Flow Spec rules only (`edge-sensor rib flowspec`).
    pub flowspec_only: bool,
    /// At most this many rows (default [`DEFAULT_LIMIT`]; 0: no limit).
    pub limit: Option<usize>,
}

/// A query that cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no BGP peer named `{0}`")]
    NoSuchPeer(String),
    #[error("community `{0}` is neither ASN:VALUE (RFC 1997) nor GLOBAL:LOCAL1:LOCAL2 (RFC 8092)")]
    BadCommunity(String),
}

/// A community to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommunityFilter {
    Standard(Community),
    Large(LargeCommunity),
}

impl CommunityFilter {
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::BadCommunity(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [_, _] => s.parse().map(Self::Standard).map_err(|_| bad()),
            [a, b, c] => {
                let n = |p: &str| p.trim().parse::<u32>().map_err(|_| bad());
                Ok(Self::Large(LargeCommunity([n(a)?, n(b)?, n(c)?])))
            }
            _ => Err(bad()),
        }
    }

    fn matches(&self, a: &Attributes) -> bool {
        match self {
            Self::Standard(c) => a.communities.contains(c),
            Self::Large(c) => a.large_communities.contains(c),
        }
    }
}

/// One unicast path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteRow {
    pub peer: String,
    pub family: Family,
    pub prefix: IpNet,
    pub path_id: u32,
    pub stale: bool,
    /// Unix seconds when received.
    pub since: u64,
    pub attributes: Attributes,
}

/// One received Flow Spec rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRow {
    pub peer: String,
    pub family: Family,
    /// The rule as `edge-sensor` writes it.
    pub rule: String,
    /// Its NLRI, hex (canonical encoding).
    pub nlri: String,
    pub destination: Option<IpNet>,
    pub path_id: u32,
    pub actions: Vec<Action>,
    pub validation: Validation,
    pub stale: bool,
    pub since: u64,
    pub attributes: Attributes,
}

/// The answer: rows in peer, family, prefix order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RibAnswer {
    pub routes: Vec<RouteRow>,
    pub flowspec: Vec<FlowRow>,
    /// More rows matched than the limit let through.
    pub truncated: bool,
}

/// A query with its community parsed.
pub struct Compiled<'a> {
    q: &'a RibQuery,
    community: Option<CommunityFilter>,
    limit: usize,
}

impl<'a> Compiled<'a> {
    pub fn new(q: &'a RibQuery) -> Result<Self, QueryError> {
        Ok(Self {
            q,
            community: q
                .community
                .as_deref()
                .map(CommunityFilter::parse)
                .transpose()?,
            limit: match q.limit {
                None => DEFAULT_LIMIT,
                Some(0) => usize::MAX,
                Some(n) => n,
            },
        })
    }

    fn wants(&self, family: Family) -> bool {
        let flow = matches!(family, Family::Ipv4FlowSpec | Family::Ipv6FlowSpec);
        self.q.family.is_none_or(|f| f == family) && (flow || !self.q.flowspec_only)
    }

    fn full(&self, out: &RibAnswer) -> bool {
        out.routes.len() + out.flowspec.len() >= self.limit
    }

    /// Adds the matching routes of `peer`'s Adj-RIB-In to `out`.
    pub fn run(&self, peer: &str, rib: &AdjRibIn, out: &mut RibAnswer) {
        for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let Some(table) = rib.table(family).filter(|_| self.wants(family)) else {
                continue;
            };
            let same_family = |p: &IpNet| {
                matches!(
                    (p, family),
                    (IpNet::V4(_), Family::Ipv4Unicast) | (IpNet::V6(_), Family::Ipv6Unicast)
                )
            };
            let found: Box<dyn Iterator<Item = (IpNet, u32, &Path)>> = match self.q.prefix {
                Some(p) if !same_family(&p) => continue,
                None => Box::new(table.iter()),
                Some(p) => match self.q.mode {
                    MatchMode::Exact => Box::new(table.exact(p)),
                    MatchMode::Longest => Box::new(table.longest(p).into_iter()),
                    MatchMode::MoreSpecific => Box::new(table.more_specific(p)),
                },
            };
            for (prefix, path_id, path) in found {
                if self.community.is_some_and(|c| !c.matches(&path.attrs)) {
                    continue;
                }
                if self.full(out) {
                    out.truncated = true;
                    return;
                }
                out.routes.push(RouteRow {
                    peer: peer.to_string(),
                    family,
                    prefix,
                    path_id,
                    stale: path.stale,
                    since: path.since,
                    attributes: (*path.attrs).clone(),
                });
            }
        }
        for family in [Family::Ipv4FlowSpec, Family::Ipv6FlowSpec] {
            let Some(table) = rib.flows(family).filter(|_| self.wants(family)) else {
                continue;
            };
            for (path_id, r) in table.iter() {
                let dest = r.rule.destination().map(|d| d.net());
                if let Some(p) = self.q.prefix {
                    let Some(d) = dest else { continue };
                    let hit = match self.q.mode {
                        MatchMode::Exact => d == p,
                        MatchMode::Longest => d.contains(&p),
                        MatchMode::MoreSpecific => p.contains(&d),
                    };
                    if !hit {
                        continue;
                    }
                }
                if self.community.is_some_and(|c| !c.matches(&r.attrs)) {
                    continue;
                }
                if self.full(out) {
                    out.truncated = true;
                    return;
                }
                out.flowspec.push(FlowRow {
                    peer: peer.to_string(),
                    family,
                    rule: r.rule.to_string(),
                    nlri: r
                        .rule
                        .encode_nlri()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                    destination: dest,
                    path_id,
                    actions: r.actions.clone(),
                    validation: r.validation.clone(),
                    stale: r.stale,
                    since: r.since,
                    attributes: (*r.attrs).clone(),
                });
            }
        }
    }
}

/// A prefix or an address (as a host prefix) from the command line.
pub fn parse_prefix(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
