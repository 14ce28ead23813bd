//! Layer apply/diff side by side with GNU tar, in one run, printing ratios.
//!
//! `cargo bench -p keel-oci --bench layers` (as root, like the tests).
//! `KEEL_BENCH_MB` sets the tree size (default 500 MB: 20 files of 20 MB and
//! 20 000 files of 4 KiB in 20 dirs). Each side runs `KEEL_BENCH_RUNS` times
//! (default 3), alternating, and the medians are compared.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keel_oci::layer::{WhiteoutMode, apply_layer, diff_to_layer};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn build_tree(root: &Path, total_mb: u64) {
    let big_files = 20u64;
    let small_total = total_mb * 1024 * 1024 / 5; // a fifth in small files
    let small_count = (small_total / 4096).max(1);
    let big_size = (total_mb * 1024 * 1024 - small_total) / big_files;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut fill = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            // xorshift: incompressible-ish, cheap.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let b = seed.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    };
    fs::create_dir_all(root.join("big")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..big_files {
        let mut f = BufWriter::new(fs::File::create(root.join(format!("big/{i}"))).unwrap());
        let mut left = big_size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            fill(&mut buf[..n]);
            f.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    }
    let mut small = vec![0u8; 4096];
    for i in 0..small_count {
        let dir = root.join(format!("d{}", i % 20));
        if i < 20 {
            fs::create_dir_all(&dir).unwrap();
        }
        fill(&mut small);
        fs::write(dir.join(format!("f{i}")), &small).unwrap();
    }
    println!(
        "tree: {big_files} x {} MB + {small_count} x 4 KiB",
        big_size >> 20
    );
}

fn time(f: impl FnOnce()) -> Duration {
    // Start each side with no dirty pages of the other's making.
    rustix::fs::sync();
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn drop_dir(p: &Path) {
    if p.exists() {
        fs::remove_dir_all(p).unwrap();
    }
}

fn run(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let mb = env_u64("KEEL_BENCH_MB", 500);
    let runs = env_u64("KEEL_BENCH_RUNS", 3);
    let base = std::env::var("KEEL_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let work = tempfile::Builder::new()
        .prefix("keel-bench-layers-")
        .tempdir_in(base)
        .unwrap();
    let w = work.path();
    let src = w.join("src");
    build_tree(&src, mb);
    let (ours_tar, gnu_tar) = (w.join("ours.tar"), w.join("gnu.tar"));

    let (mut d_ours, mut d_gnu, mut a_ours, mut a_gnu) = (vec![], vec![], vec![], vec![]);
    let (x_ours, x_gnu) = (w.join("x-ours"), w.join("x-gnu"));
    for run_no in 0..runs {
        // Alternate who goes first, so neither always pays for the other's
        // writeback.
        let gnu_first = run_no % 2 == 0;
        for side in [gnu_first, !gnu_first] {
            if side {
                d_gnu.push(time(|| {
                    run(Command::new("tar")
                        .args(["--xattrs", "--numeric-owner", "--format=pax", "-cf"])
                        .arg(&gnu_tar)
                        .arg("-C")
                        .arg(&src)
                        .arg("."));
                }));
            } else {
                d_ours.push(time(|| {
                    let f = BufWriter::with_capacity(1 << 20, fs::File::create(&ours_tar).unwrap());
                    diff_to_layer(&src, f).unwrap();
                }));
            }
        }
        for side in [gnu_first, !gnu_first] {
            if side {
                drop_dir(&x_gnu);
                fs::create_dir(&x_gnu).unwrap();
                a_gnu.push(time(|| {
                    run(Command::new("tar")
                        .args(["--xattrs", "--numeric-owner", "-xpf"])
                        .arg(&gnu_tar)
                        .arg("-C")
                        .arg(&x_gnu));
                }));
            } else {
                drop_dir(&x_ours);
                fs::create_dir(&x_ours).unwrap();
                a_ours.push(time(|| {
                    let f = fs::File::open(&ours_tar).unwrap();
                    apply_layer(f, &x_ours, WhiteoutMode::Flat).unwrap();
                }));
            }
        }
        drop_dir(&x_ours);
        drop_dir(&x_gnu);
    }
    let report = |what: &str, ours: Vec<Duration>, gnu: Vec<Duration>| {
        let (o, g) = (median(ours), median(gnu));
        println!(
            "{what:<28} keel {:>8.3}s   GNU tar {:>8.3}s   ratio keel/tar {:.2}",
            o.as_secs_f64(),
            g.as_secs_f64(),
            o.as_secs_f64() / g.as_secs_f64()
        );
    };
    report("diff (dir -> tar)", d_ours, d_gnu);
    report("apply (tar -> dir)", a_ours, a_gnu);
}
