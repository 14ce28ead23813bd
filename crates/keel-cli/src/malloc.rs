//! glibc malloc settings for the long-running processes (`keel server`,
//! `keel agent`). By default glibc lets threads use up to 8 arenas per
//! core; tokio's blocking pool (every `SQLite` read, the agent's runtime
//! calls) spreads allocations over all of them and each arena keeps what
//! was freed in it, so a burst (100 pods started) left tens of MB free but
//! resident. Two arenas measured 20 MB (18%) less anonymous memory with
//! 100 pods (BENCHMARKS.md, "Pod startup and node memory"); a periodic
//! `malloc_trim` on top showed no further gain there, so there is none.

/// Arenas unless `MALLOC_ARENA_MAX` says otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Limits glibc's arenas; call before the runtime starts its threads.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}
