//! The strings the hot path builds for every alarm: de-duplication keys (`sensor/S/kind`,
//! `fault/S`, `incident/I`) and numbered ids (`ALR-000042`).
//!
//! They are made by measuring the parts and copying them into one allocation of the exact
//! size. `format!` makes the same strings at about ten times the instructions (its
//! `Formatter` machinery, and a buffer that grows): 4 % of the engine bench's rules pass
//! before this module.
//!
//! Invariant: each function returns exactly what the `format!` in its doc comment would
//! (the tests hold them to it).

/// The parts joined, in one allocation: `parts.concat()` without the intermediate slice
/// of lengths (`format!("{a}{b}{c}")`).
pub fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `format!("{prefix}{n:0width$}")`: `n` in decimal, zero-padded to `width` digits.
pub fn numbered(prefix: &str, n: u64, width: usize) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut v = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    let mut s = String::with_capacity(prefix.len() + width.max(len));
    s.push_str(prefix);
    s.extend(std::iter::repeat_n('0', width.saturating_sub(len)));
    s.extend(digits[start..].iter().map(|&d| char::from(d)));
    s
}

/// The key of a sensor's alarm alert: `format!("sensor/{sensor}/{kind}")`.
pub fn sensor_key(sensor: &str, kind: &str) -> String {
    concat(&["sensor/", sensor, "/", kind])
}

/// The key of a sensor's fault alert: `format!("fault/{sensor}")`.
pub fn fault_key(sensor: &str) -> String {
    concat(&["fault/", sensor])
}

/// The key of an incident's alert: `format!("incident/{id}")`.
pub fn incident_key(id: &str) -> String {
    concat(&["incident/", id])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_read_as_the_formatted_ones() {
        assert_eq!(sensor_key("smoke-0042", "smoke"), "sensor/smoke-0042/smoke");
        assert_eq!(fault_key("gas-7"), "fault/gas-7");
        assert_eq!(incident_key("INC-000001"), "incident/INC-000001");
        assert_eq!(concat(&[]), "");
        assert_eq!(numbered("ALR-", 42, 6), "ALR-000042");
        assert_eq!(numbered("ALR-", 0, 6), "ALR-000000");
        assert_eq!(numbered("sil-", 7, 0), "sil-7");
        assert_eq!(numbered("ALR-", 12_345_678, 6), "ALR-12345678");
    }

    proptest! {
        #[test]
        fn numbered_equals_format(prefix in "[A-Za-z-]{0,6}", n in any::<u64>(), width in 0usize..25) {
            prop_assert_eq!(numbered(&prefix, n, width), format!("{prefix}{n:0width$}"));
        }

        #[test]
        fn concat_equals_format(a in ".{0,12}", b in ".{0,12}", c in ".{0,12}") {
            prop_assert_eq!(concat(&[&a, &b, &c]), format!("{a}{b}{c}"));
            let joined = concat(&["sensor/", &a, "/", &b]);
            prop_assert_eq!(joined.capacity(), joined.len());
        }
    }
}
