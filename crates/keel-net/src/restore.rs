//! `iptables-restore --noflush` batches, shared by everything in keel-net
//! that writes iptables (port rules, keel's own chains, the pod network's
//! chains, the service proxy's iptables backend): lines grouped by table,
//! each table one `*table … COMMIT` section, so a batch is one atomic
//! change per table; and the two programs that read and write them.

use crate::kernel::run;

/// Lines for `iptables-restore`, grouped by table in first-use order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    tables: Vec<(String, Vec<String>)>,
}

impl Batch {
    /// Adds `line` (`:CHAIN - [0:0]`, `-A …`, `-D …`, `-I …`, `-X …`) to
    /// `table`'s section.
    pub(crate) fn push(&mut self, table: &str, line: impl Into<String>) {
        let line = line.into();
        match self.tables.iter_mut().find(|(t, _)| t == table) {
            Some((_, lines)) => lines.push(line),
            None => self.tables.push((table.to_string(), vec![line])),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tables.iter().all(|(_, l)| l.is_empty())
    }

    /// The restore script: a section per table with lines, in order.
    pub(crate) fn script(&self) -> String {
        let mut out = String::new();
        for (table, lines) in self.tables.iter().filter(|(_, l)| !l.is_empty()) {
            out.push('*');
            out.push_str(table);
            out.push('\n');
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// `iptables-restore --noflush --wait` of the batch (nothing when empty).
    pub(crate) fn apply(&self) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        restore(&self.script())
    }
}

/// `iptables-restore --noflush --wait` of `script`.
pub(crate) fn restore(script: &str) -> Result<(), String> {
    run("iptables-restore", &["--noflush", "--wait"], Some(script)).map(|_| ())
}

/// `iptables-save` of one table (`None`: all of them).
pub(crate) fn save(table: Option<&str>) -> Result<String, String> {
    match table {
        Some(t) => run("iptables-save", &["-t", t], None),
        None => run("iptables-save", &[], None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_grouped_by_table_in_first_use_order() {
        let mut b = Batch::default();
        assert!(b.is_empty());
        assert_eq!(b.script(), "");
        b.push("filter", "-A F -j ACCEPT");
        b.push("nat", ":K - [0:0]");
        b.push("filter", "-A F -j DROP");
        assert_eq!(
            b.script(),
            "*filter\n-A F -j ACCEPT\n-A F -j DROP\nCOMMIT\n*nat\n:K - [0:0]\nCOMMIT\n"
        );
    }
}
