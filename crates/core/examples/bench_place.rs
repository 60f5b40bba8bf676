//! How long one placement takes: [`scoria_core::scheduler::decide`] with
//! every filter and the three weighers on, among 10, 100, 1000 and 10000
//! candidates (varied zones, capabilities, capacities; a few disabled), for a
//! request with a zone and two extra specs. Prints the median and the 90th
//! percentile of many runs per size; asserts nothing.
//!
//! ```text
//! cargo run --release -p scoria-core --example bench_place -- [runs]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use scoria_core::scheduler::{Candidate, Request, SchedulerConfig, Weigher, decide};

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let caps: BTreeMap<String, String> = [
                ("volume_backend_name", format!("b{i}")),
                ("vendor_name", "Scoria".to_string()),
                ("storage_protocol", "nbd".to_string()),
                ("thin_provisioning_support", "True".to_string()),
                (
                    "multiattach",
                    if i % 3 == 0 { "False" } else { "True" }.into(),
                ),
                ("tier", if i % 2 == 0 { "ssd" } else { "hdd" }.into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let total = 1000.0 + (i % 97) as f64 * 10.0;
            Candidate {
                name: format!("b{i:05}"),
                availability_zone: format!("az{}", i % 4),
                total_gib: total,
                free_gib: total * ((i % 10) as f64 / 10.0),
                provisioned_gib: (i % 13) as f64 * 100.0,
                allocated_gib: (i % 13) as f64 * 100.0,
                volume_count: (i % 17) as u64,
                thin: i % 5 != 0,
                max_over_subscription_ratio: 2.0 + (i % 3) as f64,
                reserved_percentage: (i % 3) as u8 * 5,
                capabilities: caps,
                enabled: i % 50 != 7,
            }
        })
        .collect()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let cfg = SchedulerConfig {
        weighers: Weigher::ALL.to_vec(),
        ..SchedulerConfig::default()
    };
    let req = Request {
        size_gib: 100,
        availability_zone: Some("az2".into()),
        extra_specs: [
            (
                "capabilities:tier".to_string(),
                "<or> ssd <or> nvme".to_string(),
            ),
            ("multiattach".to_string(), "<is> True".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    println!("candidates  runs   median      p90  chosen");
    for n in [10, 100, 1000, 10000] {
        let cands = candidates(n);
        let runs = (runs * 100 / n.max(100)).max(20);
        let mut times: Vec<Duration> = Vec::with_capacity(runs);
        let mut chosen = None;
        for _ in 0..runs {
            let t = Instant::now();
            let d = decide(&cfg, &req, &cands);
            times.push(t.elapsed());
            chosen = d.chosen;
        }
        times.sort();
        let median = times[times.len() / 2];
        let p90 = times[times.len() * 9 / 10];
        println!(
            "{n:>10} {runs:>5} {:>8.1} µs {:>6.1} µs  {}",
            median.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6,
            chosen.as_deref().unwrap_or("-")
        );
    }
}
