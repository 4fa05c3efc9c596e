use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::metrics::MetricType;

async fn request(addr: SocketAddr, raw: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn body(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or("")
}

async fn listen(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router));
    addr
}

#[tokio::test]
async fn serves_the_exposition_and_refuses_the_rest() {
    let metrics = Metrics::new();
    metrics
        .set_gauge("edge_sensor_test", "A test.", &[("a", "b")], 7.0)
        .unwrap();
    metrics
        .describe("edge_sensor_c_total", MetricType::Counter, "C.")
        .unwrap();
    let addr = listen(metrics_router(metrics.clone())).await;
    let close = "Host: x\r\nConnection: close\r\n\r\n";
    let ok = request(addr, format!("GET /metrics HTTP/1.1\r\n{close}")).await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.to_lowercase().contains(CONTENT_TYPE), "{ok}");
    assert_eq!(body(&ok), metrics.render());
    assert!(body(&ok).contains("edge_sensor_test{a=\"b\"} 7\n"), "{ok}");
    let head = request(addr, format!("HEAD /metrics HTTP/1.1\r\n{close}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body(&head), "", "no body for HEAD");
    let post = request(
        addr,
        format!("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n{close}"),
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let missing = request(addr, format!("GET /nope HTTP/1.1\r\n{close}")).await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

/// A stand-in for the daemon's loop: answers every request with the
/// request itself, so the test sees what the API asked.
fn echo_daemon() -> mpsc::Sender<Pending> {
    let (tx, mut rx) = mpsc::channel::<Pending>(8);
    tokio::spawn(async move {
        while let Some((request, answer)) = rx.recv().await {
            let response = match &request {
                Request::Unban { target } if target == "404" => control::Response::Error {
                    message: "no mitigation 404".into(),
                },
                r => control::Response::Ok {
                    body: serde_json::to_value(r).unwrap(),
                },
            };
            let _ = answer.send(response);
        }
    });
    tx
}

#[tokio::test]
async fn reads_are_the_control_sockets_requests_and_writes_need_the_token() {
    let api = Api {
        requests: echo_daemon(),
        token: Some(Arc::new(Token::new("0123456789abcdef-secret"))),
    };
    let addr = listen(api_router(api)).await;
    let close = "Host: x\r\nConnection: close\r\n";
    let get = |path: &str| request(addr, format!("GET {path} HTTP/1.1\r\n{close}\r\n"));

    let rib = get("/api/v1/rib?peer=edge1&family=ipv4-unicast&prefix=192.0.2.0/24&match=more-specific&community=65000:100&limit=5").await;
    assert!(rib.starts_with("HTTP/1.1 200"), "{rib}");
    let asked: serde_json::Value = serde_json::from_str(body(&rib)).unwrap();
    assert_eq!(asked["request"], "rib", "{asked}");
    let q = &asked["query"];
    assert_eq!(q["peer"], "edge1", "{asked}");
    assert_eq!(q["family"], "ipv4-unicast", "{asked}");
    assert_eq!(q["prefix"], "192.0.2.0/24", "{asked}");
    assert_eq!(q["match"], "more-specific", "{asked}");
    assert_eq!(q["community"], "65000:100", "{asked}");
    assert_eq!(q["limit"], 5, "{asked}");
    let bad = get("/api/v1/rib?nonsense=1").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let bgp = get("/api/v1/bgp").await;
    assert_eq!(body(&bgp), r#"{"request":"bgp"}"#);

    let ban = r#"{"ip":"192.0.2.7","flowspec":"proto udp src-port 123","duration_secs":600}"#;
    let post = |auth: &str| {
        request(
            addr,
            format!(
                "POST /api/v1/routes HTTP/1.1\r\n{close}{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{ban}",
                ban.len()
            ),
        )
    };
    let without = post("").await;
    assert!(without.starts_with("HTTP/1.1 401"), "{without}");
    let wrong = post("Authorization: Bearer 0123456789abcdef-secreT\r\n").await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let ok = post("Authorization: Bearer 0123456789abcdef-secret\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let asked: serde_json::Value = serde_json::from_str(body(&ok)).unwrap();
    assert_eq!(asked["request"], "ban", "{asked}");
    assert_eq!(asked["ip"], "192.0.2.7", "{asked}");
    assert_eq!(asked["flowspec"], "proto udp src-port 123", "{asked}");
    assert_eq!(asked["duration_secs"], 600, "{asked}");

    let del = |target: &str| {
        request(
            addr,
            format!(
                "DELETE /api/v1/routes/{target} HTTP/1.1\r\n{close}Authorization: Bearer 0123456789abcdef-secret\r\n\r\n"
            ),
        )
    };
    let gone = del("192.0.2.7").await;
    assert!(gone.starts_with("HTTP/1.1 200"), "{gone}");
    let refused = del("404").await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(body(&refused).contains("no mitigation 404"), "{refused}");
}

#[tokio::test]
async fn without_a_token_file_writes_are_refused() {
    let api = Api {
        requests: echo_daemon(),
        token: None,
    };
    let addr = listen(api_router(api)).await;
    let r = request(
        addr,
        "DELETE /api/v1/routes/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(body(&r).contains("api_token_file"), "{r}");
}

#[test]
fn the_token_file_must_be_roots_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "0123456789abcdef-secret\n").unwrap();
    let mode =
        |m: u32| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o644);
    assert!(matches!(
        Token::from_file(&path),
        Err(TokenError::Readable { .. })
    ));
    mode(0o600);
    // Root owns what root writes; the tests run as root (they load XDP).
    let owner = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    match Token::from_file(&path) {
        Ok(t) => {
            assert_eq!(owner, 0);
            assert!(t.matches("0123456789abcdef-secret"));
            assert!(!t.matches("0123456789abcdef-secre"));
        }
        Err(TokenError::Owner { uid, .. }) => assert_eq!(uid, owner),
        Err(e) => panic!("{e}"),
    }
    std::fs::write(&path, "short\n").unwrap();
    mode(0o600);
    let short = Token::from_file(&path);
    if owner == 0 {
        assert!(
            matches!(short, Err(TokenError::Short { .. })),
            "{:?}",
            short.err()
        );
    } else {
        assert!(matches!(short, Err(TokenError::Owner { .. })));
    }
}
