//! The NATS JetStream side: one connection per sensor, the summary stream
//! (`EDGE_SENSOR_SUMMARIES`, subject `edge-sensor.summary.<name>.<part>`,
//! the latest message per subject kept; one part unless a summary is over
//! the server's `max_payload`) and the membership bucket
//! (`edge-sensor-members`, one key per sensor, put every heartbeat, entries
//! older than `member_ttl` dropped by the server; deleted by a sensor that
//! stops cleanly, which makes it no member at once, [`Client::leave`]).
//!
//! Liveness is judged on this sensor's monotonic clock: a member is live
//! while its last heartbeat arrived (through a bucket watch) within
//! `member_ttl`, and its summary counts while the summary's stream
//! sequence changed within `member_ttl`. No clock is compared across
//! machines.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, kv, stream};
use futures_util::{StreamExt, future::join_all};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{ClusterConfig, ClusterStats, Summary, summary::Part};

pub const STREAM: &str = "EDGE_SENSOR_SUMMARIES";
pub const SUBJECT_PREFIX: &str = "edge-sensor.summary";
pub const BUCKET: &str = "edge-sensor-members";
/// A member silent this many `member_ttl`s is no longer asked for its
/// summary (a SIGKILLed sensor is never deleted from the bucket).
const FORGET_AFTER_TTLS: u32 = 60;
/// The replicated mitigation state: one key per victim, the sensor that
/// announces its rule.
pub const CLAIMS_BUCKET: &str = "edge-sensor-mitigations";

/// Which sensor announces the rule for a victim (the claims bucket's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub sensor: String,
    pub victim: IpNet,
    /// Unix seconds (for people; no decision compares clocks).
    pub since_unix: u64,
}

/// A member as this sensor sees it (`edge-sensor cluster`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub name: String,
    pub live: bool,
    /// `None`: no heartbeat seen through the (possibly stalled) watch.
    pub heartbeat_age_ms: Option<u64>,
    /// Since its summary last changed (`None`: none read yet): the lag.
    pub summary_age_ms: Option<u64>,
}

/// A bucket key for `victim`: key-value keys allow `[-/_=.A-Za-z0-9]`, so
/// an IPv6 address's colons become `-`.
pub fn claim_key(victim: &IpNet) -> String {
    format!("{}_{}", victim.addr(), victim.prefix_len()).replace(':', "-")
}

fn not_ready() -> ClusterError {
    ClusterError("the claims bucket is not bound yet".into())
}

type Claims = Arc<Mutex<BTreeMap<String, Claim>>>;

/// Why a cluster step failed (the sensor then runs local-only).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

fn err(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError(format!("{what}: {e}"))
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(|e| err(what, e)),
        Err(_) => Err(ClusterError(format!("{what}: no answer in {limit:?}"))),
    }
}

/// Last heartbeat per member, and the members that left (a delete of
/// their key) and have not heartbeat since.
#[derive(Debug, Default)]
struct Heard {
    beats: BTreeMap<String, Instant>,
    left: std::collections::BTreeSet<String>,
}

type Members = Arc<Mutex<Heard>>;

/// Room left in a message for NATS's and JetStream's headers.
const PAYLOAD_SLACK: usize = 1024;

/// A sensor's connection to the cluster.
pub struct Client {
    cfg: ClusterConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: Option<stream::Stream>,
    kv: Option<kv::Store>,
    members: Members,
    watch: Option<tokio::task::JoinHandle<()>>,
    claims_kv: Option<kv::Store>,
    /// By bucket key.
    claims: Claims,
    claims_watch: Option<tokio::task::JoinHandle<()>>,
    /// Per member: the stream sequence of its latest summary and when it
    /// was seen to change (`None`: not since it was first read).
    seen: BTreeMap<String, (u64, Option<Instant>)>,
    /// Per member, its last summary whose parts were all of one poll
    /// (used when a read meets a summary half written).
    whole: BTreeMap<String, Summary>,
    last_heartbeat: Option<Instant>,
    /// Per operation bound.
    limit: Duration,
}

