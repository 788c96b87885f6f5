//! Reconnection waits: exponential with full jitter ("AWS full jitter": a uniform wait between 0 and
//! the current cap, the cap doubling per failure up to `max`), so many sidecars losing the same
//! operator do not come back in lockstep. A handful of lines instead of a crate (`backoff` is
//! unmaintained); the random draw is passed in so the schedule is unit-tested.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The cap of the next wait: `min * 2^failures`, at most `max`.
    pub fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next wait for a random `unit` in `[0, 1)`: between `min` and the cap (never less than
    /// `min`, so a flapping server is not hammered); the cap doubles for the time after.
    pub fn next(&mut self, unit: f64) -> Duration {
        let cap = self.cap();
        self.failures = self.failures.saturating_add(1);
        let spread = cap.saturating_sub(self.min);
        self.min + spread.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A stream worked: start again from `min`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_double_up_to_max_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let caps: Vec<_> = (0..6)
            .map(|_| {
                let cap = b.cap();
                assert_eq!(b.clone().next(1.0), cap, "the top of the range is the cap");
                b.next(0.5);
                cap
            })
            .collect();
        assert_eq!(
            caps,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        b.reset();
        assert_eq!(b.cap(), ms(100));
    }

    #[test]
    fn waits_are_jittered_between_min_and_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(10_000));
        b.next(0.0);
        b.next(0.0);
        // Third failure: cap 400ms.
        assert_eq!(b.clone().next(0.0), ms(100));
        assert_eq!(b.clone().next(0.5), ms(250));
        assert_eq!(b.next(0.999_999).as_millis(), 399);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        for _ in 0..1000 {
            b.next(1.0);
        }
        assert_eq!(b.cap(), Duration::from_secs(30));
    }
}
