//! Throttling of API-key guessing: ten wrong keys from one address, then 429 with
//! `Retry-After` for that address only, counted in /_metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::common::{Server, TestDatabase, metric_sample};
use socket2::{Domain, Socket, Type};

const KEY: &str = "rw-secret-7c31aa";

/// `GET path` with `key` from the source address `from`; returns (status, head and body).
fn get_from(server: &Server, from: &str, path: &str, key: Option<&str>) -> (u16, String) {
    let to: SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("server address");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("source address");
    socket.bind(&local.into()).expect("bind the source address");
    socket.connect(&to.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, response)
}

#[test]
fn ten_wrong_keys_from_one_address_then_429_for_it_alone() {
    let db = TestDatabase::new();
    let server = Server::start_with(&db.url, &["--api-key", KEY], &[]);
    let guesser = "127.0.0.1";
    for i in 0..10 {
        let (status, _) = get_from(&server, guesser, "/k", Some(&format!("guess-{i}")));
        assert_eq!(status, 401, "guess {i}");
    }
    let (status, response) = get_from(&server, guesser, "/k", Some("guess-10"));
    assert_eq!(status, 429, "{response}");
    assert!(
        response.contains("\"code\":\"too_many_wrong_keys\""),
        "{response}"
    );
    let retry_after = response
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<u64>().ok())
        .expect("Retry-After");
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
    // The key is not even checked from that address now: a guess cannot tell right from wrong.
    assert_eq!(get_from(&server, guesser, "/k", Some(KEY)).0, 429);
    // No key presented: nothing guessed, nothing throttled.
    assert_eq!(get_from(&server, guesser, "/k", None).0, 401);

    // Another address is not throttled by the guesser's failures.
    let other = "127.0.0.2";
    assert_eq!(get_from(&server, other, "/k", Some(KEY)).0, 404);
    let (status, metrics) = get_from(&server, other, "/_metrics", Some(KEY));
    assert_eq!(status, 200);
    assert_eq!(
        metric_sample(&metrics, "kv_auth_wrong_keys_total"),
        Some(10.0),
        "{metrics}"
    );
    assert_eq!(
        metric_sample(&metrics, "kv_auth_throttled_total"),
        Some(2.0),
        "{metrics}"
    );
}
