//! Throughput of the ISO 8583 codec on one thread: pack and unpack of a
//! typical 0200 with 20 fields in `ascii_1987`. Run with
//! `cargo bench -p posgate-partners --bench iso8583`; the target is at least
//! 1,000,000 pack+unpack per second on one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use posgate_partners::iso8583::{Dialect, Message, Mti, ascii_1987, bcd_binary_1987};

/// Iterations per measurement: long enough (tens of ms) to swamp timer
/// resolution, short enough that some rounds run undisturbed on a machine
/// shared with compilers.
const ITERATIONS: u32 = 100_000;
/// Measurements per figure; the fastest is reported, as the least disturbed.
const ROUNDS: u32 = 30;

fn sample_0200() -> Message {
    let mut m = Message::new(Mti::new(*b"0200"));
    m.set_str(2, "4761739001010119")
        .set_str(3, "000000")
        .set_str(4, "000000012500")
        .set_str(7, "1123145500")
        .set_str(11, "000123")
        .set_str(12, "225500")
        .set_str(13, "1123")
        .set_str(14, "2512")
        .set_str(22, "051")
        .set_str(25, "00")
        .set_str(32, "12345678901")
        .set_str(35, "4761739001010119=25122011143804400000")
        .set_str(37, "532714000123")
        .set_str(41, "TERM0001")
        .set_str(42, "MERCHANT0000001")
        .set_str(48, "PTS+000000120BAL000000004200")
        .set_str(49, "901")
        .set(52, vec![0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0])
        .set(55, vec![0x9F, 0x26, 0x08, 1, 2, 3, 4, 5, 6, 7, 8])
        .set(64, vec![0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18]);
    m
}

/// Fastest of `ROUNDS` runs of `ITERATIONS` calls of `step`.
fn measure(mut step: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                step();
            }
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn nanos_per(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e9 / f64::from(ITERATIONS)
}

fn bench(dialect: &Dialect) {
    let message = sample_0200();
    let packed = dialect.pack(&message).expect("the sample packs");
    assert_eq!(dialect.unpack(&packed).expect("and unpacks"), message);
    let mut buffer = Vec::with_capacity(512);

    let pack = measure(|| {
        buffer.clear();
        dialect
            .pack_into(black_box(&message), &mut buffer)
            .expect("packs");
        black_box(&buffer);
    });
    let unpack = measure(|| {
        black_box(dialect.unpack(black_box(&packed)).expect("unpacks"));
    });
    let both = measure(|| {
        buffer.clear();
        dialect
            .pack_into(black_box(&message), &mut buffer)
            .expect("packs");
        black_box(dialect.unpack(&buffer).expect("unpacks"));
    });
    println!(
        "{:<16} {} fields, {} bytes: pack {:.0} ns, unpack {:.0} ns, pack+unpack {:.0} ns = {:.0} messages/s",
        dialect.name(),
        message.len(),
        packed.len(),
        nanos_per(pack),
        nanos_per(unpack),
        nanos_per(both),
        f64::from(ITERATIONS) / both.as_secs_f64(),
    );
}

fn main() {
    for dialect in [ascii_1987(), bcd_binary_1987()] {
        bench(dialect);
    }
}
