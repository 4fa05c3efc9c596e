//! Configuration text for the daemons the end-to-end tests and
//! `cargo xtask lab` start: the sensor's `[bgp]` and `[cluster]` sections,
//! a gobgpd route reflector for several sensors, a nats-server (JetStream,
//! alone or one node of a cluster). One builder each, so the tests and the
//! lab do not keep copies that drift apart. Only std: xtask depends on it
//! without building the sensor.

use std::fmt::Write;

/// One `[[bgp.peers]]` of the sensor: hold time 9 s, reconnect after 1 s
/// (at most 2 s), the given families and next hops, then `extra` lines at
/// the end of the peer's table.
#[derive(Clone, Debug)]
pub struct BgpPeer {
    pub name: String,
    pub address: String,
    pub local_address: String,
    pub peer_asn: u32,
    pub families: Vec<String>,
    pub next_hop_v4: Option<String>,
    pub next_hop_v6: Option<String>,
    pub extra: String,
}

impl BgpPeer {
    /// A peer for `ipv4-flowspec` and `ipv4-unicast`, blackholes to
    /// 192.0.2.254.
    pub fn new(name: &str, address: &str, local_address: &str, peer_asn: u32) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            local_address: local_address.into(),
            peer_asn,
            families: vec!["ipv4-flowspec".into(), "ipv4-unicast".into()],
            next_hop_v4: Some("192.0.2.254".into()),
            next_hop_v6: None,
            extra: String::new(),
        }
    }

    pub fn families(mut self, families: &[&str]) -> Self {
        self.families = families.iter().map(|f| f.to_string()).collect();
        self
    }

    pub fn next_hop_v6(mut self, next_hop: &str) -> Self {
        self.next_hop_v6 = Some(next_hop.into());
        self
    }

    /// Lines at the end of the peer's table (sub-tables such as
    /// `[bgp.peers.flowspec]` included).
    pub fn extra(mut self, extra: &str) -> Self {
        self.extra = extra.into();
        self
    }
}

/// The sensor's BGP speaker: `router_id`, `local_asn`, the prefixes its
/// rules may cover, its peers.
#[derive(Clone, Debug)]
pub struct Bgp {
    pub router_id: String,
    pub local_asn: u32,
    pub announce_within: Vec<String>,
    pub shutdown_message: Option<String>,
    pub peers: Vec<BgpPeer>,
}

impl Bgp {
    pub fn new(router_id: &str, local_asn: u32, announce_within: &[&str]) -> Self {
        Self {
            router_id: router_id.into(),
            local_asn,
            announce_within: announce_within.iter().map(|p| p.to_string()).collect(),
            shutdown_message: None,
            peers: Vec::new(),
        }
    }

    pub fn shutdown_message(mut self, message: &str) -> Self {
        self.shutdown_message = Some(message.into());
        self
    }

    pub fn peer(mut self, peer: BgpPeer) -> Self {
        self.peers.push(peer);
        self
    }

    /// The daemon's `[bgp]` section.
    pub fn section(&self) -> String {
        self.toml(Some("bgp"))
    }

    /// The speaker's own table (what `BgpConfig::from_toml` reads): the
    /// same keys without the `[bgp]` header, peers as `[[peers]]`.
    pub fn table(&self) -> String {
        self.toml(None)
    }

