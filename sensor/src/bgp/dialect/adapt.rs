//! Adaptation: the best rule a dialect accepts for a rule, with the
//! [`Change`]s made, or a [`Refusal`]. The destination prefix is never
//! dropped; dropping another component is left to the [`Widening`] judge.

use std::fmt;

use serde::Serialize;

use super::{
    Dialect, Refusal,
    action::{ActionFit, adapt_action, describe},
    operators::{Fit, fit_operators, ranges},
};
use crate::bgp::flowspec::{
    Action, ActionKind, Component, ComponentKind, FlowPrefix, FlowSpec, NumericMatch, NumericOp,
};

/// One change [`adapt`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "change")]
pub enum Change {
    /// A component the router does not take, dropped (the rule is wider;
    /// the [`Widening`] judge allowed it).
    DroppedComponent { component: ComponentKind },
    /// A range written as `==` values.
    ExpandedRange { component: ComponentKind },
    /// An action sent in another, equivalent encoding.
    RewroteAction { from: String, to: String },
    /// An action left out that changes nothing (e.g. marking discarded
    /// traffic).
    DroppedAction { action: String },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DroppedComponent { component } => write!(f, "dropped {component}"),
            Self::ExpandedRange { component } => write!(f, "{component} range as values"),
            Self::RewroteAction { from, to } => write!(f, "{from} sent as {to}"),
            Self::DroppedAction { action } => write!(f, "left out {action}"),
        }
    }
}

/// The rule a router is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapted {
    pub rule: FlowSpec,
    pub actions: Vec<Action>,
    /// What differs from the rule asked for (empty: sent as it is).
    pub changes: Vec<Change>,
}

/// Decides whether a rule may be widened by dropping a component: the
/// wider rule still covers the whole attack (it matches a superset) and
/// stays inside the victim (the destination is never dropped), but it hits
/// more normal traffic; only the policy can say whether that is acceptable.
pub trait Widening {
    /// `Ok` to send `wider` (which lacks `dropped`), else why not.
    fn allow(&self, wider: &FlowSpec, dropped: ComponentKind) -> Result<(), String>;
}

/// Never widens.
pub struct NoWidening;

impl Widening for NoWidening {
    fn allow(&self, _: &FlowSpec, _: ComponentKind) -> Result<(), String> {
        Err("the normal traffic the wider rule would hit cannot be estimated".into())
    }
}

/// The best rule `dialect` accepts for `rule` with `actions`: the same rule
/// when it takes everything; else with ranges written as values, actions in
/// an accepted encoding, and (if `widening` allows) components it cannot
/// match dropped; else a [`Refusal`].
pub fn adapt(
    rule: &FlowSpec,
    actions: &[Action],
    dialect: &Dialect,
    widening: &dyn Widening,
) -> Result<Adapted, Refusal> {
    let profile = dialect.profile;
    let family = rule.family();
    if !dialect.family(family) {
        return Err(Refusal::Family { profile, family });
    }
    let mut changes = Vec::new();
    let mut kept: Vec<Component> = Vec::new();
    let mut dropped = Vec::new();
    for c in rule.components() {
        let kind = c.kind();
        // The destination is the victim: never dropped, never changed.
        if let Component::DestinationPrefix(p) = c {
            if !dialect.component(kind) {
                return Err(Refusal::Destination {
                    profile,
                    component: kind,
                });
            }
            if let Some(offset) = nonzero_offset(p)
                && !dialect.ipv6_offsets
            {
                return Err(Refusal::Offset {
                    profile,
                    component: kind,
                    offset,
                });
            }
            kept.push(c.clone());
            continue;
        }
        if !dialect.component(kind) {
            dropped.push(kind);
            continue;
        }
        if let Component::SourcePrefix(p) = c
            && nonzero_offset(p).is_some()
            && !dialect.ipv6_offsets
        {
            // An offset match cannot be rewritten without one; without the
            // source match the rule is wider.
            dropped.push(kind);
            continue;
        }
        if !matchable(c, dialect) {
            dropped.push(kind);
            continue;
        }
        match numeric_terms(c) {
            Some(terms) => match fit_operators(terms, dialect.operators) {
                Fit::AsIs => kept.push(c.clone()),
                Fit::Expanded(values) => {
                    kept.push(with_terms(c, values));
                    changes.push(Change::ExpandedRange { component: kind });
                }
                Fit::No => {
                    return Err(Refusal::Operators {
                        profile,
                        component: kind,
                    });
                }
            },
            None => kept.push(c.clone()),
        }
    }
    // Drop one component at a time, asking the judge about each wider rule.
    for kind in &dropped {
        let wider = FlowSpec::new(family, kept.clone()).map_err(|e| Refusal::Invalid {
            message: e.to_string(),
        })?;
        if let Err(why) = widening.allow(&wider, *kind) {
            let offset = rule.components().iter().find_map(|c| match c {
                Component::SourcePrefix(p) if c.kind() == *kind => nonzero_offset(p),
                _ => None,
            });
            return Err(match offset {
                Some(offset) if dialect.component(*kind) => Refusal::Offset {
                    profile,
                    component: *kind,
                    offset,
                },
                _ => Refusal::Widening {
                    profile,
                    component: *kind,
                    why,
                },
            });
        }
        changes.push(Change::DroppedComponent { component: *kind });
    }
    if let Some(max) = dialect.max_components
        && kept.len() > max
    {
        return Err(Refusal::TooManyComponents { profile, max });
    }
    let adapted_rule = FlowSpec::new(family, kept.clone()).map_err(|e| Refusal::Invalid {
        message: e.to_string(),
    })?;
    let packet_length = exact_packet_length(&kept);
    let discards = actions.iter().any(|a| a.kind() == ActionKind::Discard);
    let mut out = Vec::new();
    for a in actions {
        match adapt_action(a, dialect, packet_length, discards)? {
            ActionFit::AsIs => out.push(*a),
            ActionFit::Rewritten(b) => {
                changes.push(Change::RewroteAction {
                    from: a.to_string(),
                    to: describe(&b),
                });
                out.push(b);
            }
            ActionFit::Dropped => changes.push(Change::DroppedAction {
                action: a.to_string(),
            }),
        }
    }
    Action::check_set(&out).map_err(|e| Refusal::Invalid {
        message: e.to_string(),
    })?;
    Ok(Adapted {
        rule: adapted_rule,
        actions: out,
        changes,
    })
}

