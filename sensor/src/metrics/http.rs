//! The `/metrics` endpoint: a small HTTP/1.1 server (one request per
//! connection, `Connection: close`), enough for Prometheus and curl.

use std::{io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::Metrics;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Longest request head read; scrapers send a few hundred bytes.
const MAX_REQUEST: usize = 8192;
/// Connections served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 64;
/// A client that sends nothing for this long is dropped.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Metrics) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of descriptors and the like: wait, do not stop serving.
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(CLIENT_TIMEOUT, handle(stream, &metrics)).await {
                Ok(Err(e)) => tracing::debug!(%peer, "metrics: {e}"),
                Err(_) => tracing::debug!(%peer, "metrics: client timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            respond(&mut stream, "200 OK", &metrics.render(), head_only).await
        }
        ("GET" | "HEAD", "/") => {
            let body = "edge-sensor: metrics at /metrics\n";
            respond(&mut stream, "200 OK", body, head_only).await
        }
        (_, "/metrics" | "/") => respond(&mut stream, "405 Method Not Allowed", "", false).await,
        _ => respond(&mut stream, "404 Not Found", "not found\n", false).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricType;

    async fn request(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_exposition_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        metrics
            .set_gauge("edge_sensor_test", "A test.", &[("a", "b")], 7.0)
            .unwrap();
        metrics
            .describe("edge_sensor_c_total", MetricType::Counter, "C.")
            .unwrap();
        let server = tokio::spawn(serve(listener, metrics.clone()));

        let ok = request(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        let body = ok.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body, metrics.render());
        assert!(body.contains("edge_sensor_test{a=\"b\"} 7\n"), "{body}");
        let length: usize = ok
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());

        let head = request(addr, "HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
        let post = request(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let missing = request(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        server.abort();
    }
}
