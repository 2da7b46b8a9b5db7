//! The cost of `Cron::next_after`, printed, never asserted: 100 schedules (typical ones and
//! sparse ones such as `0 0 29 2 *` and the never-firing `0 0 30 2 *`, which searches all five
//! years) in UTC and in Europe/Berlin, next fire from 1,000 start instants each.
//! Run with `cargo bench --bench cron`.

use std::hint::black_box;
use std::time::Instant;

use baa::common::cron::Cron;
use baa::common::tz::Tz;

const EXPRESSIONS: [&str; 10] = [
    "* * * * *",
    "*/15 * * * *",
    "0 9 * * MON-FRI",
    "30 2 * * *",
    "0 0 1,15 * FRI",
    "5/10 8-18 * JAN-MAR,OCT-DEC *",
    "0 12 */2 * 0,7",
    "59 23 31 12 *",
    "0 0 29 2 *",
    "0 0 30 2 *",
];

fn main() {
    let crons: Vec<Cron> = (0..100)
        .map(|i| Cron::parse(EXPRESSIONS[i % EXPRESSIONS.len()]).unwrap())
        .collect();
    let starts: Vec<i64> = (0..1_000)
        .map(|i| 1_767_225_600_000 + i * 7_919_993_000)
        .collect();
    for tz in [Tz::utc(), Tz::named("Europe/Berlin").unwrap()] {
        let started = Instant::now();
        let mut fired = 0;
        for cron in &crons {
            for &at in &starts {
                fired += usize::from(black_box(cron.next_after(black_box(at), &tz)).is_some());
            }
        }
        let took = started.elapsed();
        let calls = crons.len() * starts.len();
        println!(
            "next_after in {:<14} {calls} calls ({fired} fired): {:.2} µs per call, \
             100 schedules in {:.1} µs",
            tz.name(),
            took.as_secs_f64() * 1e6 / calls as f64,
            took.as_secs_f64() * 1e6 / starts.len() as f64
        );
        let never = Cron::parse("0 0 30 2 *").unwrap();
        let started = Instant::now();
        for &at in &starts[..100] {
            black_box(never.next_after(at, &tz));
        }
        println!(
            "  worst case `0 0 30 2 *` (five-year search, None): {:.1} µs per call",
            started.elapsed().as_secs_f64() * 1e6 / 100.0
        );
    }
}
