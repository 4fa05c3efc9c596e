//! Flow Spec rules other systems already have in force (issue 15): a rule
//! we would announce is not sent when a peer already sends us the same
//! NLRI with the same actions from another system (another sensor, a
//! scrubbing centre, an operator by hand), and comes back out when that
//! rule is withdrawn; rules that cover an address are listed for the
//! attack log.
//!
//! "Another system's" excludes our own rules reflected back: a route with
//! our router id as ORIGINATOR_ID (RFC 4456 §8) or our AS in its AS_PATH
//! (RFC 4271 §9.1.2 loop detection). Rules validation found infeasible
//! (RFC 8955 §6, [`Validation::Invalid`]) are not in force anywhere and
//! do not count.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Serialize;

use super::{
    flowspec::{Action, FlowSpec},
    rib_in::{
        AdjRibIn,
        attributes::Attributes,
        flow::{FlowRoute, Validation},
    },
    route::Route,
};

/// A rule another system has in force, as the attack log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForeignRule {
    /// The peer it came from.
    pub peer: String,
    pub rule: String,
    pub actions: Vec<Action>,
    pub validation: Validation,
}

/// Whether `attrs` show the route as ours, reflected back.
fn ours(attrs: &Attributes, router_id: Ipv4Addr, local_asn: u32) -> bool {
    attrs.originator_id == Some(router_id) || attrs.asns().any(|a| a == local_asn)
}

fn in_force(r: &FlowRoute, router_id: Ipv4Addr, local_asn: u32) -> bool {
    !matches!(r.validation, Validation::Invalid { .. }) && !ours(&r.attrs, router_id, local_asn)
}

/// The first rule in `rib` identical to `rule` with `actions` (same NLRI,
/// same actions) from another system.
pub fn same_rule(
    rib: &AdjRibIn,
    rule: &FlowSpec,
    actions: &[Action],
    router_id: Ipv4Addr,
    local_asn: u32,
) -> bool {
    let family = Route::FlowSpec {
        rule: rule.clone(),
        actions: Vec::new(),
    }
    .family();
    rib.flows(family).is_some_and(|t| {
        t.iter()
            .any(|(_, r)| r.same_as(rule, actions) && in_force(r, router_id, local_asn))
    })
}

/// The rules in `rib` from other systems whose destination covers `addr`.
pub fn covering(
    peer: &str,
    rib: &AdjRibIn,
    addr: IpAddr,
    router_id: Ipv4Addr,
    local_asn: u32,
) -> Vec<ForeignRule> {
    let host = IpNet::from(addr);
    let mut out = Vec::new();
    for family in super::Family::ALL {
        let Some(t) = rib.flows(family) else { continue };
        for (_, r) in t.iter() {
            let covers = r
                .rule
                .destination()
                .is_some_and(|d| d.net().contains(&host));
            if covers && in_force(r, router_id, local_asn) {
                out.push(ForeignRule {
                    peer: peer.to_string(),
                    rule: r.rule.to_string(),
                    actions: r.actions.clone(),
                    validation: r.validation.clone(),
                });
            }
        }
    }
    out
}
