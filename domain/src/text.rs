//! Text shown to the user (binding messages, `text.v1` texts, creditor names, client names):
//! what the app displays must be exactly what the merchant sent and what the user signs, so
//! characters that change how text looks without being seen are refused, never rewritten (the
//! digest stays over the bytes the merchant sent).

use unicode_general_category::{get_general_category, GeneralCategory};

/// Why a character may not be shown: it is invisible or reorders what is around it.
pub fn hidden_character(c: char) -> Option<&'static str> {
    match get_general_category(c) {
        GeneralCategory::Control => Some("a control character"),
        // Bidi overrides and isolates, zero-width spaces and joiners, the BOM, soft hyphen.
        GeneralCategory::Format => Some("a format character (bidi control or zero-width)"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line or paragraph separator")
        }
        GeneralCategory::Unassigned => Some("an unassigned code point"),
        GeneralCategory::PrivateUse => Some("a private-use code point"),
        GeneralCategory::Surrogate => Some("a surrogate code point"),
        _ => None,
    }
}

/// The first character of `text` that may not be shown, other than the ones `allowed`
/// (e.g. `\n` in a multi-line text), with its code point for the error message.
pub fn first_hidden(text: &str, allowed: &[char]) -> Option<String> {
    text.chars()
        .filter(|c| !allowed.contains(c))
        .find_map(|c| hidden_character(c).map(|why| format!("{why} (U+{:04X})", u32::from(c))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_in_any_script_passes() {
        for ok in [
            "Betal 1 234,50 kr til Ærlig Ålesund AS",
            "Scrooge McDuck",
            "東京の店",
            "مرحبا",
            "Ünïcödé – “quotes” 🙂",
        ] {
            assert_eq!(first_hidden(ok, &[]), None, "{ok}");
        }
        assert_eq!(first_hidden("two\nlines", &['\n']), None);
    }

    #[test]
    fn invisible_and_reordering_characters_are_found() {
        for (bad, code) in [
            ("pay \u{202E}00.9999", "U+202E"), // right-to-left override
            ("a\u{2066}b\u{2069}", "U+2066"),  // left-to-right isolate
            ("1\u{200B}00", "U+200B"),         // zero-width space
            ("x\u{200D}y", "U+200D"),          // zero-width joiner
            ("\u{FEFF}BOM", "U+FEFF"),
            ("line\u{2028}sep", "U+2028"),
            ("para\u{2029}sep", "U+2029"),
            ("bell\u{7}", "U+0007"),
            ("two\nlines", "U+000A"),
            ("unassigned \u{0378}", "U+0378"),
            ("private \u{E000}", "U+E000"),
        ] {
            let found = first_hidden(bad, &[]).unwrap_or_default();
            assert!(found.contains(code), "{bad:?}: {found}");
        }
    }
}
