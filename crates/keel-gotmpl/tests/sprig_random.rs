//! Regression test for issue 14, defect 4: sprig's random functions drew from
//! a xorshift generator seeded with the clock (`SystemTime` nanoseconds, once
//! per thread), so a chart's generated password was a function of when it was
//! rendered. An attacker who knows the render time to a millisecond tries
//! every seed in that window. This test is that attacker: it renders in a
//! fresh thread, brackets the render with the clock, replays the old
//! generator for every nanosecond seed in the bracket, and requires that none
//! reproduces the output. The OS CSPRNG (what sprig's crypto/rand reads)
//! passes; the old generator fails on the first try.

use std::time::{SystemTime, UNIX_EPOCH};

use keel_gotmpl::{Templates, Value};

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The generator keel used before: xorshift64 seeded with `nanos | 1`.
struct OldGen(u64);

impl OldGen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn render(t: &str) -> String {
    let mut set = Templates::new();
    set.parse("t", t).unwrap();
    set.execute("t", &Value::Nil).unwrap()
}

/// Renders `tmpl` in a new thread (the old generator seeded per thread on
/// first use) and returns the output with the clock window around it.
fn render_fresh(tmpl: &'static str) -> (String, u64, u64) {
    let t0 = nanos();
    let out = std::thread::spawn(move || render(tmpl)).join().unwrap();
    let t1 = nanos();
    (out, t0, t1)
}

#[test]
fn passwords_cannot_be_replayed_from_the_render_time() {
    let mut checked = 0;
    for _ in 0..50 {
        let (pw, t0, t1) = render_fresh("{{ randAlphaNum 24 }}");
        assert_eq!(pw.len(), 24);
        assert!(pw.bytes().all(|b| ALNUM.contains(&b)), "{pw}");
        // keep the search to a few million steps; a loaded machine may need a retry
        if t1 - t0 > 2_000_000 {
            continue;
        }
        checked += 1;
        for seed in t0..=t1 {
            let mut g = OldGen(seed | 1);
            let guess: String = (0..24)
                .map(|_| ALNUM[(g.next() % ALNUM.len() as u64) as usize] as char)
                .collect();
            assert_ne!(
                guess, pw,
                "randAlphaNum output replayed from clock seed {seed}: a time-seeded generator"
            );
        }
        if checked == 5 {
            break;
        }
    }
    assert_eq!(
        checked, 5,
        "renders took too long to bracket with the clock"
    );
}

#[test]
fn random_bytes_and_uuids_cannot_be_replayed_from_the_render_time() {
    let (out, t0, t1) = render_fresh("{{ randBytes 16 }}|{{ uuidv4 }}");
    let (b64, uuid) = out.split_once('|').unwrap();
    assert_eq!(b64.len(), 24, "{b64}");
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
    assert!(
        matches!(&uuid[19..20], "8" | "9" | "a" | "b"),
        "variant: {uuid}"
    );
    for seed in t0..=t1.min(t0 + 20_000_000) {
        let mut g = OldGen(seed | 1);
        let bytes: Vec<u8> = (0..16).map(|_| g.next() as u8).collect();
        assert_ne!(
            keel_gotmpl::b64enc(&bytes),
            b64,
            "randBytes replayed from clock seed {seed}"
        );
    }
}

#[test]
fn random_strings_use_the_whole_alphabet_uniformly() {
    // 62 symbols, 62,000 draws: each symbol about 1,000 times; a biased or
    // truncated alphabet (the old `% len` on a skewed source, a missing
    // character) shows up far outside these bounds
    let out = render("{{ randAlphaNum 62000 }}");
    let mut counts = [0u32; 256];
    for b in out.bytes() {
        counts[b as usize] += 1;
    }
    for &c in ALNUM {
        let n = counts[c as usize];
        assert!((800..1200).contains(&n), "{} drawn {n} times", c as char);
    }
    // randAscii includes the space, as goutils' CryptoRandomAscii (32..=126)
    let out = render("{{ randAscii 20000 }}");
    assert!(out.contains(' '), "randAscii never drew a space");
    assert!(out.bytes().all(|b| (32..=126).contains(&b)));
}
