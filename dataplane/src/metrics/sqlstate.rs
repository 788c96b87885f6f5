//! SQLSTATE classes as a bounded label: the two-character classes PostgreSQL defines, anything else
//! (a malformed or future code) counted as `other`, so a misbehaving server cannot create series.

/// Every class in PostgreSQL's Appendix A, in its order.
pub const CLASSES: [&str; 43] = [
    "00", "01", "02", "03", "08", "09", "0A", "0B", "0F", "0L", "0P", "0Z", "20", "21", "22", "23",
    "24", "25", "26", "27", "28", "2B", "2D", "2F", "34", "38", "39", "3B", "3D", "3F", "40", "42",
    "44", "53", "54", "55", "57", "58", "72", "F0", "HV", "P0", "XX",
];

/// Label value for the class of each index of [`class_index`]: the classes, then `other`.
pub fn label(index: usize) -> &'static str {
    CLASSES.get(index).copied().unwrap_or("other")
}

/// Index of `code`'s class in [`CLASSES`], or `CLASSES.len()` for `other`.
pub fn class_index(code: &str) -> usize {
    code.get(..2)
        .and_then(|class| CLASSES.iter().position(|c| *c == class))
        .unwrap_or(CLASSES.len())
}

/// The SQLSTATE (`C` field) of an ErrorResponse body, without copying the other fields.
pub fn code_of(body: &[u8]) -> Option<&str> {
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            return None;
        }
        let end = tail.iter().position(|b| *b == 0)?;
        if kind == b'C' {
            return std::str::from_utf8(&tail[..end]).ok();
        }
        rest = &tail[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded() {
        assert_eq!(label(class_index("42P01")), "42");
        assert_eq!(label(class_index("57P01")), "57");
        assert_eq!(label(class_index("ZZ000")), "other");
        assert_eq!(label(class_index("4")), "other");
        assert_eq!(label(class_index("é")), "other");
    }

    #[test]
    fn code_is_read_from_the_fields() {
        assert_eq!(code_of(b"SERROR\0C42P01\0Mno table\0\0"), Some("42P01"));
        assert_eq!(code_of(b"SERROR\0Mno code\0\0"), None);
        assert_eq!(code_of(b"SERR"), None);
    }
}
