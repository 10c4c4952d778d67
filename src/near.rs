//! The known name a mistyped one most likely meant: the one place that tells a typo (a letter
//! or two off, or another letter case) from another word.

/// The name in `known` that `typed` is one case change or at most two edits away from (two
/// edits only in a name long enough that they are a slip, not another word: `FOO` is not
/// `LOG`); the closest when several are. Failing that, the one name `typed` is the first
/// `_`-separated words of (`roaming_pass` for `roaming_pass_eu`).
pub fn nearest<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = typed.chars().count();
    let known: Vec<&str> = known.into_iter().collect();
    let close = known
        .iter()
        .copied()
        .filter_map(|k| {
            let d = if k.eq_ignore_ascii_case(typed) {
                0
            } else {
                strsim::damerau_levenshtein(k, typed)
            };
            (d <= 2 && d * 3 <= len).then_some((d, k))
        })
        .min()
        .map(|(_, k)| k);
    close.or_else(|| {
        let mut longer = known.into_iter().filter(|k| {
            !typed.is_empty()
                && k.len() > typed.len()
                && k.as_bytes()[typed.len()] == b'_'
                && k.starts_with(typed)
        });
        let first = longer.next()?;
        longer.next().is_none().then_some(first)
    })
}

/// `: did you mean `x`?` after a message about `typed` when a known name is near it, else
/// nothing.
pub fn did_you_mean<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    nearest(typed, known).map_or_else(String::new, |k| format!(": did you mean `{k}`?"))
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn a_slip_or_another_case_finds_the_name_and_another_word_does_not() {
        let known = ["churn_score", "arpu_30d", "segment", "log"];
        assert_eq!(nearest("churn_scor", known), Some("churn_score"));
        assert_eq!(nearest("ARPU_30D", known), Some("arpu_30d"));
        assert_eq!(nearest("foo", known), None);
        assert_eq!(nearest("tenure_months", known), None);
        // The first words of one name only.
        let offers = ["roaming_pass_eu", "data_boost_5gb", "data_boost_10gb"];
        assert_eq!(nearest("roaming_pass", offers), Some("roaming_pass_eu"));
        assert_eq!(nearest("data_boost", offers), None, "two names start so");
        assert_eq!(nearest("roaming_p", offers), None, "not at a word's end");
    }
}
