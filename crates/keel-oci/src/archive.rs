//! Image archives: `keel load` reads docker-archive (the layout `docker save`
//! wrote before Docker 25 and the OCI-based one after), OCI layout and
//! oci-archive tarballs, plain or gzip/zstd compressed; `keel save` writes an
//! archive both layouts can read (OCI layout plus Docker's `manifest.json`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::blobs::{Tee, copy_large};
use crate::digest::{Digest, HashingReader};
use crate::error::{IoContext, OciError, Result};
use crate::image::{
    INDEX_TYPES, Image, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST, ManifestKind,
    config_diff_ids, digest_of, layer_compression, layer_media_type, manifest_kind, parse_config,
    parse_index, parse_manifest,
};
use crate::layer::{CheckedLayer, Compression, LayerError, check_layer, decompressed};
use crate::reference::Reference;
use crate::store::{ImageStore, NewImage};

/// Files at most this large are kept in memory while reading an archive
/// (manifests, configs, index files); larger ones stream into the blob store.
const SMALL_FILE: u64 = 1 << 20;

/// One image a load brought in.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    pub manifest: Digest,
    pub tags: Vec<Reference>,
}

enum FileData {
    Mem(Vec<u8>),
    Blob(Digest),
}

/// The archive's files, read once.
struct ArchiveFiles {
    files: HashMap<String, FileData>,
    links: HashMap<String, String>,
    /// [`check_layer`]'s verdict on each big file, by digest, taken while
    /// it was stored.
    verdicts: RefCell<HashMap<Digest, std::result::Result<CheckedLayer, LayerError>>>,
}

fn norm_path(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// `blobs/sha256/<hex>` names its own digest.
fn blob_path_digest(path: &str) -> Option<Digest> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

impl ArchiveFiles {
    fn read(store: &ImageStore, r: impl Read, created: &mut Vec<Digest>) -> Result<Self> {
        let mut ar = tar::Archive::new(r);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        let mut verdicts = HashMap::new();
        let corrupt = |e: io::Error| OciError::CorruptArchive(e.to_string());
        for entry in ar.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let path = entry.path().map_err(corrupt)?.into_owned();
            let Some(name) = norm_path(&path) else {
                return Err(OciError::CorruptArchive(format!(
                    "entry {} climbs out of the archive",
                    path.display()
                )));
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let size = entry.header().size().map_err(corrupt)?;
                // A stream cut short ends an entry early without an error from
                // the tar reader: compare what arrived with the header's size.
                let truncated = |got: u64| {
                    OciError::CorruptArchive(format!(
                        "entry {name} ends after {got} of {size} bytes"
                    ))
                };
                if size <= SMALL_FILE {
                    let mut buf = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut buf).map_err(corrupt)?;
                    if buf.len() as u64 != size {
                        return Err(truncated(buf.len() as u64));
                    }
                    files.insert(name, FileData::Mem(buf));
                } else {
                    let expected = blob_path_digest(&name);
                    let mut w = store.blobs().writer()?;
                    // Big files are mostly layers, and which ones is only
                    // known once the manifests are read: check each as a
                    // layer while it is stored, and keep the verdict.
                    let mut tee = Tee::new(&mut entry, &mut w);
                    let verdict = check_layer(&mut tee);
                    let rest = copy_large(&mut tee, &mut io::sink());
                    if let Some(e) = tee.write_error.take() {
                        return Err(e).io("write blob to", store.blobs().tmp_dir());
                    }
                    let got = tee.count;
                    rest.map_err(corrupt)?;
                    if got != size {
                        return Err(truncated(got));
                    }
                    let put = w.commit(expected.as_ref()).map_err(|e| match e {
                        OciError::DigestMismatch {
                            expected, actual, ..
                        } => OciError::DigestMismatch {
                            what: format!("archive entry {name}"),
                            expected,
                            actual,
                        },
                        other => other,
                    })?;
                    if put.created {
                        created.push(put.digest.clone());
                    }
                    verdicts.insert(put.digest.clone(), verdict);
                    files.insert(name, FileData::Blob(put.digest));
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name().map_err(corrupt)?.unwrap_or_default();
                let base = if kind.is_symlink() {
                    Path::new(&name)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(target)
                } else {
                    target.into_owned()
                };
                if let Some(t) = norm_path(&base) {
                    links.insert(name, t);
                }
            }
        }
        Ok(ArchiveFiles {
            files,
            links,
            verdicts: RefCell::new(verdicts),
        })
    }

    fn get(&self, name: &str) -> Option<&FileData> {
        let mut n = norm_path(Path::new(name))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&n) {
                return Some(f);
            }
            n = self.links.get(&n)?.clone();
        }
        None
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn bytes(&self, store: &ImageStore, name: &str) -> Result<Vec<u8>> {
        match self.get(name) {
            Some(FileData::Mem(b)) => Ok(b.clone()),
            Some(FileData::Blob(d)) => store.blobs().read(d),
            None => Err(missing(name)),
        }
    }

    /// Puts a file into the blob store (if it is not there yet) and returns
    /// its digest and size. `expected`, when given, must match.
    fn store(
        &self,
        store: &ImageStore,
        name: &str,
        expected: Option<&Digest>,
        created: &mut Vec<Digest>,
    ) -> Result<(Digest, u64)> {
        let (d, size) = match self.get(name) {
            Some(FileData::Mem(b)) => {
                let put = store.blobs().put_bytes(b)?;
                if put.created {
                    created.push(put.digest.clone());
                }
                (put.digest, put.size)
            }
            Some(FileData::Blob(d)) => (d.clone(), store.blobs().size(d)?),
            None => return Err(missing(name)),
        };
        if let Some(e) = expected
            && *e != d
        {
            return Err(OciError::DigestMismatch {
                what: format!("archive entry {name}"),
                expected: e.to_string(),
                actual: d.to_string(),
            });
        }
        Ok((d, size))
    }
}

