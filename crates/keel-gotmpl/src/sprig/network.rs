//! sprig's network.go: `getHostByName`.

use std::collections::HashMap;

use super::{Res, s};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

/// sprig's `getHostByName`: one of the name's addresses, picked at random as
/// Go does. Uses the system resolver (`getaddrinfo`: /etc/hosts, then DNS if
/// configured), like Go's `net.LookupHost`; keel adds no network access of
/// its own.
fn get_host_by_name(name: &str) -> Res {
    use std::net::ToSocketAddrs as _;
    let mut addrs: Vec<String> = Vec::new();
    if let Ok(it) = (name, 0u16).to_socket_addrs() {
        for a in it {
            let ip = a.ip().to_string();
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    if addrs.is_empty() {
        // Go's rand.Intn(0) panics; text/template reports the panic.
        return Err("invalid argument to Intn".into());
    }
    let i = super::crypto::random_below(addrs.len() as u64)? as usize;
    Ok(Value::string(addrs.swap_remove(i)))
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    m.insert(
        "getHostByName",
        def(&[Ty::Str], None, |a| get_host_by_name(s(&a[0]))),
    );
}
