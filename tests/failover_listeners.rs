//! The readiness endpoint and the HAProxy agent port through real loopback connections.

use std::net::SocketAddr;
use std::time::Duration;

use qoscntrlr::core::Health;
use qoscntrlr::failover::{
    bind, serve_agent_with, serve_readiness_with, HealthBoard, ListenerLimits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn run_local<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

const LIMITS: ListenerLimits = ListenerLimits {
    io_timeout: Duration::from_millis(300),
    max_connections: 4,
};

/// Everything the server sends until it closes, bounded so a broken server fails the test.
async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("server closed the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

async fn request(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    read_all(&mut stream).await
}

async fn get(addr: SocketAddr) -> String {
    request(addr, b"GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n").await
}

#[test]
fn readiness_endpoint_answers_with_the_health_view() {
    run_local(async {
        let board = HealthBoard::new(Health::Ready);
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_readiness_with(listener, board.subscribe(), LIMITS));

        let r = get(addr).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nready\n"), "{r}");

        board.set(Health::Down {
            reason: "probe timeout".into(),
        });
        let r = get(addr).await;
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nprobe timeout\n"), "{r}");

        board.set(Health::Drain);
        let r = get(addr).await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("\r\n\r\ndraining\n"), "{r}");

        // Garbage gets a 400, not a crash; the server still answers afterwards.
        let r = request(addr, b"\x16\x03\x01\x00\xff garbage\n\n").await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        board.set(Health::Ready);
        assert!(get(addr).await.starts_with("HTTP/1.1 200 OK"));

        // A client that never sends a request is answered 408 and dropped.
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        let r = read_all(&mut silent).await;
        assert!(r.starts_with("HTTP/1.1 408 "), "{r}");

        // An endless head is cut off.
        let mut big = TcpStream::connect(addr).await.expect("connect");
        let _ = big.write_all(&vec![b'A'; 20_000]).await;
        let r = read_all(&mut big).await;
        assert!(
            r.starts_with("HTTP/1.1 431 ") || r.starts_with("HTTP/1.1 400 "),
            "{r}"
        );

        // When the board goes, the listener stops.
        drop(board);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("listener stopped")
            .expect("listener task");
    });
}

#[test]
fn slow_clients_cannot_starve_the_readiness_endpoint() {
    run_local(async {
        let board = HealthBoard::new(Health::Ready);
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = ListenerLimits {
            io_timeout: Duration::from_millis(200),
            max_connections: 2,
        };
        tokio::spawn(serve_readiness_with(listener, board.subscribe(), limits));

        // More silent clients than the bound: each is timed out, and a real client
        // queued behind them is still answered.
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(TcpStream::connect(addr).await.expect("connect"));
        }
        let answer = tokio::spawn(get(addr));
        for mut s in silent {
            let r = read_all(&mut s).await;
            assert!(r.starts_with("HTTP/1.1 408 "), "{r}");
        }
        let r = answer.await.expect("client task");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    });
}

#[test]
fn agent_port_writes_one_line_and_closes() {
    run_local(async {
        let board = HealthBoard::new(Health::Ready);
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_agent_with(listener, board.subscribe(), LIMITS));

        let line = |addr| async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            read_all(&mut s).await
        };
        assert_eq!(line(addr).await, "up ready\n");
        board.set(Health::Down {
            reason: "probe timeout".into(),
        });
        assert_eq!(line(addr).await, "down #probe timeout\n");
        board.set(Health::Drain);
        assert_eq!(line(addr).await, "drain\n");

        // HAProxy may send an agent-send string first; the answer is the same.
        board.set(Health::Ready);
        let r = request(addr, b"hello\n").await;
        assert_eq!(r, "up ready\n");

        drop(board);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("listener stopped")
            .expect("listener task");
    });
}