impl ArchiveFiles {
    /// Checks archive file `name` as a layer with [`check_layer`]: small
    /// files in memory, big ones by the verdict taken while they were read.
    /// (A load that fails removes the blobs it stored.)
    fn check_layer(&self, store: &ImageStore, name: &str) -> Result<CheckedLayer> {
        let verdict = match self.get(name) {
            Some(FileData::Mem(b)) => check_layer(&b[..]),
            Some(FileData::Blob(d)) => {
                let taken = self.verdicts.borrow_mut().remove(d);
                let verdict = match taken {
                    Some(v) => v,
                    None => check_layer(store.blobs().open(d)?),
                };
                // A layer shared by several images is checked once.
                if let Ok(c) = &verdict {
                    self.verdicts.borrow_mut().insert(d.clone(), Ok(c.clone()));
                }
                verdict
            }
            None => return Err(missing(name)),
        };
        verdict.map_err(|e| OciError::from_check(name, e))
    }
}

fn missing(name: &str) -> OciError {
    OciError::CorruptArchive(format!("missing file {name}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Checks that a layer's uncompressed content is the `diff_id` the config
/// names. A layer whose media type says uncompressed is taken as it is.
fn check_diff_id(
    layer: &Digest,
    checked: &CheckedLayer,
    declared: Option<Compression>,
    diff_id: &Digest,
    name: &str,
) -> Result<()> {
    let actual = match declared {
        Some(Compression::None) => layer,
        _ => checked.diff_id.as_ref().unwrap_or(layer),
    };
    if actual != diff_id {
        return Err(OciError::DigestMismatch {
            what: format!("layer {name} (config diff_id)"),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Serializes an OCI image manifest for a config and layer list.
pub fn build_manifest(config: (&Digest, u64), layers: &[(Digest, u64, Compression)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, s, c)| json!({"mediaType": layer_media_type(*c), "digest": d, "size": s}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    });
    serde_json::to_vec(&m).expect("manifest serializes")
}

/// `keel load`: reads an archive and adds its images. All images of the archive
/// appear, or none (and no blob this load added stays behind).
pub fn load(store: &ImageStore, r: impl Read + 'static) -> Result<Vec<LoadedImage>> {
    let guard = store.write_guard()?;
    let mut created = Vec::new();
    let res = load_inner(store, r, &mut created);
    drop(guard);
    if res.is_err() {
        store.discard_new_blobs(&created)?;
    }
    res
}

fn load_inner(
    store: &ImageStore,
    r: impl Read + 'static,
    created: &mut Vec<Digest>,
) -> Result<Vec<LoadedImage>> {
    let r = decompressed(r).map_err(|e| OciError::CorruptArchive(e.to_string()))?;
    let files = ArchiveFiles::read(store, r, created)?;
    let mut new_images: Vec<NewImage> = Vec::new();
    let mut summaries: Vec<(Digest, Vec<Reference>)> = Vec::new();

    // Docker's manifest.json: RepoTags per config, used by both layouts.
    let docker: Option<Vec<DockerManifestEntry>> = if files.has("manifest.json") {
        let b = files.bytes(store, "manifest.json")?;
        Some(serde_json::from_slice(&b).map_err(|e| OciError::Malformed {
            what: "manifest.json".into(),
            reason: e.to_string(),
        })?)
    } else {
        None
    };

    if files.has("index.json") {
        let b = files.bytes(store, "index.json")?;
        let index = parse_index(&b, "index.json")?;
        let mut manifests = Vec::new();
        collect_manifests(store, &files, &index, created, &mut manifests, 0)?;
        for (desc_annotations, mbytes) in manifests {
            let m = parse_manifest(&mbytes, "manifest")?;
            let cd = digest_of(m.config())?;
            let cbytes = files.bytes(store, &format!("blobs/sha256/{}", cd.hex()))?;
            let config = parse_config(&cbytes, &format!("config {cd}"))?;
            files.store(
                store,
                &format!("blobs/sha256/{}", cd.hex()),
                Some(&cd),
                created,
            )?;
            let diff_ids = config_diff_ids(&config)?;
            if diff_ids.len() != m.layers().len() {
                return Err(OciError::Malformed {
                    what: format!("image {cd}"),
                    reason: "layer count differs between manifest and config".into(),
                });
            }
            for (l, did) in m.layers().iter().zip(&diff_ids) {
                let ld = digest_of(l)?;
                let name = format!("blobs/sha256/{}", ld.hex());
                files.store(store, &name, Some(&ld), created)?;
                let checked = files.check_layer(store, &name)?;
                let declared =
                    layer_compression(l.media_type().as_ref()).unwrap_or(Compression::None);
                check_diff_id(&ld, &checked, Some(declared), did, &name)?;
            }
            let mut tags = Vec::new();
            for key in [
                "io.containerd.image.name",
                "org.opencontainers.image.ref.name",
            ] {
                if let Some(v) = desc_annotations.get(key)
                    && let Some(r) = ref_from_annotation(v)
                    && !tags.contains(&r)
                {
                    tags.push(r);
                }
            }
            if let Some(entries) = &docker {
                for e in entries {
                    if e.config.ends_with(cd.hex()) {
                        for t in e.repo_tags.iter().flatten() {
                            let r = Reference::parse(t)?;
                            if !tags.contains(&r) {
                                tags.push(r);
                            }
                        }
                    }
                }
            }
            summaries.push((cd.clone(), tags.clone()));
            new_images.push(NewImage {
                manifest: mbytes,
                tags,
                repo_digest: None,
            });
        }
    } else if let Some(entries) = docker {
        for e in entries {
            let (cd, csize) = files.store(store, &e.config, None, created)?;
            let cbytes = store.blobs().read(&cd)?;
            let config = parse_config(&cbytes, &format!("config {}", e.config))?;
            let diff_ids = config_diff_ids(&config)?;
            if diff_ids.len() != e.layers.len() {
                return Err(OciError::Malformed {
                    what: format!("image {}", e.config),
                    reason: format!(
                        "manifest.json lists {} layers but the config has {} diff_ids",
                        e.layers.len(),
                        diff_ids.len()
                    ),
                });
            }
            let mut layers = Vec::new();
            for (lp, did) in e.layers.iter().zip(&diff_ids) {
                let (ld, lsize) = files.store(store, lp, None, created)?;
                let checked = files.check_layer(store, lp)?;
                check_diff_id(&ld, &checked, None, did, lp)?;
                layers.push((ld, lsize, checked.compression));
            }
            let tags = e
                .repo_tags
                .iter()
                .flatten()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>>>()?;
            summaries.push((cd.clone(), tags.clone()));
            new_images.push(NewImage {
                manifest: build_manifest((&cd, csize), &layers),
                tags,
                repo_digest: None,
            });
        }
    } else {
        return Err(OciError::CorruptArchive(
            "neither manifest.json (docker-archive) nor index.json (OCI layout) found".into(),
        ));
    }
    if new_images.is_empty() {
        return Err(OciError::CorruptArchive(
            "the archive holds no image".into(),
        ));
    }
    let mds = store.commit_many(&new_images)?;
    Ok(summaries
        .into_iter()
        .zip(mds)
        .map(|((id, tags), manifest)| LoadedImage { id, manifest, tags })
        .collect())
}

/// An OCI ref-name annotation is either a full reference or (per the spec) just a tag.
fn ref_from_annotation(v: &str) -> Option<Reference> {
    let tag_only = !v.contains('/') && !v.contains(':') && !v.contains('@');
    if tag_only {
        return None;
    }
    Reference::parse(v).ok()
}

/// Walks an index (and nested indexes) to the image manifests, picking this
/// host's platform where an index offers several.
fn collect_manifests(
    store: &ImageStore,
    files: &ArchiveFiles,
    index: &oci_spec::image::ImageIndex,
    created: &mut Vec<Digest>,
    out: &mut Vec<(HashMap<String, String>, Vec<u8>)>,
    depth: usize,
) -> Result<()> {
    if depth > 4 {
        return Err(OciError::Malformed {
            what: "index.json".into(),
            reason: "indexes nested too deeply".into(),
        });
    }
    let descs = index.manifests();
    let platform_match = |d: &&oci_spec::image::Descriptor| {
        d.platform().as_ref().is_none_or(|p| {
            p.os().to_string() == "linux" && p.architecture().to_string() == host_arch()
        })
    };
    let chosen: Vec<&oci_spec::image::Descriptor> = if depth > 0 {
        descs.iter().filter(platform_match).take(1).collect()
    } else {
        descs.iter().collect()
    };
    if chosen.is_empty() {
        return Err(OciError::Malformed {
            what: "index".into(),
            reason: format!("no manifest for linux/{}", host_arch()),
        });
    }
    for d in chosen {
        let md = digest_of(d)?;
        let name = format!("blobs/sha256/{}", md.hex());
        let bytes = files.bytes(store, &name)?;
        if Digest::of(&bytes) != md {
            return Err(OciError::DigestMismatch {
                what: format!("archive entry {name}"),
                expected: md.to_string(),
                actual: Digest::of(&bytes).to_string(),
            });
        }
        let declared = d.media_type().to_string();
        match manifest_kind(&bytes, Some(&declared), &name)? {
            ManifestKind::Image => {
                files.store(store, &name, Some(&md), created)?;
                out.push((d.annotations().clone().unwrap_or_default(), bytes));
            }
            ManifestKind::Index => {
                let nested = parse_index(&bytes, &name)?;
                let before = out.len();
                collect_manifests(store, files, &nested, created, out, depth + 1)?;
                // Names given on the outer descriptor apply to what it points at.
                for o in &mut out[before..] {
                    for (k, v) in d.annotations().clone().unwrap_or_default() {
                        o.0.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The OCI architecture name of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn tar_header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).expect("archive paths are short ascii");
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let h = tar_header(path, data.len() as u64);
    b.append(&h, data)
}

/// An image ready to be written: its layers uncompressed (docker-archive
/// readers expect layer files whose digest is the `diff_id`).
struct SaveImage {
    image: Image,
    names: Vec<Reference>,
    manifest_bytes: Vec<u8>,
    manifest_digest: Digest,
    /// (`diff_id`, size, where the uncompressed bytes are)
    layers: Vec<(Digest, u64, LayerSource)>,
}

enum LayerSource {
    Blob(Digest),
    Temp(PathBuf),
}

/// `keel save`: writes the images (with the names asked for) as one tar that
/// `docker load` and `podman load` both read: an OCI image layout plus
/// Docker's `manifest.json`, layers uncompressed.
pub fn save(store: &ImageStore, names: &[String], out: impl Write) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("save-")
        .tempdir_in(store.blobs().tmp_dir())
        .io("create temp dir in", store.blobs().tmp_dir())?;
    let mut images: Vec<SaveImage> = Vec::new();
    for n in names {
        let image = store.resolve(n)?;
        let asked = Reference::parse(n)
            .ok()
            .filter(|r| r.digest().is_none() && store.resolve_manifest(&r.to_string()).is_ok());
        if let Some(existing) = images
            .iter_mut()
            .find(|s| s.image.manifest_digest == image.manifest_digest)
        {
            existing.names.extend(asked);
            continue;
        }
        let mut layers = Vec::new();
        let mut all_plain = true;
        for (l, did) in image.manifest.layers().iter().zip(image.diff_ids()?) {
            let ld = digest_of(l)?;
            let c = layer_compression(l.media_type().as_ref()).unwrap_or(Compression::None);
            if c == Compression::None {
                layers.push((did, l.size(), LayerSource::Blob(ld)));
            } else {
                all_plain = false;
                let p = tmp.path().join(did.hex());
                let mut out = std::fs::File::create(&p).io("create", &p)?;
                let mut h = HashingReader::new(
                    decompressed(store.blobs().open(&ld)?)
                        .io("decompress", store.blobs().path(&ld))?,
                );
                copy_large(&mut h, &mut out).io("decompress", store.blobs().path(&ld))?;
                let (actual, size) = h.finish();
                if actual != did {
                    return Err(OciError::DigestMismatch {
                        what: format!("layer {ld} (config diff_id)"),
                        expected: did.to_string(),
                        actual: actual.to_string(),
                    });
                }
                layers.push((did, size, LayerSource::Temp(p)));
            }
        }
        let (manifest_bytes, manifest_digest) = if all_plain {
            (image.manifest_bytes.clone(), image.manifest_digest.clone())
        } else {
            let ls: Vec<_> = layers
                .iter()
                .map(|(d, s, _)| (d.clone(), *s, Compression::None))
                .collect();
            let b = build_manifest((&image.config_digest, image.config_bytes.len() as u64), &ls);
            let d = Digest::of(&b);
            (b, d)
        };
        images.push(SaveImage {
            image,
            names: asked.into_iter().collect(),
            manifest_bytes,
            manifest_digest,
            layers,
        });
    }

    let mut tb = tar::Builder::new(out);
    tb.mode(tar::HeaderMode::Deterministic);
    let werr = |e: io::Error| OciError::Io {
        op: "write archive",
        path: PathBuf::from("-"),
        source: e,
    };
    let mut written: std::collections::HashSet<Digest> = std::collections::HashSet::new();
    append_bytes(&mut tb, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in &images {
        for (did, size, src) in &s.layers {
            if !written.insert(did.clone()) {
                continue;
            }
            let path = format!("blobs/sha256/{}", did.hex());
            let h = tar_header(&path, *size);
            match src {
                LayerSource::Blob(d) => tb.append(&h, store.blobs().open(d)?).map_err(werr)?,
                LayerSource::Temp(p) => {
                    let mut f = std::fs::File::open(p).io("open", p)?;
                    f.rewind().io("read", p)?;
                    tb.append(&h, f).map_err(werr)?;
                }
            }
        }
        for (d, bytes) in [
            (&s.image.config_digest, &s.image.config_bytes),
            (&s.manifest_digest, &s.manifest_bytes),
        ] {
            if written.insert(d.clone()) {
                append_bytes(&mut tb, &format!("blobs/sha256/{}", d.hex()), bytes).map_err(werr)?;
            }
        }
        let desc = |ann: Option<serde_json::Value>| {
            let mut v = json!({
                "mediaType": MT_OCI_MANIFEST,
                "digest": s.manifest_digest,
                "size": s.manifest_bytes.len(),
            });
            if let Some(a) = ann {
                v["annotations"] = a;
            }
            v
        };
        if s.names.is_empty() {
            index_entries.push(desc(None));
        }
        for n in &s.names {
            index_entries.push(desc(Some(json!({
                "io.containerd.image.name": n.to_string(),
                "org.opencontainers.image.ref.name": n.tag().unwrap_or("latest"),
            }))));
            repositories.entry(n.familiar_name()).or_default().insert(
                n.tag().unwrap_or("latest").to_string(),
                s.layers
                    .last()
                    .map(|l| l.0.hex().to_string())
                    .unwrap_or_default(),
            );
        }
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", s.image.config_digest.hex()),
            "RepoTags": s.names.iter().map(Reference::familiar).collect::<Vec<_>>(),
            "Layers": s.layers.iter().map(|l| format!("blobs/sha256/{}", l.0.hex())).collect::<Vec<_>>(),
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": index_entries,
    });
    append_bytes(
        &mut tb,
        "index.json",
        &serde_json::to_vec(&index).expect("json"),
    )
    .map_err(werr)?;
    append_bytes(
        &mut tb,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).expect("json"),
    )
    .map_err(werr)?;
    if !repositories.is_empty() {
        append_bytes(
            &mut tb,
            "repositories",
            &serde_json::to_vec(&repositories).expect("json"),
        )
        .map_err(werr)?;
    }
    tb.into_inner().map_err(werr)?.flush().map_err(werr)?;
    Ok(())
}

/// Whether a descriptor media type is an index type.
pub fn is_index_type(mt: &str) -> bool {
    INDEX_TYPES.contains(&mt)
}

/// Unused-import guard for the plain-layer media type (kept for callers).
pub const PLAIN_LAYER: &str = MT_OCI_LAYER;
