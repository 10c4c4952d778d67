//! The known name a mistyped one most likely meant: the one place that tells a typo (a letter
//! or two off, or another letter case) from another word.

/// The name in `known` that `typed` is one case change or at most two edits away from (two
/// edits only in a name long enough that they are a slip, not another word: `FOO` is not
/// `LOG`); the closest when several are.
pub fn nearest<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = typed.chars().count();
    known
        .into_iter()
        .filter_map(|k| {
            let d = if k.eq_ignore_ascii_case(typed) {
                0
            } else {
                strsim::damerau_levenshtein(k, typed)
            };
            (d <= 2 && d * 3 <= len).then_some((d, k))
        })
        .min()
        .map(|(_, k)| k)
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
    }
}
