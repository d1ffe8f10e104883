//! Which addresses an endpoint may not be on: every block of the IANA
//! IPv4 and IPv6 Special-Purpose Address Registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>), plus
//! multicast, IPv4-compatible and site-local IPv6, which those registries
//! do not list.
//!
//! Every block is forbidden whole, those the registries mark globally
//! reachable (anycast relays, AS112) too: none is where a merchant's
//! endpoint lives. The two prefixes that a resolver hands out for ordinary
//! hosts, IPv4-mapped `::ffff:0:0/96` and NAT64's well-known
//! `64:ff9b::/96` (DNS64 on an IPv6-only network answers with it for every
//! IPv4-only name), are instead judged by the IPv4 address in their last
//! 32 bits. The other prefixes that embed an IPv4 address (6to4
//! `2002::/16`, Teredo `2001::/32`, IPv4-compatible `::/96`, local-use
//! NAT64 `64:ff9b:1::/48`) are forbidden whole, whatever they embed: no
//! resolver needs them for a public host, and where such a tunnel ends is
//! not payorch's to judge.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// Forbidden IPv4 blocks: the whole special-purpose registry, and multicast.
pub const IPV4_FORBIDDEN: [(Ipv4Net, &str); 26] = [
    (v4(0, 0, 0, 0, 8), "\"this network\" (RFC 791)"),
    (
        v4(0, 0, 0, 0, 32),
        "\"this host on this network\" (RFC 1122)",
    ),
    (v4(10, 0, 0, 0, 8), "private-use (RFC 1918)"),
    (v4(100, 64, 0, 0, 10), "shared address space (RFC 6598)"),
    (v4(127, 0, 0, 0, 8), "loopback (RFC 1122)"),
    (v4(169, 254, 0, 0, 16), "link local (RFC 3927)"),
    (v4(172, 16, 0, 0, 12), "private-use (RFC 1918)"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments (RFC 6890)"),
    (
        v4(192, 0, 0, 0, 29),
        "IPv4 service continuity prefix (RFC 7335)",
    ),
    (v4(192, 0, 0, 8, 32), "IPv4 dummy address (RFC 7600)"),
    (
        v4(192, 0, 0, 9, 32),
        "port control protocol anycast (RFC 7723)",
    ),
    (v4(192, 0, 0, 10, 32), "TURN anycast (RFC 8155)"),
    (v4(192, 0, 0, 170, 32), "NAT64/DNS64 discovery (RFC 8880)"),
    (v4(192, 0, 0, 171, 32), "NAT64/DNS64 discovery (RFC 8880)"),
    (v4(192, 0, 2, 0, 24), "documentation, TEST-NET-1 (RFC 5737)"),
    (v4(192, 31, 196, 0, 24), "AS112-v4 (RFC 7535)"),
    (v4(192, 52, 193, 0, 24), "AMT (RFC 7450)"),
    (
        v4(192, 88, 99, 0, 24),
        "deprecated 6to4 relay anycast (RFC 7526)",
    ),
    (v4(192, 168, 0, 0, 16), "private-use (RFC 1918)"),
    (
        v4(192, 175, 48, 0, 24),
        "direct delegation AS112 service (RFC 7534)",
    ),
    (v4(198, 18, 0, 0, 15), "benchmarking (RFC 2544)"),
    (
        v4(198, 51, 100, 0, 24),
        "documentation, TEST-NET-2 (RFC 5737)",
    ),
    (
        v4(203, 0, 113, 0, 24),
        "documentation, TEST-NET-3 (RFC 5737)",
    ),
    (v4(240, 0, 0, 0, 4), "reserved (RFC 1112)"),
    (v4(255, 255, 255, 255, 32), "limited broadcast (RFC 8190)"),
    // Not in the special-purpose registry: IANA's multicast registry.
    (v4(224, 0, 0, 0, 4), "multicast (RFC 5771)"),
];

/// The special-purpose IPv6 blocks judged by the IPv4 address in their
/// last 32 bits (forbidden when that address is).
pub const IPV6_EMBEDDING_IPV4: [(Ipv6Net, &str); 2] = [
    (
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        "IPv4-mapped (RFC 4291)",
    ),
    (
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        "NAT64 well-known prefix (RFC 6052)",
    ),
];

/// Forbidden IPv6 blocks: the rest of the special-purpose registry, and
/// IPv4-compatible, site-local and multicast addresses.
pub const IPV6_FORBIDDEN: [(Ipv6Net, &str); 26] = [
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback (RFC 4291)"),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified (RFC 4291)"),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 (RFC 8215)",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (RFC 6666)",
    ),
    (
        v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64),
        "dummy IPv6 prefix (RFC 9780)",
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments (RFC 2928)",
    ),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "Teredo (RFC 4380)"),
    (
        v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
        "port control protocol anycast (RFC 7723)",
    ),
    (
        v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
        "TURN anycast (RFC 8155)",
    ),
    (
        v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128),
        "DNS-SD service registration anycast (RFC 9665)",
    ),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        "benchmarking (RFC 5180)",
    ),
    (v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32), "AMT (RFC 7450)"),
    (
        v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
        "AS112-v6 (RFC 7535)",
    ),
    (
        v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),
        "deprecated ORCHID (RFC 4843)",
    ),
    (
        v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        "ORCHIDv2 (RFC 7343)",
    ),
    (
        v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
        "drone remote ID entity tags (RFC 9374)",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (RFC 3849)",
    ),
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4 (RFC 3056)"),
    (
        v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48),
        "direct delegation AS112 service (RFC 7534)",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation (RFC 9637)",
    ),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing SIDs (RFC 9602)",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique-local (RFC 4193)",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local unicast (RFC 4291)",
    ),
    // Not in the special-purpose registry.
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible, deprecated (RFC 4291)",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local, deprecated (RFC 3879)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast (RFC 4291)"),
];

