//! Address management: subnet choice from Docker's default pools and lowest-free
//! host address allocation. Pure functions; the caller holds the state lock.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::NetError;

/// Candidate subnets in Docker's order: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn pool() -> impl Iterator<Item = Ipv4Net> {
    let a = (17u8..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid"));
    let b = (0u8..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).expect("valid"));
    a.chain(b)
}

/// The first pool subnet that overlaps no subnet in `taken` (other keel
/// networks, the host's routes); `user` networks skip the default bridge's
/// 172.17.0.0/16, as Docker does.
pub fn pick_subnet(taken: &[Ipv4Net], user: bool) -> Result<Ipv4Net, NetError> {
    pool()
        .skip(usize::from(user))
        .find(|c| !taken.iter().any(|t| overlaps(*c, *t)))
        .ok_or(NetError::PoolExhausted)
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Parses a user's `--subnet`: IPv4 CIDR, no host bits set, room for a gateway and one container.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, NetError> {
    let bad = |reason: &str| NetError::InvalidSubnet {
        subnet: s.to_string(),
        reason: reason.to_string(),
    };
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| bad("expected an IPv4 CIDR such as 172.30.0.0/16"))?;
    if net.prefix_len() > 30 {
        return Err(bad("prefix must be /30 or shorter"));
    }
    if net.addr() != net.network() {
        return Err(NetError::InvalidSubnet {
            subnet: s.to_string(),
            reason: format!("it should be {}", net.trunc()),
        });
    }
    Ok(net)
}

/// The gateway (the bridge's address): the first host address.
pub fn gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// The lowest address in `net` that is neither network, broadcast, gateway nor in `used`.
#[cfg(test)]
pub fn allocate(net: Ipv4Net, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let mut used = used.clone();
    used.insert(gateway(net));
    allocate_in(net, None, &used)
}

/// The lowest address of `range` (default: all of `net`) that is a host
/// address of `net` and not in `reserved` (which holds the gateway and the
/// auxiliary addresses as well as the leases).
pub fn allocate_in(
    net: Ipv4Net,
    range: Option<Ipv4Net>,
    reserved: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let pool = range.unwrap_or(net);
    let first = u32::from(pool.network()).max(u32::from(net.network()) + 1);
    let last = u32::from(pool.broadcast()).min(u32::from(net.broadcast()).checked_sub(1)?);
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| !reserved.contains(ip))
}

/// Parses an IPv4 address given for `what` (`--gateway`, `--aux-address`, …).
pub fn parse_addr(what: &str, s: &str) -> Result<Ipv4Addr, NetError> {
    s.parse()
        .map_err(|_| NetError::InvalidConfig(format!("{what} {s:?} is not an IPv4 address")))
}

/// Checks `--ip-range` against its subnet: a CIDR inside it.
pub fn parse_range(s: &str, subnet: Ipv4Net) -> Result<Ipv4Net, NetError> {
    let r: Ipv4Net = s.parse().map_err(|_| {
        NetError::InvalidConfig(format!(
            "ip-range {s:?} is not an IPv4 CIDR such as 172.30.5.0/24"
        ))
    })?;
    if r.addr() != r.network() {
        return Err(NetError::InvalidConfig(format!(
            "ip-range {s}: it should be {}",
            r.trunc()
        )));
    }
    if !subnet.contains(&r) {
        return Err(NetError::InvalidConfig(format!(
            "ip-range {s} is not inside subnet {subnet}"
        )));
    }
    Ok(r)
}

/// Docker's MAC scheme: 02:42 followed by the IPv4 address, so it is unique per network.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn picks_docker_defaults_and_avoids_taken() {
        assert_eq!(pick_subnet(&[], false).unwrap(), n("172.17.0.0/16"));
        assert_eq!(pick_subnet(&[], true).unwrap(), n("172.18.0.0/16"));
        // A host route inside 172.18/16 (e.g. a VPN) makes it skip to 172.19.
        assert_eq!(
            pick_subnet(&[n("172.18.5.0/24")], true).unwrap(),
            n("172.19.0.0/16")
        );
        // A wide host route covering all of 172.16/12 pushes to 192.168.
        assert_eq!(
            pick_subnet(&[n("172.16.0.0/12")], false).unwrap(),
            n("192.168.0.0/20")
        );
        let all: Vec<Ipv4Net> = pool().collect();
        assert!(matches!(
            pick_subnet(&all, true),
            Err(NetError::PoolExhausted)
        ));
    }

    #[test]
    fn subnet_validation() {
        assert_eq!(parse_subnet("10.9.0.0/16").unwrap(), n("10.9.0.0/16"));
        let e = parse_subnet("10.9.1.0/16").unwrap_err().to_string();
        assert!(e.contains("it should be 10.9.0.0/16"), "{e}");
        assert!(parse_subnet("10.9.0.0/31").is_err());
        assert!(parse_subnet("nonsense").is_err());
        assert!(parse_subnet("fd00::/64").is_err());
    }

    #[test]
    fn allocation_lowest_free_and_exhaustion() {
        let net = n("10.1.0.0/29"); // hosts .1-.6; .1 is the gateway
        assert_eq!(gateway(net), Ipv4Addr::new(10, 1, 0, 1));
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(ip) = allocate(net, &used) {
            used.insert(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
        used.remove(&Ipv4Addr::new(10, 1, 0, 4));
        assert_eq!(allocate(net, &used), Some(Ipv4Addr::new(10, 1, 0, 4)));
    }

    #[test]
    fn allocation_within_a_range_skips_reserved() {
        let net = n("10.2.0.0/16");
        let reserved: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(10, 2, 0, 254)].into();
        // A custom gateway frees .1 for containers, as docker's IPAM does.
        assert_eq!(
            allocate_in(net, None, &reserved),
            Some(Ipv4Addr::new(10, 2, 0, 1))
        );
        let range = parse_range("10.2.5.0/30", net).unwrap();
        let mut used = reserved.clone();
        let mut got = Vec::new();
        while let Some(ip) = allocate_in(net, Some(range), &used) {
            used.insert(ip);
            got.push(ip.to_string());
        }
        assert_eq!(got, ["10.2.5.0", "10.2.5.1", "10.2.5.2", "10.2.5.3"]);
        // The subnet's own network and broadcast addresses are never handed out.
        let edge = parse_range("10.2.255.252/30", net).unwrap();
        assert_eq!(
            allocate_in(net, Some(edge), &BTreeSet::new()),
            Some(Ipv4Addr::new(10, 2, 255, 252))
        );
        let mut used = BTreeSet::new();
        used.insert(Ipv4Addr::new(10, 2, 255, 252));
        used.insert(Ipv4Addr::new(10, 2, 255, 253));
        used.insert(Ipv4Addr::new(10, 2, 255, 254));
        assert_eq!(allocate_in(net, Some(edge), &used), None);
        assert!(parse_range("10.3.0.0/24", net).is_err());
        assert!(parse_range("10.2.5.1/24", net).is_err());
        assert!(parse_addr("gateway", "10.2.0.300").is_err());
    }

    #[test]
    fn mac() {
        assert_eq!(mac_for(Ipv4Addr::new(172, 17, 0, 2)), "02:42:ac:11:00:02");
    }
}
