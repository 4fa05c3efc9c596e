//! The lab's network: three namespaces joined by veths, with the
//! addresses and routes of the diagram in [`super`].

use std::process::Stdio;

use anyhow::Result;

use crate::util;

use super::{CUSTOMERS, Names, ROUTER_ADDR, ROUTER_EDGE_ADDR, in_ns, ip};

pub(super) fn topology(n: &Names) -> Result<()> {
    for ns in n.namespaces().into_iter().take(3) {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    veth_pair((&n.rc, &n.router), (&n.cr, &n.collector))?;
    veth_pair((&n.re, &n.router), (&n.er, &n.edge))?;
    for (ns, dev, addr) in [
        (&n.router, &n.rc, "198.18.200.1/30"),
        (&n.collector, &n.cr, "198.18.200.2/30"),
        (&n.router, &n.re, "198.18.201.1/24"),
        (&n.edge, &n.er, "198.18.201.2/24"),
    ] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    // The router forwards between edge and collector and hosts the
    // customer block (every address of it local: AnyIP); attack sources
    // are random, so no reverse-path filter.
    let sysctl = |ns: &str, key: &str, value: &str| {
        util::run(
            in_ns(ns, "sysctl")
                .args(["-qw", &format!("{key}={value}")])
                .stdout(Stdio::null()),
        )
    };
    sysctl(&n.router, "net.ipv4.ip_forward", "1")?;
    for dev in ["all", "default", n.re.as_str(), n.rc.as_str()] {
        sysctl(&n.router, &format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
    }
    ip(&[
        "-n", &n.router, "route", "add", "local", CUSTOMERS, "dev", "lo",
    ])?;
    ip(&[
        "-n",
        &n.collector,
        "route",
        "add",
        "default",
        "via",
        ROUTER_ADDR,
    ])?;
    ip(&[
        "-n",
        &n.edge,
        "route",
        "add",
        "default",
        "via",
        ROUTER_EDGE_ADDR,
    ])?;
    Ok(())
}

/// A veth pair with one end in each namespace.
pub(super) fn veth_pair((a, a_ns): (&str, &str), (b, b_ns): (&str, &str)) -> Result<()> {
    let args = [
        "link", "add", a, "netns", a_ns, "type", "veth", "peer", "name", b, "netns", b_ns,
    ];
    ip(&args)
}