/// Whether `ip` is somewhere a public endpoint cannot be.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => IPV4_FORBIDDEN.iter().any(|(net, _)| net.contains(&v4)),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => is_forbidden(IpAddr::V4(v4)),
            None => IPV6_FORBIDDEN.iter().any(|(net, _)| net.contains(&v6)),
        },
    }
}

/// The IPv4 address carried by an address of [`IPV6_EMBEDDING_IPV4`].
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    IPV6_EMBEDDING_IPV4
        .iter()
        .any(|(net, _)| net.contains(&v6))
        .then(|| Ipv4Addr::from_bits(v6.to_bits() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One address inside each block of the IANA IPv4 and IPv6
    /// Special-Purpose Address Registries (and multicast, IPv4-compatible
    /// and site-local IPv6), typed from the registries, each with the
    /// block it stands for.
    const SPECIAL: &[(&str, &str)] = &[
        ("0.1.2.3", "0.0.0.0/8 this network"),
        ("0.0.0.0", "0.0.0.0/32 this host on this network"),
        ("10.1.2.3", "10.0.0.0/8 private-use"),
        ("100.64.0.1", "100.64.0.0/10 shared address space"),
        ("100.127.255.254", "100.64.0.0/10 shared address space"),
        ("127.0.0.1", "127.0.0.0/8 loopback"),
        ("127.255.0.9", "127.0.0.0/8 loopback"),
        ("169.254.169.254", "169.254.0.0/16 link local"),
        ("172.16.0.1", "172.16.0.0/12 private-use"),
        ("172.31.255.254", "172.16.0.0/12 private-use"),
        ("192.0.0.200", "192.0.0.0/24 IETF protocol assignments"),
        ("192.0.0.5", "192.0.0.0/29 IPv4 service continuity prefix"),
        ("192.0.0.8", "192.0.0.8/32 IPv4 dummy address"),
        ("192.0.0.9", "192.0.0.9/32 port control protocol anycast"),
        ("192.0.0.10", "192.0.0.10/32 TURN anycast"),
        ("192.0.0.170", "192.0.0.170/32 NAT64/DNS64 discovery"),
        ("192.0.0.171", "192.0.0.171/32 NAT64/DNS64 discovery"),
        ("192.0.2.1", "192.0.2.0/24 documentation (TEST-NET-1)"),
        ("192.31.196.1", "192.31.196.0/24 AS112-v4"),
        ("192.52.193.1", "192.52.193.0/24 AMT"),
        (
            "192.88.99.1",
            "192.88.99.0/24 deprecated 6to4 relay anycast",
        ),
        ("192.168.1.1", "192.168.0.0/16 private-use"),
        ("192.175.48.1", "192.175.48.0/24 direct delegation AS112"),
        ("198.18.0.1", "198.18.0.0/15 benchmarking"),
        ("198.19.255.254", "198.18.0.0/15 benchmarking"),
        ("198.51.100.7", "198.51.100.0/24 documentation (TEST-NET-2)"),
        ("203.0.113.7", "203.0.113.0/24 documentation (TEST-NET-3)"),
        ("224.0.0.1", "224.0.0.0/4 multicast"),
        ("239.255.255.250", "224.0.0.0/4 multicast"),
        ("240.0.0.1", "240.0.0.0/4 reserved"),
        ("254.1.2.3", "240.0.0.0/4 reserved"),
        ("255.255.255.255", "255.255.255.255/32 limited broadcast"),
        ("::1", "::1/128 loopback"),
        ("::", "::/128 unspecified"),
        ("::ffff:127.0.0.1", "::ffff:0:0/96 IPv4-mapped, of loopback"),
        (
            "::ffff:10.0.0.1",
            "::ffff:0:0/96 IPv4-mapped, of private-use",
        ),
        (
            "::ffff:169.254.169.254",
            "::ffff:0:0/96 IPv4-mapped, of link local",
        ),
        (
            "::ffff:198.18.0.1",
            "::ffff:0:0/96 IPv4-mapped, of benchmarking",
        ),
        (
            "::127.0.0.1",
            "::/96 IPv4-compatible (deprecated), of loopback",
        ),
        (
            "::10.0.0.1",
            "::/96 IPv4-compatible (deprecated), of private-use",
        ),
        (
            "::8.8.8.8",
            "::/96 IPv4-compatible (deprecated), of a public address",
        ),
        ("64:ff9b::7f00:1", "64:ff9b::/96 NAT64, of 127.0.0.1"),
        ("64:ff9b::a00:1", "64:ff9b::/96 NAT64, of 10.0.0.1"),
        (
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::/96 NAT64, of 169.254.169.254",
        ),
        ("64:ff9b:1::808:808", "64:ff9b:1::/48 local-use NAT64"),
        ("100::1", "100::/64 discard-only"),
        ("100:0:0:1::1", "100:0:0:1::/64 dummy IPv6 prefix"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32 Teredo"),
        (
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001::/32 Teredo, of 127.0.0.1",
        ),
        ("2001:1::1", "2001:1::1/128 port control protocol anycast"),
        ("2001:1::2", "2001:1::2/128 TURN anycast"),
        (
            "2001:1::3",
            "2001:1::3/128 DNS-SD service registration anycast",
        ),
        ("2001:1ff::1", "2001::/23 IETF protocol assignments"),
        ("2001:2::1", "2001:2::/48 benchmarking"),
        ("2001:3::1", "2001:3::/32 AMT"),
        ("2001:4:112::1", "2001:4:112::/48 AS112-v6"),
        ("2001:10::1", "2001:10::/28 deprecated ORCHID"),
        ("2001:20::1", "2001:20::/28 ORCHIDv2"),
        ("2001:30::1", "2001:30::/28 drone remote ID entity tags"),
        ("2001:db8::1", "2001:db8::/32 documentation"),
        ("2002:7f00:1::1", "2002::/16 6to4, of 127.0.0.1"),
        ("2002:a00:1::1", "2002::/16 6to4, of 10.0.0.1"),
        ("2002:808:808::1", "2002::/16 6to4, of a public address"),
        (
            "2620:4f:8000::1",
            "2620:4f:8000::/48 direct delegation AS112",
        ),
        ("3fff::1", "3fff::/20 documentation"),
        ("5f00::1", "5f00::/16 segment routing (SRv6) SIDs"),
        ("fc00::1", "fc00::/7 unique-local"),
        ("fd12:3456::1", "fc00::/7 unique-local"),
        ("fe80::1", "fe80::/10 link-local unicast"),
        ("febf::1", "fe80::/10 link-local unicast"),
        ("fec0::1", "fec0::/10 site-local (deprecated)"),
        ("feff::1", "fec0::/10 site-local (deprecated)"),
        ("ff02::1", "ff00::/8 multicast"),
    ];

    /// Well-known public addresses, and neighbours of forbidden blocks.
    const PUBLIC: &[&str] = &[
        "8.8.8.8",
        "1.1.1.1",
        "9.9.9.9",
        "100.128.0.1",
        "172.32.0.1",
        "192.0.1.1",
        "198.20.0.1",
        "223.255.255.254",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2001:200::1",
        "2a00:1450:4001::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "64:ff9b::101:101",
    ];

    #[test]
    fn every_special_purpose_block_is_forbidden_and_public_addresses_are_not() {
        let wrongly_allowed: Vec<_> = SPECIAL
            .iter()
            .filter(|(ip, _)| !is_forbidden(ip.parse().unwrap()))
            .collect();
        assert!(wrongly_allowed.is_empty(), "allowed: {wrongly_allowed:#?}");
        let wrongly_forbidden: Vec<_> = PUBLIC
            .iter()
            .filter(|ip| is_forbidden(ip.parse().unwrap()))
            .collect();
        assert!(
            wrongly_forbidden.is_empty(),
            "forbidden: {wrongly_forbidden:?}"
        );
    }

    #[test]
    fn every_block_of_the_tables_has_a_test_row() {
        let rows: Vec<IpAddr> = SPECIAL.iter().map(|(ip, _)| ip.parse().unwrap()).collect();
        let inside = |contains: &dyn Fn(&IpAddr) -> bool| rows.iter().any(contains);
        for (net, name) in IPV4_FORBIDDEN {
            assert!(
                inside(&|ip| matches!(ip, IpAddr::V4(v4) if net.contains(v4))),
                "no row for {net} {name}"
            );
        }
        for (net, name) in IPV6_FORBIDDEN.iter().chain(&IPV6_EMBEDDING_IPV4) {
            assert!(
                inside(&|ip| matches!(ip, IpAddr::V6(v6) if net.contains(v6))),
                "no row for {net} {name}"
            );
        }
    }
}
