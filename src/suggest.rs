//! "Did you mean ...?": the closest known name by edit distance.

/// The candidate closest to `word`, if it is close enough to be a typo
/// (at most a third of the word's characters off, and at least 2 allowed).
/// Ties go to the alphabetically first candidate, so the hint is stable.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// `"; did you mean `{prefix}{best}`?"` for the closest candidate, or `""`
/// when none is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    prefix: &str,
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    closest(word, candidates)
        .map(|c| format!("; did you mean `{prefix}{c}`?"))
        .unwrap_or_default()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos_only() {
        assert_eq!(
            super::closest("for-updte", ["naive", "for-update"]),
            Some("for-update")
        );
        assert_eq!(super::closest("zzzzzz", ["naive", "for-update"]), None);
        assert_eq!(super::closest("x", ["abcdef"]), None);
        assert_eq!(super::levenshtein("kitten", "sitting"), 3);
        assert_eq!(super::levenshtein("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            super::did_you_mean("\\", "sleeep", ["set", "sleep"]),
            "; did you mean `\\sleep`?"
        );
        assert_eq!(super::did_you_mean("", "x", ["abcdef"]), "");
    }
}
