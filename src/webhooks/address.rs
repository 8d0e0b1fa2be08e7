//! Which addresses an endpoint may point at: public ones only, unless the
//! operator allows private ones (`webhook_allow_private`). The URL's text is
//! checked when an endpoint is saved; the address a name resolves to is
//! checked again where the connection is made (`client`), since a public
//! name can resolve to 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is on a public network: not loopback, private, link-local,
/// shared (CGNAT), documentation, benchmarking, multicast, reserved or
/// unspecified, for IPv4 and IPv6 (and IPv4 inside IPv6).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, shared address space (carrier-grade NAT)
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15, benchmarking
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local
        || (s[0] & 0xfe00) == 0xfc00
        // fe80::/10 link-local, fec0::/10 site-local (deprecated)
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // 2001:db8::/32 documentation
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64: an IPv4 address inside), ::/96 (IPv4-compatible)
        || (s[0] == 0x64 && s[1] == 0xff9b)
        || s[..6] == [0, 0, 0, 0, 0, 0]
        // 100::/64 discard
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]))
}

/// Why a URL cannot be an endpoint's, if it cannot: `None` when it can.
/// `allow_private` lifts the address rule only.
pub fn url_problem(url: &str, allow_private: bool) -> Option<&'static str> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Some("url must be an absolute http:// or https:// URL.");
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some("url must be an absolute http:// or https:// URL.");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("url must not hold a user name or password.");
    }
    if url.len() > 2048 {
        return Some("url must be at most 2048 characters.");
    }
    let private = "url must not point at a loopback, private, link-local or otherwise \
        non-public address.";
    match parsed.host() {
        None => Some("url must be an absolute http:// or https:// URL."),
        Some(_) if allow_private => None,
        Some(url::Host::Ipv4(ip)) => (!is_public_v4(ip)).then_some(private),
        Some(url::Host::Ipv6(ip)) => (!is_public_v6(ip)).then_some(private),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let local = name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name.ends_with(".internal")
                || !name.contains('.');
            local.then_some(private)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_non_public_addresses() {
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
    }

    #[test]
    fn url_rules() {
        assert_eq!(url_problem("https://example.com/hook", false), None);
        assert_eq!(url_problem("http://93.184.216.34:8080/x", false), None);
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "",
            "https://user:pw@example.com/",
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://10.0.0.7/",
            "http://169.254.169.254/latest",
            "http://localhost:8000/",
            "http://api.localhost/",
            "http://intranet/",
            "http://0x7f000001/",
        ] {
            assert!(url_problem(bad, false).is_some(), "{bad}");
        }
        assert_eq!(url_problem("http://127.0.0.1:9000/", true), None);
        assert_eq!(url_problem("http://localhost:9000/", true), None);
        assert!(url_problem("ftp://127.0.0.1/", true).is_some());
    }
}
