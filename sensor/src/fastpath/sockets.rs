//! The daemon's UDP sockets on the telemetry ports, both paths: behind XDP
//! they receive only what the kernel passed on (v9/IPFIX templates, data it
//! has no plan for); as the userspace collector they receive everything,
//! in `recvmmsg` batches on a thread per port.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use edge_sensor_common::TelemetryKind;
use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle};

use crate::recv::BatchReceiver;

/// Datagrams as received: payload, source, the port they arrived on.
pub type Batch = Vec<(Vec<u8>, SocketAddr, u16)>;

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 64;
/// How long a read waits before its thread looks whether the daemon left.
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Receive buffer asked for per collector socket: a flood's telemetry
/// comes in bursts the daemon's poll must not turn into drops.
const RCVBUF: usize = 8 << 20;

/// A collector socket that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "userspace collector: UDP port {port} ({kind}): {source} (is another collector bound to it?)"
)]
pub struct BindError {
    port: u16,
    kind: &'static str,
    source: std::io::Error,
}

/// Behind XDP: the v9/IPFIX ports (the kernel keeps sFlow to itself), one
/// datagram per batch. A port that cannot be bound is a warning: the
/// kernel still counts what it has plans for.
pub async fn passed_on(ports: &[(u16, TelemetryKind)]) -> (PassedOn, mpsc::Receiver<Batch>) {
    let (tx, rx) = mpsc::channel(4096);
    let mut sockets = PassedOn {
        tx,
        tasks: HashMap::new(),
    };
    sockets.set_ports(ports).await;
    (sockets, rx)
}

/// The sockets behind XDP, one task each, by port: a reload adds and
/// drops them (dropping a task closes its socket).
pub struct PassedOn {
    tx: mpsc::Sender<Batch>,
    tasks: HashMap<u16, JoinHandle<()>>,
}

impl PassedOn {
    /// Listens on exactly the v9/IPFIX ports of `ports`.
    pub async fn set_ports(&mut self, ports: &[(u16, TelemetryKind)]) {
        let wanted: HashMap<u16, TelemetryKind> = ports
            .iter()
            .copied()
            .filter(|(_, kind)| *kind != TelemetryKind::Sflow)
            .collect();
        self.tasks.retain(|port, task| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
                tracing::info!(port, "no longer listening for passed-on datagrams");
            }
            keep
        });
        for (&port, &kind) in &wanted {
            if self.tasks.contains_key(&port) {
                continue;
            }
            if let Some(task) = listen(port, kind, self.tx.clone()).await {
                self.tasks.insert(port, task);
            }
        }
    }
}

impl Drop for PassedOn {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

async fn listen(port: u16, kind: TelemetryKind, tx: mpsc::Sender<Batch>) -> Option<JoinHandle<()>> {
    // Dual-stack where IPv6 exists; IPv4 alone where it is disabled.
    let bound = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).await {
        Ok(socket) => Ok(socket),
        Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).await,
    };
    match bound {
        Ok(socket) => {
            let task = tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((n, src)) = socket.recv_from(&mut buf).await {
                    if tx.send(vec![(buf[..n].to_vec(), src, port)]).await.is_err() {
                        break;
                    }
                }
            });
            tracing::info!(
                port,
                "listening for {} datagrams the kernel passes on",
                kind.name()
            );
            Some(task)
        }
        Err(e) => {
            tracing::warn!(
                port,
                "cannot bind UDP port {port} ({e}): NetFlow v9/IPFIX templates arriving there \
                 cannot be learnt, so their data will not be counted"
            );
            None
        }
    }
}

/// The userspace collector: every port, `recvmmsg` on a thread each. A
/// port that cannot be bound is an error: nothing else would count it.
pub fn collector(ports: &[(u16, TelemetryKind)]) -> Result<mpsc::Receiver<Batch>, BindError> {
    let (tx, rx) = mpsc::channel(1024);
    for &(port, kind) in ports {
        let err = |source| BindError {
            port,
            kind: kind.name(),
            source,
        };
        let socket = std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
            .or_else(|_| std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
            .map_err(err)?;
        let mut receiver = BatchReceiver::new(socket, BATCH, READ_TIMEOUT).map_err(err)?;
        if let Err(e) = receiver.set_receive_buffer(RCVBUF) {
            tracing::warn!(port, "receive buffer of {RCVBUF} bytes refused: {e}");
        }
        let tx = tx.clone();
        std::thread::Builder::new()
            .name(format!("collect-{port}"))
            .spawn(move || {
                while !tx.is_closed() {
                    let mut batch = Batch::new();
                    let got = receiver.recv_batch(|d| {
                        batch.push((d.payload.to_vec(), d.src, port));
                    });
                    if let Err(e) = got {
                        tracing::error!(port, "userspace collector: receiving: {e}");
                        std::thread::sleep(READ_TIMEOUT);
                    }
                    // Waiting here when the daemon is behind leaves the rest
                    // in the socket's buffer: the kernel drops (and counts)
                    // what does not fit, as it would for any collector.
                    if !batch.is_empty() && tx.blocking_send(batch).is_err() {
                        break;
                    }
                }
            })
            .map_err(err)?;
        tracing::info!(
            port,
            "userspace collector: {} datagrams (recvmmsg)",
            kind.name()
        );
    }
    Ok(rx)
}
