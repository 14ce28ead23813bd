//! SPDY/3.1, the stream transport of kubectl before 1.30 (exec and attach,
//! `v4.channel.k8s.io` over SPDY): the client opens one stream per channel
//! (`streamtype: error|stdin|stdout|stderr|resize`), the server replies to
//! each, writes stdout and stderr on theirs, the final `Status` (the same
//! JSON as WebSocket's channel 3) on `error`, and ends each with FIN;
//! stdin's FIN is the end of input; resize carries concatenated
//! `{"Width":w,"Height":h}` objects.
//!
//! Written here because no maintained Rust crate speaks SPDY (it was
//! retired for HTTP/2 in 2016) and Kubernetes uses little of it: frames
//! (8-byte heads), name/value blocks compressed with zlib and SPDY's preset
//! dictionary (flate2), `SYN_STREAM`/`SYN_REPLY`, DATA with FIN, PING,
//! `RST_STREAM` and GOAWAY. No server-initiated streams, priorities or flow
//! control: kubectl's side (moby/spdystream) enforces no windows either.

use std::collections::HashMap;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::exec::{In, Job, Opts, Out};
use super::{Body, header, status};

/// The stream protocol served over SPDY.
const PROTOCOL: &str = "v4.channel.k8s.io";

pub(crate) const SYN_STREAM: u16 = 1;
pub(crate) const SYN_REPLY: u16 = 2;
pub(crate) const RST_STREAM: u16 = 3;
pub(crate) const PING: u16 = 6;
pub(crate) const GOAWAY: u16 = 7;
pub(crate) const HEADERS: u16 = 8;
pub(crate) const FLAG_FIN: u8 = 1;
/// Largest DATA payload written (SPDY allows 2^24 - 1).
pub(crate) const CHUNK: usize = 32 * 1024;

/// SPDY/3's header compression dictionary (draft-mbelshe-httpbis-spdy-00,
/// section 2.6.10.1): these words, each after its length as a big-endian
/// u32, then [`DICT_TAIL`].
const DICT_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICT_TAIL: &str = concat!(
    "10010120120220520630030230330430530630740240540640740840941041141241341441541641",
    "7502504505203 Non-Authoritative Information204 No Content301 Moved Permanently40",
    "0 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept O",
    "ct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,imag",
    "e/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/",
    "javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1",
    ",utf-,*,enq=0.",
);

fn dictionary() -> Vec<u8> {
    let mut d = Vec::with_capacity(1423);
    for w in DICT_WORDS {
        d.extend_from_slice(&u32::try_from(w.len()).unwrap_or(0).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(DICT_TAIL.as_bytes());
    d
}

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Control {
        kind: u16,
        flags: u8,
        data: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (head, flags, data) = match self {
            Frame::Control { kind, flags, data } => {
                let k = kind.to_be_bytes();
                ([0x80, 3, k[0], k[1]], *flags, data)
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => ((stream & 0x7fff_ffff).to_be_bytes(), *flags, data),
        };
        let len = u32::try_from(data.len()).unwrap_or(0).to_be_bytes();
        let mut b = Vec::with_capacity(8 + data.len());
        b.extend_from_slice(&head);
        b.extend_from_slice(&[flags, len[1], len[2], len[3]]);
        b.extend_from_slice(data);
        b
    }
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Reads one frame; `None` at the end of the connection.
pub(crate) async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<Frame>> {
    let mut h = [0u8; 8];
    match r.read_exact(&mut h).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = be32(&[0, h[5], h[6], h[7]]) as usize;
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    Ok(Some(if h[0] & 0x80 == 0 {
        Frame::Data {
            stream: be32(&h) & 0x7fff_ffff,
            flags: h[4],
            data,
        }
    } else {
        let version = u16::from_be_bytes([h[0] & 0x7f, h[1]]);
        if version != 3 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("SPDY version {version}, not 3"),
            ));
        }
        Frame::Control {
            kind: u16::from_be_bytes([h[2], h[3]]),
            flags: h[4],
            data,
        }
    }))
}

/// The session's header compression: one zlib stream each way, both with
/// SPDY's dictionary.
pub(crate) struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
    dict: Vec<u8>,
}

impl std::fmt::Debug for HeaderCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderCodec")
    }
}

impl HeaderCodec {
    pub fn new() -> Self {
        let dict = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        let _ = deflate.set_dictionary(&dict);
        HeaderCodec {
            inflate: Decompress::new(true),
            deflate,
            dict,
        }
    }

