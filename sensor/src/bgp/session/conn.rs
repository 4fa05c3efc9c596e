//! The I/O of one connection: framed BGP messages in (RFC 4271 §4.1) and
//! out with a write timeout, and why a connection ended.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::bgp::message::{Message, MessageError};

/// The longest a write may take before the session is declared dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended.
pub(super) enum End {
    /// The speaker asked us to stop.
    Stopped,
    /// The session failed (the reason is already recorded).
    Down,
}

/// A failure on an open connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the connection")]
    Closed,
    #[error("write timed out")]
    WriteTimeout,
    #[error("received a malformed message: {0}")]
    Protocol(MessageError),
}

/// A connection with its receive buffer. `recv` is cancel-safe: all state
/// lives in `buf`, so it can sit in `select!` beside the timers.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
}

impl Conn {
    pub(super) async fn recv(&mut self) -> Result<Message, ConnError> {
        loop {
            match Message::frame_len(&self.buf) {
                Err(e) => return Err(ConnError::Protocol(e)),
                Ok(Some(len)) => {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Message::decode(&frame).map_err(ConnError::Protocol);
                }
                Ok(None) => {}
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub(super) async fn send(&mut self, msg: &Message) -> Result<(), ConnError> {
        let bytes = msg.encode();
        tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(&bytes))
            .await
            .map_err(|_| ConnError::WriteTimeout)??;
        Ok(())
    }
}
