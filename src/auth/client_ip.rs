//! Which address a request comes from, for throttling and the audit log.
//!
//! The TCP peer, unless the peer is a trusted proxy (`trusted_proxies`): then
//! the right-most `X-Forwarded-For` entry that is not itself trusted (every
//! `X-Forwarded-For` header, comma-separated, in order), else `X-Real-IP`, else
//! the peer. Entries right of the first untrusted one were appended by our own
//! proxies; everything left of it is what the client sent and proves nothing.
//! A request from any other peer cannot choose its address with a header.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The client address of a request that came from `peer` with `headers`.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.map(|ip| ip.to_canonical())?;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    forwarded_client(headers, trusted)
        .or_else(|| {
            headers
                .get("x-real-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_entry)
        })
        .or(Some(peer))
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The right-most untrusted `X-Forwarded-For` entry. An entry that is not an
/// address ends the search: no proxy of ours writes one, so what lies left of
/// it was not appended by our proxies.
fn forwarded_client(headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let values = headers.get_all("x-forwarded-for").collect::<Vec<_>>();
    for value in values.into_iter().rev() {
        let value = value.to_str().ok()?;
        for entry in value.rsplit(',') {
            let ip = parse_entry(entry)?;
            if !is_trusted(ip, trusted) {
                return Some(ip);
            }
        }
    }
    None
}

/// `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, and either with a port.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
}

pub use crate::ground::parse_address_ranges as parse_trusted;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted() -> Vec<IpNet> {
        parse_trusted("127.0.0.0/8, 10.0.0.0/8, fd00::/8").unwrap()
    }

    fn client(peer: &str, pairs: &[(&str, &str)]) -> IpAddr {
        client_address(Some(ip(peer)), &headers(pairs), &trusted()).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let sent = [("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")];
        assert_eq!(client("203.0.113.9", &sent), ip("203.0.113.9"));
        assert_eq!(client("2001:db8::9", &sent), ip("2001:db8::9"));
        let none = client_address(Some(ip("10.0.0.1")), &headers(&sent), &[]);
        assert_eq!(none, Some(ip("10.0.0.1")), "no trusted proxies configured");
        assert_eq!(client_address(None, &headers(&sent), &trusted()), None);
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_wins() {
        let xff = |v| [("x-forwarded-for", v)];
        assert_eq!(client("127.0.0.1", &xff("203.0.113.7")), ip("203.0.113.7"));
        // The client wrote the left-most entries itself: they prove nothing.
        assert_eq!(
            client("127.0.0.1", &xff("6.6.6.6, 10.9.9.9, 203.0.113.7")),
            ip("203.0.113.7")
        );
        // A chain of trusted proxies is skipped from the right.
        assert_eq!(
            client(
                "10.0.0.2",
                &xff("6.6.6.6, 203.0.113.7, 10.0.0.1, 127.0.0.1")
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("fd00::1", &xff("2001:db8::7, fd00::2")),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("::ffff:127.0.0.1", &xff("[2001:db8::7]:443")),
            ip("2001:db8::7"),
            "an IPv4-mapped peer is its IPv4 address"
        );
        assert_eq!(
            client("127.0.0.1", &xff("203.0.113.7:5000")),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("127.0.0.1", &xff("::ffff:203.0.113.7")),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn every_forwarded_for_header_counts_in_order() {
        let pairs = [
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "10.0.0.1"),
        ];
        assert_eq!(client("127.0.0.1", &pairs), ip("203.0.113.7"));
        let pairs = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
        ];
        assert_eq!(client("127.0.0.1", &pairs), ip("198.51.100.1"));
    }

    #[test]
    fn without_an_untrusted_entry_x_real_ip_then_the_peer() {
        let all_trusted = ("x-forwarded-for", "10.0.0.1, 127.0.0.2");
        assert_eq!(
            client("127.0.0.1", &[all_trusted, ("x-real-ip", "198.51.100.4")]),
            ip("198.51.100.4")
        );
        assert_eq!(client("127.0.0.1", &[all_trusted]), ip("127.0.0.1"));
        assert_eq!(
            client("127.0.0.1", &[("x-real-ip", " 2001:db8::4 ")]),
            ip("2001:db8::4")
        );
        assert_eq!(client("127.0.0.1", &[]), ip("127.0.0.1"));
        assert_eq!(
            client("127.0.0.1", &[("x-real-ip", "not an address")]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn garbage_ends_the_search() {
        let xff = |v| ("x-forwarded-for", v);
        // Left of the client's real address, garbage is never reached.
        assert_eq!(
            client("127.0.0.1", &[xff("unknown, <script>, 203.0.113.7")]),
            ip("203.0.113.7")
        );
        // Inside the trusted part it stops the walk: nothing left of it is believed.
        assert_eq!(
            client("127.0.0.1", &[xff("6.6.6.6, unknown, 10.0.0.1")]),
            ip("127.0.0.1")
        );
        assert_eq!(
            client(
                "127.0.0.1",
                &[xff("6.6.6.6, , 10.0.0.1"), ("x-real-ip", "198.51.100.4")]
            ),
            ip("198.51.100.4")
        );
        assert_eq!(client("127.0.0.1", &[xff("")]), ip("127.0.0.1"));
        assert_eq!(client("127.0.0.1", &[xff("1.2.3.4.5")]), ip("127.0.0.1"));
    }

    #[test]
    fn trusted_lists_parse_cidrs_and_addresses() {
        let nets = parse_trusted(" 127.0.0.0/8,10.1.2.3 , ::1, fd00::/8,,").unwrap();
        assert_eq!(nets.len(), 4);
        assert!(is_trusted(ip("127.9.9.9"), &nets));
        assert!(is_trusted(ip("10.1.2.3"), &nets));
        assert!(!is_trusted(ip("10.1.2.4"), &nets));
        assert!(is_trusted(ip("::1"), &nets));
        assert!(is_trusted(ip("fd12::1"), &nets));
        assert_eq!(parse_trusted("").unwrap(), vec![]);
        // Host bits set are accepted and mean the network.
        assert!(is_trusted(
            ip("192.168.1.200"),
            &parse_trusted("192.168.1.7/24").unwrap()
        ));
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0/8",
            "::1/129",
            "1.2.3.4/8/8",
        ] {
            assert!(parse_trusted(bad).is_err(), "{bad} accepted");
        }
    }
}
