//! Real-time emission: datagrams sent on UDP sockets at their simulated
//! times (optionally sped up), one socket per router so that each router is
//! its own exporter (IPFIX identifies an exporter by address and port).

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use crate::{Datagram, Format, Model, Player};

/// Where datagrams go.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub sflow: SocketAddr,
    pub ipfix: SocketAddr,
    /// Local address to bind each router's socket to (port 0: any).
    pub bind: SocketAddr,
    /// Simulated seconds per real second (1: real time).
    pub speed: f64,
}

/// What a play sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub datagrams: u64,
    pub bytes: u64,
    pub samples: u64,
    /// The most a datagram left after its due time.
    pub max_lateness: Duration,
    pub elapsed: Duration,
}

/// Errors of real-time emission.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("bind {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("send to {0}: {1}")]
    Send(SocketAddr, #[source] std::io::Error),
    #[error("speed must be positive and finite")]
    Speed,
}

/// Plays `player` to the end in (scaled) real time; `on_sent` sees each
/// datagram after it left, with the model (to name origins). Returns what
/// was sent.
pub fn play(
    player: &mut Player,
    target: &Target,
    mut on_sent: impl FnMut(&Model, &Datagram),
) -> Result<Sent, SendError> {
    if !(target.speed > 0.0 && target.speed.is_finite()) {
        return Err(SendError::Speed);
    }
    let routers = player.model().scenario().routers.len();
    let sockets = (0..routers)
        .map(|_| UdpSocket::bind(target.bind).map_err(|e| SendError::Bind(target.bind, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let mut sent = Sent::default();
    // Bounded: the player ends with its scenario.
    while let Some(batch) = player.next_tick() {
        for d in batch {
            let due = start + Duration::from_secs_f64(d.time_ns as f64 / 1e9 / target.speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else {
                sent.max_lateness = sent.max_lateness.max(now - due);
            }
            let to = match d.format {
                Format::Sflow => target.sflow,
                Format::Ipfix => target.ipfix,
            };
            sockets[d.router as usize]
                .send_to(&d.payload, to)
                .map_err(|e| SendError::Send(to, e))?;
            sent.datagrams += 1;
            sent.bytes += d.payload.len() as u64;
            sent.samples += d.truth.samples.len() as u64;
            on_sent(player.model(), &d);
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}
