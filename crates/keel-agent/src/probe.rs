//! Probes and lifecycle hooks as the kubelet runs them: `exec` in the
//! container (a child `keel exec`), `httpGet` (HTTP/1.1, 200-399 passes),
//! `tcpSocket` and `grpc` (the standard health service over cleartext
//! HTTP/2) against the pod IP, each within `timeoutSeconds`.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, GRPCAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where and how a probe runs.
pub struct Target<'a> {
    pub root: &'a Path,
    pub exe: &'a Path,
    pub container_id: &'a str,
    pub pod_ip: &'a str,
    pub ports: &'a [ContainerPort],
}

/// Runs `probe` once: `Ok` when it passes, else why not.
pub async fn run(probe: &Probe, t: &Target<'_>) -> Result<(), String> {
    let timeout =
        Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    action(
        probe.exec.as_ref(),
        probe.http_get.as_ref(),
        probe.tcp_socket.as_ref(),
        probe.grpc.as_ref(),
        timeout,
        t,
    )
    .await
}

/// One handler (probe or hook).
pub async fn action(
    exec: Option<&ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    grpc: Option<&GRPCAction>,
    timeout: Duration,
    t: &Target<'_>,
) -> Result<(), String> {
    let work = async {
        if let Some(e) = exec {
            return run_exec(e, t).await;
        }
        if let Some(h) = http {
            return http_get(h, t).await;
        }
        if let Some(s) = tcp {
            let host = s.host.clone().unwrap_or_else(|| t.pod_ip.to_string());
            let port = port(&s.port, t.ports)?;
            return tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
        }
        if let Some(g) = grpc {
            let port = u16::try_from(g.port).map_err(|_| format!("bad port {}", g.port))?;
            return crate::grpc_probe::check(t.pod_ip, port, g.service.as_deref().unwrap_or(""))
                .await;
        }
        Err("the probe has no handler".into())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

fn port(p: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("bad port {n}")),
        IntOrString::String(name) => ports
            .iter()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

async fn run_exec(e: &ExecAction, t: &Target<'_>) -> Result<(), String> {
    let argv = e.command.clone().unwrap_or_default();
    if argv.is_empty() {
        return Err("exec probe without a command".into());
    }
    let out = tokio::process::Command::new(t.exe)
        .arg("--root")
        .arg(t.root)
        .arg("exec")
        .arg(t.container_id)
        .args(&argv)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("exec: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if msg.is_empty() {
            msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        Err(format!(
            "command {argv:?} exited with {}: {msg}",
            out.status.code().unwrap_or(-1)
        ))
    }
}

async fn http_get(action: &HTTPGetAction, target: &Target<'_>) -> Result<(), String> {
    let https = action
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let scheme = if https { "https" } else { "http" };
    let host = action
        .host
        .clone()
        .unwrap_or_else(|| target.pod_ip.to_string());
    let port = port(&action.port, target.ports)?;
    let path = action.path.clone().unwrap_or_else(|| "/".into());
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| {
            format!("Get \"{scheme}://{host}:{port}{path}\": dial tcp {host}:{port}: {e}")
        })?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for hd in action.http_headers.iter().flatten() {
        let _ = write!(req, "{}: {}\r\n", hd.name, hd.value);
    }
    req.push_str("\r\n");
    if https {
        let tls = crate::join::any_server_tls()?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("probe host {host:?}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("Get \"https://{host}:{port}{path}\": {e}"))?;
        return exchange(stream, &req, &host, port).await;
    }
    exchange(tcp, &req, &host, port).await
}

/// Sends the request, judges the status line (2xx and 3xx pass).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    req: &str,
    host: &str,
    port: u16,
) -> Result<(), String> {
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256];
    let mut filled = 0;
    while filled < buf.len() {
        let got = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|e| e.to_string())?;
        if got == 0 || buf[..filled + got].contains(&b'\n') {
            filled += got;
            break;
        }
        filled += got;
    }
    let line = String::from_utf8_lossy(&buf[..filled]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response from {host}:{port}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}
