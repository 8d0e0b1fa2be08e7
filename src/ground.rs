//! What every room stands on: names and formats that the settings, the core,
//! authentication and the API all check the same way, and the request id they
//! all carry. Nothing here imports another room of keyward.

use std::net::IpAddr;

use ipnet::IpNet;

/// The id of a request, as echoed in `x-request-id`, in `/v1` errors'
/// `traceId` and in the audit log.
#[derive(Debug, Clone)]
pub struct RequestId(pub std::sync::Arc<str>);

/// The longest key prefix.
pub const KEY_PREFIX_MAX: usize = 32;

/// Whether `prefix` can start a secret: 1 to 32 ASCII letters or digits.
pub fn valid_key_prefix(prefix: &str) -> bool {
    (1..=KEY_PREFIX_MAX).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A tenant's name: 2 to 63 of a-z, 0-9 and `-`, not starting with `-`.
pub fn valid_tenant_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes[1..]
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A CIDR or a bare address, made canonical: `10.1.2.3/8` is `10.0.0.0/8`,
/// an address its /32 or /128.
pub fn parse_address_range(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .ok()
}

/// Comma-separated CIDRs or bare addresses (`trusted_proxies`), each
/// [`parse_address_range`]d.
pub fn parse_address_ranges(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            parse_address_range(entry)
                .ok_or_else(|| format!("trusted_proxies: {entry:?} is not a CIDR or an IP address"))
        })
        .collect()
}