fn nonzero_offset(p: &FlowPrefix) -> Option<u8> {
    match *p {
        FlowPrefix::V6 { offset, .. } if offset != 0 => Some(offset),
        _ => None,
    }
}

/// Whether the router can match `c` at all, per its single-value and
/// fragment-bit limits.
fn matchable(c: &Component, d: &Dialect) -> bool {
    if let Component::Fragment(terms) = c {
        return terms.iter().all(|t| t.bits & !d.fragment_bits == 0);
    }
    if !d.single_value.contains(&c.kind()) {
        return true;
    }
    let Some(terms) = numeric_terms(c) else {
        return true;
    };
    let eqs: Option<Vec<u64>> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| (t.op == NumericOp::Eq && (i == 0 || !t.and)).then_some(t.value))
        .collect();
    match eqs.as_deref() {
        Some([_]) => true,
        // "TCP or UDP" (SR OS), in either order.
        Some([a, b]) if c.kind() == ComponentKind::IpProtocol => {
            matches!((a, b), (6, 17) | (17, 6))
        }
        _ => false,
    }
}

fn numeric_terms(c: &Component) -> Option<&[NumericMatch]> {
    match c {
        Component::IpProtocol(t)
        | Component::Port(t)
        | Component::DestinationPort(t)
        | Component::SourcePort(t)
        | Component::IcmpType(t)
        | Component::IcmpCode(t)
        | Component::PacketLength(t)
        | Component::Dscp(t)
        | Component::FlowLabel(t) => Some(t),
        _ => None,
    }
}

fn with_terms(c: &Component, terms: Vec<NumericMatch>) -> Component {
    match c {
        Component::IpProtocol(_) => Component::IpProtocol(terms),
        Component::Port(_) => Component::Port(terms),
        Component::DestinationPort(_) => Component::DestinationPort(terms),
        Component::SourcePort(_) => Component::SourcePort(terms),
        Component::IcmpType(_) => Component::IcmpType(terms),
        Component::IcmpCode(_) => Component::IcmpCode(terms),
        Component::PacketLength(_) => Component::PacketLength(terms),
        Component::Dscp(_) => Component::Dscp(terms),
        Component::FlowLabel(_) => Component::FlowLabel(terms),
        other => other.clone(),
    }
}

/// The packet length when the rule matches exactly one (then a byte rate
/// and a packet rate are the same limit).
fn exact_packet_length(components: &[Component]) -> Option<u64> {
    components.iter().find_map(|c| match c {
        Component::PacketLength(t) => match ranges(t)?.as_slice() {
            [(lo, hi)] if lo == hi && *lo > 0 => Some(*lo),
            _ => None,
        },
        _ => None,
    })
}