    /// A name/value block from the peer.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut used = 0usize;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(4096));
            }
            let before = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(&block[used..], &mut out, FlushDecompress::Sync);
            used += usize::try_from(self.inflate.total_in() - before).unwrap_or(0);
            match r {
                Ok(_) if used >= block.len() && out.capacity() > out.len() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dict)
                        .map_err(|e| format!("header dictionary: {e}"))?;
                }
                Err(e) => return Err(format!("header block: {e}")),
            }
            if out.len() > 1 << 20 {
                return Err("header block over 1 MiB".into());
            }
        }
        parse_block(&out)
    }

    /// A name/value block for the peer.
    pub fn encode(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(0).to_be_bytes());
        for (n, v) in pairs {
            for s in [n, v] {
                raw.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut used = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            if self
                .deflate
                .compress_vec(&raw[used..], &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            used += usize::try_from(self.deflate.total_in() - before).unwrap_or(0);
            if used >= raw.len() && out.capacity() > out.len() {
                break;
            }
        }
        out
    }
}

/// An uncompressed name/value block: u32 count, then u32-length-prefixed
/// names and values.
pub(crate) fn parse_block(b: &[u8]) -> Result<Vec<(String, String)>, String> {
    let bad = || "malformed header block".to_string();
    let mut at = 4usize;
    let n = be32(b.get(..4).ok_or_else(bad)?);
    let take = |at: &mut usize| -> Result<String, String> {
        let len = be32(b.get(*at..*at + 4).ok_or_else(bad)?) as usize;
        let s = b.get(*at + 4..*at + 4 + len).ok_or_else(bad)?;
        *at += 4 + len;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let name = take(&mut at)?;
        let value = take(&mut at)?;
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

pub(crate) fn is_upgrade(req: &Request<Incoming>) -> bool {
    header(req, "upgrade")
        .to_ascii_lowercase()
        .starts_with("spdy/3.1")
}

pub(crate) fn upgrade(mut req: Request<Incoming>, o: &Opts, job: Job) -> Response<Body> {
    let offered = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !offered {
        return status(
            400,
            "BadRequest",
            &format!("unsupported stream protocol; this node serves {PROTOCOL} over SPDY"),
        );
    }
    let on = hyper::upgrade::on(&mut req);
    let o = o.clone();
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            session(hyper_util::rt::TokioIo::new(up), o, job).await;
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", PROTOCOL)
        .body(super::text(200, "").into_body())
        .expect("static response parts are valid")
}

pub(crate) fn data(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    Frame::Data {
        stream,
        flags,
        data: data.to_vec(),
    }
    .encode()
}

/// The streams a request needs before its command starts.
fn wanted(o: &Opts) -> Vec<&'static str> {
    let mut w = vec!["error"];
    for (on, t) in [
        (o.stdin, "stdin"),
        (o.stdout, "stdout"),
        (o.stderr && !o.tty, "stderr"),
        (o.tty, "resize"),
    ] {
        if on {
            w.push(t);
        }
    }
    w
}

async fn session<S>(io: S, o: Opts, job: Job)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(32);
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut codec = HeaderCodec::new();
    let need = wanted(&o);
    let mut ids: HashMap<String, u32> = HashMap::new();
    let (in_tx, in_rx) = mpsc::channel(16);
    let mut start = Some((job, in_rx));
    let mut work = None;
    let mut resize = Vec::new();
    while let Ok(Some(f)) = read_frame(&mut rd).await {
        match f {
            Frame::Control {
                kind: SYN_STREAM,
                data,
                flags,
            } if data.len() >= 10 => {
                let id = be32(&data) & 0x7fff_ffff;
                let Ok(h) = codec.decode(&data[10..]) else {
                    break;
                };
                let t = h
                    .iter()
                    .find(|(n, _)| n == "streamtype")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend(codec.encode(&[]));
                let syn = Frame::Control {
                    kind: SYN_REPLY,
                    flags: 0,
                    data: reply,
                };
                if wtx.send(syn.encode()).await.is_err() {
                    break;
                }
                if t == "stdin" && flags & FLAG_FIN != 0 {
                    let _ = in_tx.send(In::StdinEof).await;
                }
                ids.insert(t, id);
                if need.iter().all(|w| ids.contains_key(*w))
                    && let Some((job, input)) = start.take()
                {
                    let (out_tx, out_rx) = mpsc::channel(16);
                    let fut = job(input, out_tx);
                    work = Some(tokio::spawn(finish(fut, out_rx, ids.clone(), wtx.clone())));
                }
            }
            Frame::Control {
                kind: HEADERS,
                data,
                ..
            } if data.len() >= 4 => {
                // Decoded only to keep the zlib stream in step.
                if codec.decode(&data[4..]).is_err() {
                    break;
                }
            }
            Frame::Control {
                kind: PING, data, ..
            } => {
                let pong = Frame::Control {
                    kind: PING,
                    flags: 0,
                    data,
                };
                let _ = wtx.send(pong.encode()).await;
            }
            Frame::Control { kind: GOAWAY, .. } => break,
            Frame::Control {
                kind: RST_STREAM,
                data,
                ..
            } => {
                if ids.get("stdin") == Some(&(be32(&data) & 0x7fff_ffff)) {
                    let _ = in_tx.send(In::StdinEof).await;
                }
            }
            Frame::Control { .. } => {}
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if ids.get("stdin") == Some(&stream) {
                    if !data.is_empty() {
                        let _ = in_tx.send(In::Stdin(Bytes::from(data))).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = in_tx.send(In::StdinEof).await;
                    }
                } else if ids.get("resize") == Some(&stream) {
                    resize.extend_from_slice(&data);
                    for r in take_resizes(&mut resize) {
                        let _ = in_tx.send(r).await;
                    }
                }
            }
        }
    }
    drop(in_tx);
    drop(wtx);
    if let Some(w) = work {
        let _ = w.await;
    }
    let _ = writer.await;
}

