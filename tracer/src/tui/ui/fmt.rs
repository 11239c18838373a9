//! Number formatting for narrow columns.

/// 1234 -> "1.2k", 5_600_000 -> "5.6M".
pub fn count(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")];
    for (div, unit) in UNITS {
        if n >= div {
            let v = n as f64 / div as f64;
            return if v >= 100.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    n.to_string()
}

/// Nanoseconds in the unit that keeps 3 significant digits (at most 6 characters).
pub fn ns(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "µs")];
    for (div, unit) in UNITS {
        if n >= div {
            let v = n as f64 / div as f64;
            return if v >= 100.0 {
                format!("{v:.0}{unit}")
            } else if v >= 10.0 {
                format!("{v:.1}{unit}")
            } else {
                format!("{v:.2}{unit}")
            };
        }
    }
    format!("{n}ns")
}

/// A power of two of nanoseconds in at most 4 characters ("512n", "16u", "2m").
pub fn pow2_label(exp: usize) -> String {
    let v = 1u64 << exp.min(63);
    for (div, unit) in [(1_000_000_000u64, "s"), (1_000_000, "m"), (1_000, "u")] {
        if v >= div {
            return format!("{}{unit}", v / div);
        }
    }
    format!("{v}n")
}

pub fn uptime(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234), "1.2k");
        assert_eq!(count(123_456_789), "123M");
        assert_eq!(ns(850), "850ns");
        assert_eq!(ns(1_500), "1.50µs");
        assert_eq!(ns(25_000_000), "25.0ms");
        assert_eq!(pow2_label(9), "512n");
        assert_eq!(pow2_label(14), "16u");
        assert_eq!(uptime(3_725), "1:02:05");
    }
}
