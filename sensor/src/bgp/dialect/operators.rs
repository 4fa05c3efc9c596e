//! Numeric operators (RFC 8955 §4.2.1.1): whether a component's terms fit
//! the operators a router takes, written as `==` values where they do not.

use super::{MAX_EXPANDED_VALUES, Operators};
use crate::bgp::flowspec::{NumericMatch, NumericOp};

pub(super) enum Fit {
    AsIs,
    Expanded(Vec<NumericMatch>),
    No,
}

/// The terms as ORed groups of ANDed terms (RFC 8955 §4.2.1.1: AND binds
/// tighter), each read as an inclusive range if it is one.
pub(super) fn ranges(terms: &[NumericMatch]) -> Option<Vec<(u64, u64)>> {
    let mut groups: Vec<Vec<NumericMatch>> = Vec::new();
    for (i, t) in terms.iter().enumerate() {
        if i == 0 || !t.and {
            groups.push(vec![*t]);
        } else if let Some(g) = groups.last_mut() {
            g.push(*t);
        }
    }
    groups
        .iter()
        .map(|g| {
            let (mut lo, mut hi) = (0u64, u64::MAX);
            for t in g {
                match t.op {
                    NumericOp::Eq => {
                        lo = lo.max(t.value);
                        hi = hi.min(t.value);
                    }
                    NumericOp::Ge => lo = lo.max(t.value),
                    NumericOp::Gt => lo = lo.max(t.value.checked_add(1)?),
                    NumericOp::Le => hi = hi.min(t.value),
                    NumericOp::Lt => hi = hi.min(t.value.checked_sub(1)?),
                    _ => return None,
                }
            }
            // A single open-ended bound (e.g. `>= 1000`) is a range too.
            (lo <= hi).then_some((lo, hi))
        })
        .collect()
}

pub(super) fn fit_operators(terms: &[NumericMatch], ops: Operators) -> Fit {
    let all_eq = terms
        .iter()
        .enumerate()
        .all(|(i, t)| t.op == NumericOp::Eq && (i == 0 || !t.and));
    match ops {
        Operators::All => Fit::AsIs,
        _ if all_eq => Fit::AsIs,
        Operators::EqAndRanges => match ranges(terms) {
            Some(_)
                if terms.iter().all(|t| {
                    matches!(
                        t.op,
                        NumericOp::Eq
                            | NumericOp::Ge
                            | NumericOp::Gt
                            | NumericOp::Le
                            | NumericOp::Lt
                    )
                }) =>
            {
                Fit::AsIs
            }
            _ => Fit::No,
        },
        Operators::Eq => {
            let Some(rs) = ranges(terms) else {
                return Fit::No;
            };
            let count: u64 = rs
                .iter()
                .map(|(lo, hi)| hi.saturating_sub(*lo).saturating_add(1))
                .fold(0, u64::saturating_add);
            if count > MAX_EXPANDED_VALUES {
                return Fit::No;
            }
            let mut values: Vec<u64> = rs.iter().flat_map(|&(lo, hi)| lo..=hi).collect();
            values.sort_unstable();
            values.dedup();
            Fit::Expanded(values.into_iter().map(NumericMatch::eq).collect())
        }
    }
}