/// Complete JSON objects at the front of `buf`, as resizes; the rest stays.
pub(crate) fn take_resizes(buf: &mut Vec<u8>) -> Vec<In> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    let mut end = 0;
    while let Some(Ok(v)) = it.next() {
        end = it.byte_offset();
        if let Some(r) = super::ws::parse_resize(v.to_string().as_bytes()) {
            out.push(r);
        }
    }
    buf.drain(..end);
    out
}

async fn finish(
    job: std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>,
    mut out: mpsc::Receiver<Out>,
    ids: HashMap<String, u32>,
    w: mpsc::Sender<Vec<u8>>,
) {
    let handle = tokio::spawn(job);
    let (stdout, stderr) = (ids.get("stdout").copied(), ids.get("stderr").copied());
    while let Some(m) = out.recv().await {
        let (id, b) = match m {
            Out::Stdout(b) => (stdout, b),
            Out::Stderr(b) => (stderr.or(stdout), b),
        };
        let Some(id) = id else { continue };
        for c in b.chunks(CHUNK) {
            if w.send(data(id, 0, c)).await.is_err() {
                return;
            }
        }
    }
    let st = handle
        .await
        .unwrap_or_else(|e| super::exec::failure(&e.to_string()));
    for id in [stdout, stderr].into_iter().flatten() {
        let _ = w.send(data(id, FLAG_FIN, &[])).await;
    }
    if let Some(id) = ids.get("error") {
        let _ = w.send(data(*id, 0, st.to_string().as_bytes())).await;
        let _ = w.send(data(*id, FLAG_FIN, &[])).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_one_zlib_stream_each_way() {
        let (mut client, mut server) = (HeaderCodec::new(), HeaderCodec::new());
        for i in 0..3 {
            let v = format!("stdout{i}");
            let b = client.encode(&[("streamType", &v), ("port", "80")]);
            let got = server.decode(&b).unwrap();
            assert_eq!(
                got,
                [("streamtype".to_string(), v), ("port".into(), "80".into())]
            );
        }
        assert!(server.decode(&[1, 2, 3]).is_err());
        assert!(parse_block(&[0, 0, 0, 2, 0, 0, 0, 9]).is_err());
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = [
            Frame::Control {
                kind: SYN_REPLY,
                flags: 0,
                data: vec![0, 0, 0, 1],
            },
            Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: b"hi".to_vec(),
            },
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend(f.encode());
        }
        let mut r = &bytes[..];
        for f in &frames {
            assert_eq!(read_frame(&mut r).await.unwrap().as_ref(), Some(f));
        }
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let mut v2: &[u8] = &[0x80, 2, 0, 1, 0, 0, 0, 0];
        assert!(read_frame(&mut v2).await.is_err());
    }

    #[test]
    fn resizes_may_arrive_split() {
        let mut buf = br#"{"Width":80,"Height":24}{"Width":1"#.to_vec();
        let got = take_resizes(&mut buf);
        assert!(matches!(
            got[..],
            [In::Resize {
                width: 80,
                height: 24
            }]
        ));
        buf.extend_from_slice(br#"00,"Height":30}"#);
        assert!(matches!(
            take_resizes(&mut buf)[..],
            [In::Resize {
                width: 100,
                height: 30
            }]
        ));
        assert!(buf.is_empty());
    }
}
