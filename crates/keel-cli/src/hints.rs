//! The `hint:` lines for the engine's errors, in one place: each function
//! keeps the library's typed error (its cause chain intact for
//! [`crate::render_error`]) and attaches what the user can do about it.

use keel_net::NetError;
use keel_oci::OciError;
use keel_runtime::RuntimeError;

use crate::Hint;

/// `e` with `hint`, if any.
fn with(e: impl std::error::Error + Send + Sync + 'static, hint: Option<String>) -> anyhow::Error {
    match hint {
        Some(h) => anyhow::Error::new(e).context(Hint::new(h)),
        None => anyhow::Error::new(e),
    }
}

/// What the user can do about a network error.
fn net_hint(e: &NetError) -> Option<String> {
    match e {
        NetError::NotFound(_) => Some("run keel network ls to see the networks".to_string()),
        NetError::ActiveEndpoints { name, .. } => Some(format!(
            "stop and remove the containers on it first (keel network inspect {name})"
        )),
        NetError::SubnetOverlap { .. } | NetError::PoolExhausted => {
            Some("pass a free --subnet, or remove unused networks with keel network prune".into())
        }
        NetError::Unavailable { .. } => Some("run with --network none or --network host".into()),
        NetError::NoParent(_) => Some("`ip link` lists the host's interfaces".into()),
        NetError::ParentInUse { network, .. } => Some(format!(
            "attach containers to {network}, or remove it first"
        )),
        NetError::CreateSublink { kind, reason, .. } if reason.contains("Unknown device type") => {
            Some(format!(
                "this kernel has no {kind} driver (modprobe {kind})"
            ))
        }
        _ => None,
    }
}

/// A keel-net error for the user (`keel network …`).
pub(crate) fn net(e: NetError) -> anyhow::Error {
    let hint = net_hint(&e);
    with(e, hint)
}

/// A keel-runtime error for the user.
pub(crate) fn runtime(e: RuntimeError) -> anyhow::Error {
    let hint = match &e {
        RuntimeError::Image(keel_oci::OciError::ImageNotFound(_)) => Some(
            "`keel images` lists local images; `keel pull NAME`, `keel import` or `keel image seed-busybox` brings one in"
                .to_string(),
        ),
        RuntimeError::NotFound(_) => Some("`keel ps -a` lists containers".into()),
        RuntimeError::AmbiguousId(_) => {
            Some("give more characters of the ID, or the container's name".into())
        }
        RuntimeError::NoCommand => Some("give a command after the image name".into()),
        RuntimeError::UnknownUser(_) | RuntimeError::UnknownGroup(_) => {
            Some("use a name from the image's /etc/passwd, or a numeric uid[:gid]".into())
        }
        RuntimeError::Running(_) => Some("stop it first, or use keel rm -f".into()),
        RuntimeError::NameInUse { .. } => {
            Some("remove that container or choose another --name".into())
        }
        RuntimeError::Network(NetError::Unavailable { .. }) => {
            Some("run with --network none or --network host".into())
        }
        RuntimeError::Image(o) => oci_hint(o).map(str::to_string),
        _ => None,
    };
    with(e, hint)
}

/// What the user can do about an image-store or registry error.
fn oci_hint(e: &OciError) -> Option<&'static str> {
    match e {
        OciError::ImageNotFound(_) => Some(
            "`keel images` lists local images; `keel pull NAME` or `keel import` brings one in",
        ),
        OciError::MultipleTags { .. } => Some("remove the tags one by one, or pass -f"),
        OciError::CorruptArchive(_) => Some(
            "the file is damaged or not an image archive; re-create it with `keel save` or `docker save`",
        ),
        OciError::InvalidReference { .. } => Some(
            "names look like NAME[:TAG], [REGISTRY/]REPO[:TAG] or NAME@sha256:DIGEST, all lowercase",
        ),
        OciError::Registry { source, .. } if source.is_unreachable() => Some(
            "is the registry running and reachable? registries without TLS need --insecure-registry HOST:PORT (loopback ones use HTTP already)",
        ),
        OciError::Registry { source, .. } if source.is_unauthorized() => {
            Some("log in first: keel login REGISTRY")
        }
        OciError::AmbiguousImage { .. } => Some("use more digits of the ID, or the image name"),
        _ => None,
    }
}

/// An image-store or registry error for the user.
pub(crate) fn oci(e: OciError) -> anyhow::Error {
    let hint = oci_hint(&e).map(str::to_string);
    with(e, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_keep_the_typed_error_and_its_chain() {
        let e = runtime(RuntimeError::Network(NetError::Unavailable {
            network: "bridge".into(),
            reason: "cannot lock network state /x: denied".into(),
        }));
        assert!(e.downcast_ref::<RuntimeError>().is_some());
        assert_eq!(
            crate::render_error(&e),
            "error: network bridge is unavailable: cannot lock network state /x: denied\nhint: run with --network none or --network host"
        );
        let e = net(NetError::NotFound("nope".into())).context("cannot remove network nope");
        assert_eq!(
            crate::render_error(&e),
            "error: cannot remove network nope: network nope not found\nhint: run keel network ls to see the networks"
        );
        let e = runtime(RuntimeError::NotRunning("abc".into()));
        assert_eq!(
            crate::render_error(&e),
            "error: container abc is not running"
        );
    }

    /// Image-store errors get the same hint whether `keel rmi` or a
    /// container's image lookup meets them (one table, `oci_hint`).
    #[test]
    fn image_errors_have_one_hint_table() {
        let ambiguous = || OciError::AmbiguousImage {
            reference: "ab".into(),
            count: 2,
        };
        let direct = crate::render_error(&oci(ambiguous()));
        let via_runtime = crate::render_error(&runtime(RuntimeError::Image(ambiguous())));
        assert!(
            direct.ends_with("\nhint: use more digits of the ID, or the image name"),
            "{direct}"
        );
        let hint = |s: &str| s.lines().last().unwrap_or_default().to_string();
        assert_eq!(hint(&direct), hint(&via_runtime), "{via_runtime}");
    }
}