    fn toml(&self, table: Option<&str>) -> String {
        let mut s = String::new();
        let peers = match table {
            Some(t) => {
                let _ = writeln!(s, "[{t}]");
                format!("{t}.peers")
            }
            None => "peers".to_string(),
        };
        let _ = writeln!(s, "router_id = {}", quote(&self.router_id));
        let _ = writeln!(s, "local_asn = {}", self.local_asn);
        let _ = writeln!(s, "announce_within = {}", list(&self.announce_within));
        if let Some(m) = &self.shutdown_message {
            let _ = writeln!(s, "shutdown_message = {}", quote(m));
        }
        for p in &self.peers {
            let _ = writeln!(s, "[[{peers}]]");
            let _ = writeln!(s, "name = {}", quote(&p.name));
            let _ = writeln!(s, "address = {}", quote(&p.address));
            let _ = writeln!(s, "local_address = {}", quote(&p.local_address));
            let _ = writeln!(s, "peer_asn = {}", p.peer_asn);
            s.push_str("hold_time = 9\nconnect_retry = 1\nconnect_retry_max = 2\n");
            let _ = writeln!(s, "families = {}", list(&p.families));
            if let Some(nh) = &p.next_hop_v4 {
                let _ = writeln!(s, "next_hop_v4 = {}", quote(nh));
            }
            if let Some(nh) = &p.next_hop_v6 {
                let _ = writeln!(s, "next_hop_v6 = {}", quote(nh));
            }
            if !p.extra.is_empty() {
                s.push_str(&p.extra);
                if !p.extra.ends_with('\n') {
                    s.push('\n');
                }
            }
        }
        s
    }
}

/// The sensor's `[cluster]` section: `name` among the `servers`
/// (`nats://host:port`), the key-value buckets' `replicas`, and the
/// membership's timing (`heartbeat`, `member_ttl`, as durations such as
/// "200ms").
pub fn cluster_section(
    servers: &[String],
    name: &str,
    replicas: usize,
    heartbeat: &str,
    member_ttl: &str,
) -> String {
    format!(
        "[cluster]\nservers = {}\nname = {}\nreplicas = {replicas}\nheartbeat = {}\nmember_ttl = {}\n",
        list(servers),
        quote(name),
        quote(heartbeat),
        quote(member_ttl)
    )
}

/// gobgpd as the route reflector of several sensors: AS `asn` (the
/// sensors' own: iBGP), each sensor at `clients` a passive
/// route-reflector client (cluster id `router_id`), and optionally an
/// `upstream` eBGP neighbor (address, AS) it reflects the rules to: the
/// router. Families: IPv4 unicast and Flow Spec. `listen`: the addresses
/// it listens on (empty: all).
pub fn route_reflector_config(
    asn: u32,
    router_id: &str,
    listen: &[&str],
    clients: &[&str],
    upstream: Option<(&str, u32)>,
) -> String {
    route_reflector_config_to(asn, router_id, listen, clients, upstream.as_slice())
}

