//! Converting the kernel's monotonic event times to wall-clock time.
//!
//! Programs stamp events with `bpf_ktime_get_ns` (CLOCK_MONOTONIC). The offset
//! to CLOCK_REALTIME is measured once at start, from the closest of several
//! back-to-back readings, so every `ts` in a file shares one conversion.

use nix::time::{clock_gettime, ClockId};

/// Offset between CLOCK_REALTIME and CLOCK_MONOTONIC, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
}

fn now_ns(clock: ClockId) -> i128 {
    match clock_gettime(clock) {
        Ok(ts) => ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128,
        Err(_) => 0,
    }
}

impl WallClock {
    /// Measures the offset now.
    pub fn measure() -> Self {
        let mut best: Option<(i128, i128)> = None; // (uncertainty, offset)
        for _ in 0..16 {
            let m0 = now_ns(ClockId::CLOCK_MONOTONIC);
            let real = now_ns(ClockId::CLOCK_REALTIME);
            let m1 = now_ns(ClockId::CLOCK_MONOTONIC);
            let width = m1 - m0;
            let offset = real - (m0 + width / 2);
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, offset));
            }
        }
        Self { offset_ns: best.map_or(0, |(_, o)| o) }
    }

    /// Wall-clock nanoseconds since the Unix epoch of a monotonic timestamp.
    pub fn to_unix_ns(self, monotonic_ns: u64) -> i64 {
        (monotonic_ns as i128 + self.offset_ns).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Wall-clock nanoseconds since the Unix epoch, now.
    pub fn now_unix_ns(self) -> i64 {
        self.to_unix_ns(now_ns(ClockId::CLOCK_MONOTONIC) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_monotonic_now_matches_the_system_clock() {
        let clock = WallClock::measure();
        let mono = now_ns(ClockId::CLOCK_MONOTONIC) as u64;
        let real =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as i64;
        let converted = clock.to_unix_ns(mono);
        assert!((converted - real).abs() < 5_000_000, "off by {} ns", converted - real);
    }
}