impl Client {
    /// Connects (retrying in the background if no server answers yet:
    /// the first steps then fail and the sensor runs local-only).
    pub async fn connect(cfg: &ClusterConfig, limit: Duration) -> Result<Self, ClusterError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("edge-sensor {}", cfg.name))
            .retry_on_initial_connect()
            .connection_timeout(limit.max(Duration::from_millis(200)));
        if let Some(p) = &cfg.credentials_file {
            opts = opts
                .credentials_file(p)
                .await
                .map_err(|e| err("cluster.credentials_file", e))?;
        }
        if let Some(p) = &cfg.tls_ca_file {
            opts = opts.add_root_certificates(p.clone()).require_tls(true);
        }
        if let (Some(c), Some(k)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
            opts = opts
                .add_client_certificate(c.clone(), k.clone())
                .require_tls(true);
        }
        let addrs: Vec<async_nats::ServerAddr> = cfg
            .servers
            .iter()
            .map(|s| s.parse().map_err(|e| err("cluster.servers", e)))
            .collect::<Result<_, _>>()?;
        let client = opts
            .connect(addrs.as_slice())
            .await
            .map_err(|e| err("connect", e))?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            cfg: cfg.clone(),
            client,
            js,
            stream: None,
            kv: None,
            members: Members::default(),
            watch: None,
            claims_kv: None,
            claims: Claims::default(),
            claims_watch: None,
            seen: BTreeMap::new(),
            whole: BTreeMap::new(),
            last_heartbeat: None,
            limit,
        })
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    fn subject(name: &str, part: u8) -> String {
        format!("{SUBJECT_PREFIX}.{name}.{part}")
    }

    /// Creates (or binds to) the stream and the bucket, and starts the
    /// membership watch, once.
    async fn ensure(&mut self) -> Result<(), ClusterError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(ClusterError("not connected to any NATS server".into()));
        }
        if self.stream.is_none() {
            let s = bounded(
                "summary stream",
                self.limit,
                self.js.get_or_create_stream(stream::Config {
                    name: STREAM.into(),
                    subjects: vec![format!("{SUBJECT_PREFIX}.*.*")],
                    max_messages_per_subject: 1,
                    max_age: self.cfg.member_ttl * 4,
                    storage: stream::StorageType::Memory,
                    num_replicas: self.cfg.replicas,
                    ..Default::default()
                }),
            )
            .await?;
            self.stream = Some(s);
        }
        if self.kv.is_none() {
            let kv = self.bucket(BUCKET, self.cfg.member_ttl).await?;
            self.kv = Some(kv);
        }
        if self.claims_kv.is_none() {
            // No age limit: a claim lives as long as its rule.
            let kv = self.bucket(CLAIMS_BUCKET, Duration::ZERO).await?;
            self.claims_kv = Some(kv);
        }
        if self.claims_watch.as_ref().is_none_or(|w| w.is_finished()) {
            let kv = self.claims_kv.clone().expect("bucket");
            let claims = self.claims.clone();
            self.claims_watch = Some(tokio::spawn(watch_claims(kv, claims)));
        }
        if self.watch.as_ref().is_none_or(|w| w.is_finished()) {
            let kv = self.kv.clone().expect("bucket");
            let members = self.members.clone();
            self.watch = Some(tokio::spawn(watch_members(kv, members)));
        }
        Ok(())
    }

    /// A key-value bucket (`max_age` zero: entries never expire), its
    /// stream made here as a key-value bucket is laid out (`KV_<bucket>`,
    /// `$KV.<bucket>.>`): async-nats 0.52's `create_key_value` cannot read
    /// nats-server 2.9's answer.
    async fn bucket(&self, name: &str, max_age: Duration) -> Result<kv::Store, ClusterError> {
        bounded(
            name,
            self.limit,
            self.js.get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                max_age,
                storage: stream::StorageType::Memory,
                num_replicas: self.cfg.replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            }),
        )
        .await?;
        bounded(name, self.limit, self.js.get_key_value(name)).await
    }

    /// Records that this sensor announces the rule for `victim` (replacing
    /// whoever held it: the owner takes over).
    pub async fn claim(&self, victim: IpNet, since_unix: u64) -> Result<(), ClusterError> {
        let kv = self.claims_kv.as_ref().ok_or_else(not_ready)?;
        let claim = Claim {
            sensor: self.cfg.name.clone(),
            victim,
            since_unix,
        };
        let value = serde_json::to_vec(&claim).map_err(|e| err("claim", e))?;
        bounded(
            "claim",
            self.limit,
            kv.put(claim_key(&victim), value.into()),
        )
        .await?;
        Ok(())
    }

    /// Removes the claim on `victim` (its rule was withdrawn, or its
    /// holder is gone and nobody mitigates it).
    pub async fn release(&self, victim: IpNet) -> Result<(), ClusterError> {
        let kv = self.claims_kv.as_ref().ok_or_else(not_ready)?;
        bounded("release", self.limit, kv.delete(claim_key(&victim))).await
    }

    /// Who announces which victim's rule, as the bucket watch last saw it.
    pub fn claims(&self) -> BTreeMap<IpNet, Claim> {
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims.values().map(|c| (c.victim, c.clone())).collect()
    }

    /// Every member heard of, with the age of its last heartbeat and of
    /// its last new summary, on this sensor's clock.
    pub fn member_views(&self) -> Vec<MemberView> {
        let now = Instant::now();
        let ttl = self.cfg.member_ttl;
        let beats = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .beats
            .clone();
        self.known_members(now)
            .into_iter()
            .map(|name| {
                let beat = beats.get(&name).map(|t| now.duration_since(*t));
                MemberView {
                    live: beat.is_some_and(|b| b <= ttl)
                        || (self.summary_moving(&name, now) && !self.has_left(&name)),
                    heartbeat_age_ms: beat.map(|b| b.as_millis() as u64),
                    summary_age_ms: self
                        .seen
                        .get(&name)
                        .and_then(|(_, t)| *t)
                        .map(|t| now.duration_since(t).as_millis() as u64),
                    name,
                }
            })
            .collect()
    }

    /// Whether the connection to a server is up.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// One poll: heartbeat if due, publish `summary`, and return the
    /// latest summary of every live member (this one included), by name.
    pub async fn step(
        &mut self,
        summary: &Summary,
        stats: &mut ClusterStats,
    ) -> Result<Vec<(String, Summary)>, ClusterError> {
        let result = self.step_once(summary, stats).await;
        if result.is_err() {
            // The server may have come back without them (memory storage
            // of a restarted single node): made or bound again next time.
            self.stream = None;
            self.kv = None;
            self.claims_kv = None;
        }
        result
    }

    async fn step_once(
        &mut self,
        summary: &Summary,
        stats: &mut ClusterStats,
    ) -> Result<Vec<(String, Summary)>, ClusterError> {
        self.ensure().await?;
        let now = Instant::now();
        let kv = self.kv.clone().expect("bucket");
        if self
            .last_heartbeat
            .is_none_or(|t| now.duration_since(t) >= self.cfg.heartbeat)
        {
            bounded(
                "heartbeat",
                self.limit,
                kv.put(&self.cfg.name, summary.seq.to_le_bytes().to_vec().into()),
            )
            .await?;
            self.last_heartbeat = Some(now);
        }
        // Cut to the server's message size; the parts go last first, so a
        // reader that sees part 0 of a poll finds its other parts there.
        let max = self.client.server_info().max_payload.max(64 * 1024);
        let encoded = summary.encode_parts(max - PAYLOAD_SLACK);
        if encoded.left_out > 0 {
            stats.summary_entries_left_out += encoded.left_out as u64;
            tracing::warn!(
                left_out = encoded.left_out,
                "cluster: summary over {} parts; its lightest entries left out",
                super::summary::MAX_PARTS
            );
        }
        for (i, part) in encoded.parts.iter().enumerate().rev() {
            let len = part.len() as u64;
            let ack = bounded(
                "publish",
                self.limit,
                self.js
                    .publish(Self::subject(&self.cfg.name, i as u8), part.clone().into()),
            )
            .await?;
            bounded(
                "publish ack",
                self.limit,
                std::future::IntoFuture::into_future(ack),
            )
            .await?;
            stats.summary_parts_published += 1;
            stats.summary_bytes_published += len;
        }
        let stream = self.stream.clone().expect("stream");
        let mut out = Vec::new();
        // Every member's part 0 at once: a step costs one round trip, not
        // one per member.
        let names: Vec<String> = self
            .known_members(now)
            .into_iter()
            .filter(|n| !self.has_left(n))
            .collect();
        let firsts = join_all(names.iter().map(|n| self.read_part(&stream, n, 0))).await;
        for (name, first) in names.into_iter().zip(firsts) {
            let Some(m) = first? else {
                // Aged out (an outage longer than the stream keeps
                // summaries): still asked for until long silent.
                if !self.heard_within(&name, now, self.cfg.member_ttl * FORGET_AFTER_TTLS) {
                    self.seen.remove(&name);
                    self.whole.remove(&name);
                }
                continue;
            };
            let entry = self.seen.entry(name.clone()).or_insert((m.sequence, None));
            if entry.0 != m.sequence {
                *entry = (m.sequence, Some(now));
            }
            let moving = entry
                .1
                .is_some_and(|t| now.duration_since(t) <= self.cfg.member_ttl);
            // A first read counts for a member that heartbeats; after that
            // only a summary that moves (heartbeats alone: a stuck loop).
            if !(moving || (entry.1.is_none() && self.heartbeat_fresh(&name, now))) {
                continue;
            }
            let first = match Part::decode(&m.payload) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(member = %name, "cluster: {e}");
                    continue;
                }
            };
            let rest = join_all((1..first.count).map(|i| self.read_part(&stream, &name, i))).await;
            let mut parts = vec![first];
            for (i, part) in (1u8..).zip(rest) {
                match part?.map(|m| Part::decode(&m.payload)) {
                    Some(Ok(p)) => parts.push(p),
                    Some(Err(e)) => tracing::warn!(member = %name, part = i, "cluster: {e}"),
                    None => break,
                }
            }
            match Summary::join(parts) {
                Ok(s) => {
                    self.whole.insert(name.clone(), s.clone());
                    out.push((name, s));
                }
                // Read while its next poll was being written: the last
                // whole one stands in (a destination absent from the sum
                // would restart its counters).
                Err(e) => match self.whole.get(&name) {
                    Some(s) => out.push((name, s.clone())),
                    None => tracing::debug!(member = %name, "cluster: {e}"),
                },
            }
        }
        Ok(out)
    }

    /// The last message of `name`'s summary part `part`, `None` if the
    /// stream has none.
    async fn read_part(
        &self,
        stream: &stream::Stream,
        name: &str,
        part: u8,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, ClusterError> {
        let subject = Self::subject(name, part);
        let read = stream.get_last_raw_message_by_subject(&subject);
        match tokio::time::timeout(self.limit, read).await {
            Err(_) => Err(ClusterError(format!(
                "read summary: no answer in {:?}",
                self.limit
            ))),
            Ok(Ok(m)) => Ok(Some(m)),
            Ok(Err(e)) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Ok(Err(e)) => Err(err("read summary", e)),
        }
    }

    /// The live members, by name (this sensor included once it has sent a
    /// heartbeat): a heartbeat arrived within `member_ttl`, or a summary
    /// that moved within it. Either suffices, so a member watch stalled by
    /// a NATS node's loss (its consumer lived there) does not make the
    /// others look dead while their summaries keep coming.
    pub fn live_members(&self) -> Vec<String> {
        let now = Instant::now();
        self.known_members(now)
            .into_iter()
            .filter(|n| {
                self.heartbeat_fresh(n, now) || (self.summary_moving(n, now) && !self.has_left(n))
            })
            .collect()
    }

    /// Whether `name` left (deleted its membership) and has not heartbeat
    /// since: no member, whatever its last summary says.
    fn has_left(&self, name: &str) -> bool {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.left.contains(name)
    }

    fn heartbeat_fresh(&self, name: &str, now: Instant) -> bool {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members
            .beats
            .get(name)
            .is_some_and(|t| now.duration_since(*t) <= self.cfg.member_ttl)
    }

    fn summary_moving(&self, name: &str, now: Instant) -> bool {
        self.seen
            .get(name)
            .and_then(|(_, t)| *t)
            .is_some_and(|t| now.duration_since(t) <= self.cfg.member_ttl)
    }

    /// Whether `name` heartbeat or moved its summary within `span`.
    fn heard_within(&self, name: &str, now: Instant, span: Duration) -> bool {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let beat = members
            .beats
            .get(name)
            .is_some_and(|t| now.duration_since(*t) <= span);
        beat || self
            .seen
            .get(name)
            .and_then(|(_, t)| *t)
            .is_some_and(|t| now.duration_since(t) <= span)
    }

    /// Members whose summaries are worth reading: every one heard of
    /// (heartbeat or moving summary) within `FORGET_AFTER_TTLS` x
    /// `member_ttl`, and every one whose summary was read. Not only the
    /// live: after an outage longer than the stream keeps summaries, and
    /// with the member watch stalled, a member's new summaries are the
    /// first sign of it.
    fn known_members(&self, now: Instant) -> Vec<String> {
        let span = self.cfg.member_ttl * FORGET_AFTER_TTLS;
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: std::collections::BTreeSet<String> = members
            .beats
            .iter()
            .filter(|(_, t)| now.duration_since(**t) <= span)
            .map(|(n, _)| n.clone())
            .collect();
        names.extend(self.seen.keys().cloned());
        names.into_iter().collect()
    }

    /// Leaves the cluster at once (a clean shutdown), instead of after
    /// `member_ttl`: the membership key is deleted, which makes this
    /// sensor no member for every other at once. Then, make before break,
    /// waits up to `wait` until every victim in `hand_over` is claimed by
    /// another sensor (its heir has announced the rule), so the caller
    /// withdraws this sensor's rules only once another copy is there.
    /// Returns the victims not taken over in time.
    pub async fn leave(mut self, hand_over: Vec<IpNet>, wait: Duration) -> Vec<IpNet> {
        if let Some(kv) = self.kv.take() {
            let _ = bounded("leave", self.limit, kv.delete(&self.cfg.name)).await;
        }
        let _ = bounded("leave flush", self.limit, self.client.flush()).await;
        let until = Instant::now() + wait;
        loop {
            let claims = self.claims();
            let left: Vec<IpNet> = hand_over
                .iter()
                .filter(|v| claims.get(v).is_none_or(|c| c.sensor == self.cfg.name))
                .copied()
                .collect();
            if left.is_empty() || Instant::now() >= until {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for w in [self.watch.take(), self.claims_watch.take()]
            .into_iter()
            .flatten()
        {
            w.abort();
        }
    }
}

async fn watch_members(kv: kv::Store, members: Members) {
    loop {
        match kv.watch_all().await {
            Ok(mut w) => {
                while let Some(Ok(e)) = w.next().await {
                    let mut m = members.lock().unwrap_or_else(|e| e.into_inner());
                    match e.operation {
                        kv::Operation::Put => {
                            m.left.remove(&e.key);
                            m.beats.insert(e.key, Instant::now());
                        }
                        kv::Operation::Delete | kv::Operation::Purge => {
                            m.beats.remove(&e.key);
                            m.left.insert(e.key);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("cluster: member watch: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn watch_claims(kv: kv::Store, claims: Claims) {
    loop {
        // With history: a (re)started sensor needs the claims made before
        // (`watch_all` gives new updates only).
        match kv.watch_with_history(">").await {
            Ok(mut w) => {
                // The watch starts with every current value: what an
                // earlier watch left may be gone.
                claims.lock().unwrap_or_else(|e| e.into_inner()).clear();
                while let Some(Ok(e)) = w.next().await {
                    let mut c = claims.lock().unwrap_or_else(|e| e.into_inner());
                    match e.operation {
                        kv::Operation::Put => match serde_json::from_slice::<Claim>(&e.value) {
                            Ok(claim) => {
                                c.insert(e.key, claim);
                            }
                            Err(err) => tracing::warn!(key = %e.key, "cluster: claim: {err}"),
                        },
                        kv::Operation::Delete | kv::Operation::Purge => {
                            c.remove(&e.key);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("cluster: claims watch: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
