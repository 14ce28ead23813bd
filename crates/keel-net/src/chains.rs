//! iptables chains that keel replaces whole on every change (the pod
//! network's NAT exemptions, `NetworkPolicy`), behind [`Chains`]: one
//! `iptables-restore --noflush` declares the chain (which empties it),
//! writes its rules and, when missing, inserts the jump first in its
//! built-in chain, so the kernel never sees a half-written chain.

use crate::NetError;
use crate::restore::{Batch, save as iptables_save};

/// keel-owned chains, each jumped to from one built-in chain.
pub trait Chains: Send + Sync {
    /// Makes `chain` of `table` hold exactly `rules` (each an
    /// `iptables-save` rule without `-A CHAIN`), and `hook -j chain` the
    /// first rule of built-in chain `hook`.
    fn set_chain(
        &self,
        table: &str,
        hook: &str,
        chain: &str,
        rules: &[String],
    ) -> Result<(), NetError>;
    /// Removes the jump and the chain; absent is fine.
    fn delete_chain(&self, table: &str, hook: &str, chain: &str) -> Result<(), NetError>;
}

/// The real kernel's iptables (nft or legacy, as the host's `iptables` is).
#[derive(Debug, Default, Clone, Copy)]
pub struct HostChains;

/// Kernels whose [`Chains`] are the host's iptables: they get
/// [`HostChains`]' implementation (the pod network's `HostOverlay`).
pub trait UsesHostChains: Send + Sync {}

impl UsesHostChains for HostChains {}

/// What `iptables-save -t table` says about `chain`: (exists, jump present,
/// jump is the first rule of `hook`).
fn inspect(saved: &str, hook: &str, chain: &str) -> (bool, bool, bool) {
    let jump = format!("-A {hook} -j {chain}");
    let exists = saved.lines().any(|l| {
        l.strip_prefix(':')
            .and_then(|c| c.split_whitespace().next())
            == Some(chain)
    });
    let mut first = None;
    let mut present = false;
    for l in saved.lines() {
        if l.starts_with(&format!("-A {hook} ")) {
            if first.is_none() {
                first = Some(l == jump);
            }
            present |= l == jump;
        }
    }
    (exists, present, first == Some(true))
}

/// The restore script that replaces `chain` (see [`Chains::set_chain`]).
pub(crate) fn set_script(
    saved: &str,
    table: &str,
    hook: &str,
    chain: &str,
    rules: &[String],
) -> Batch {
    let (_, present, first) = inspect(saved, hook, chain);
    let mut b = Batch::default();
    b.push(table, format!(":{chain} - [0:0]"));
    if present && !first {
        // Something was inserted ahead of us: move our jump back to the top.
        b.push(table, format!("-D {hook} -j {chain}"));
    }
    if !first {
        b.push(table, format!("-I {hook} -j {chain}"));
    }
    for r in rules {
        b.push(table, format!("-A {chain} {r}"));
    }
    b
}

fn save(table: &str) -> Result<String, NetError> {
    let t = (table == "nat" || table == "filter").then_some(table);
    iptables_save(t).map_err(NetError::Iptables)
}

impl<T: UsesHostChains> Chains for T {
    fn set_chain(
        &self,
        table: &str,
        hook: &str,
        chain: &str,
        rules: &[String],
    ) -> Result<(), NetError> {
        let saved = save(table)?;
        set_script(&saved, table, hook, chain, rules)
            .apply()
            .map_err(NetError::Iptables)
    }

    fn delete_chain(&self, table: &str, hook: &str, chain: &str) -> Result<(), NetError> {
        let saved = save(table)?;
        let (exists, present, _) = inspect(&saved, hook, chain);
        if !exists {
            return Ok(());
        }
        let mut b = Batch::default();
        if present {
            b.push(table, format!("-D {hook} -j {chain}"));
        }
        b.push(table, format!("-F {chain}"));
        b.push(table, format!("-X {chain}"));
        b.apply().map_err(NetError::Iptables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_is_inserted_once_and_kept_first() {
        let empty = "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(
            set_script(
                empty,
                "nat",
                "POSTROUTING",
                "K",
                &["-s 10.0.0.0/8 -j ACCEPT".into()]
            )
            .script(),
            "*nat\n:K - [0:0]\n-I POSTROUTING -j K\n-A K -s 10.0.0.0/8 -j ACCEPT\nCOMMIT\n"
        );
        let ours_first = ":K - [0:0]\n-A POSTROUTING -j K\n-A POSTROUTING -j OTHER\n";
        assert_eq!(
            set_script(ours_first, "nat", "POSTROUTING", "K", &[]).script(),
            "*nat\n:K - [0:0]\nCOMMIT\n"
        );
        let shadowed = ":K - [0:0]\n-A POSTROUTING -j OTHER\n-A POSTROUTING -j K\n";
        assert_eq!(
            set_script(shadowed, "nat", "POSTROUTING", "K", &[]).script(),
            "*nat\n:K - [0:0]\n-D POSTROUTING -j K\n-I POSTROUTING -j K\nCOMMIT\n"
        );
    }
}
