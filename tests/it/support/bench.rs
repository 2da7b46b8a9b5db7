//! Printing benchmark figures (for the benches in `benches/`, which include this support
//! module): numbers, never a pass or a fail.

use std::time::Instant;

use super::http::Client;

/// Milliseconds since `t0`.
pub fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

/// Prints `label: n=… p50=… p90=… p99=… max=…` (milliseconds) for the samples.
pub fn stats(label: &str, mut v: Vec<f64>) {
    if v.is_empty() {
        println!("{label}: no samples");
        return;
    }
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}: n={} p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        v.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        v[v.len() - 1]
    );
}

/// Runs the benches whose name contains the first non-flag argument (all without one;
/// `cargo bench` itself passes `--bench`).
pub fn run(benches: &[(&str, fn())]) {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (name, bench) in benches {
        if filter.as_deref().is_none_or(|f| name.contains(f)) {
            println!("== {name}");
            bench();
        }
    }
}

/// Milliseconds for one GET answered 200.
pub fn timed_get(client: &Client, url: &str) -> f64 {
    let t0 = Instant::now();
    let r = client.get(url);
    let took = ms_since(t0);
    assert_eq!(r.status, 200, "{url}: {}", r.body);
    took
}