/// [`route_reflector_config`] with any number of `upstreams` (address,
/// AS): one eBGP neighbor each, every one of them sent the rules (the
/// lab's routers, one BGP speaker each).
pub fn route_reflector_config_to(
    asn: u32,
    router_id: &str,
    listen: &[&str],
    clients: &[&str],
    upstreams: &[(&str, u32)],
) -> String {
    let families = "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-flowspec\"\n";
    let mut s = format!(
        "[global.config]\n  as = {asn}\n  router-id = {}\n  port = 179\n",
        quote(router_id)
    );
    if !listen.is_empty() {
        let listen: Vec<String> = listen.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(s, "  local-address-list = {}", list(&listen));
    }
    for client in clients {
        let _ = write!(
            s,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = {}\n    peer-as = {asn}\n  \
             [neighbors.timers.config]\n    connect-retry = 1\n  [neighbors.transport.config]\n    passive-mode = true\n  \
             [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = {}\n{families}",
            quote(client),
            quote(router_id)
        );
    }
    for &(address, peer_as) in upstreams {
        let _ = write!(
            s,
            "\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = {}\n    peer-as = {peer_as}\n  \
             [neighbors.timers.config]\n    connect-retry = 1\n{families}",
            quote(address)
        );
    }
    s
}

/// A nats-server with JetStream (its store in `store_dir`), `name`,
/// listening for clients on `listen` (`host:port`); with `cluster`, one
/// node of a JetStream cluster.
pub fn nats_config(
    name: &str,
    listen: &str,
    store_dir: &str,
    cluster: Option<&NatsCluster>,
) -> String {
    let mut s = format!(
        "server_name: {name}\nlisten: {}\njetstream {{\n  store_dir: {}\n}}\n",
        quote(listen),
        quote(store_dir)
    );
    if let Some(c) = cluster {
        let routes: Vec<String> = c
            .routes
            .iter()
            .map(|r| format!("nats-route://{r}"))
            .collect();
        let _ = write!(
            s,
            "cluster {{\n  name: {}\n  listen: {}\n  routes: {}\n}}\n",
            c.name,
            quote(&c.listen),
            list(&routes)
        );
    }
    s
}

/// A node's part in a NATS cluster: the cluster's `name`, where this node
/// listens for routes (`host:port`), and every node's route address
/// (`host:port`, its own included: nats-server skips it).
#[derive(Clone, Debug)]
pub struct NatsCluster {
    pub name: String,
    pub listen: String,
    pub routes: Vec<String>,
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bgp_section_and_the_speakers_table_differ_only_in_the_header() {
        let bgp = Bgp::new("127.0.0.2", 65001, &["192.0.2.0/24"]).peer(
            BgpPeer::new("gobgp", "127.0.0.1", "127.0.0.2", 65000)
                .extra("[bgp.peers.flowspec]\ndialect = \"gobgp\""),
        );
        let section = bgp.section();
        assert!(
            section.starts_with("[bgp]\nrouter_id = \"127.0.0.2\"\n"),
            "{section}"
        );
        assert!(
            section.contains("[[bgp.peers]]\nname = \"gobgp\"\n"),
            "{section}"
        );
        assert!(section.contains(
            "families = [\"ipv4-flowspec\", \"ipv4-unicast\"]\nnext_hop_v4 = \"192.0.2.254\"\n"
        ));
        assert!(section.ends_with("dialect = \"gobgp\"\n"), "{section}");
        let table = bgp.table();
        assert!(
            !table.contains("[bgp]") && table.contains("[[peers]]\n"),
            "{table}"
        );
    }

    #[test]
    fn a_nats_node_lists_every_route() {
        let c = NatsCluster {
            name: "es".into(),
            listen: "10.0.0.1:6222".into(),
            routes: vec!["10.0.0.1:6222".into(), "10.0.0.2:6222".into()],
        };
        let conf = nats_config("n0", "10.0.0.1:4222", "/tmp/x", Some(&c));
        assert!(
            conf.contains(
                "routes: [\"nats-route://10.0.0.1:6222\", \"nats-route://10.0.0.2:6222\"]"
            ),
            "{conf}"
        );
        assert!(!nats_config("n0", "127.0.0.1:4222", "/tmp/x", None).contains("cluster"));
    }

    #[test]
    fn the_route_reflector_has_its_clients_and_the_upstream() {
        let conf = route_reflector_config(
            65001,
            "10.0.0.1",
            &[],
            &["10.0.0.2", "10.0.0.6"],
            Some(("10.1.0.2", 65000)),
        );
        assert_eq!(
            conf.matches("route-reflector-client = true").count(),
            2,
            "{conf}"
        );
        assert!(
            conf.contains("neighbor-address = \"10.1.0.2\"\n    peer-as = 65000"),
            "{conf}"
        );
        assert!(!conf.contains("local-address-list"));
    }

    #[test]
    fn the_route_reflector_sends_to_every_upstream() {
        let conf = route_reflector_config_to(
            65001,
            "10.0.0.1",
            &["10.0.0.1"],
            &["10.0.0.21"],
            &[("10.0.0.11", 65000), ("10.0.0.12", 65000)],
        );
        for router in ["10.0.0.11", "10.0.0.12"] {
            assert!(
                conf.contains(&format!(
                    "neighbor-address = \"{router}\"\n    peer-as = 65000"
                )),
                "{conf}"
            );
        }
        assert_eq!(conf.matches("[[neighbors]]").count(), 3, "{conf}");
    }
}
