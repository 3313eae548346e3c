//! Display names as other people chose them, made safe to show: control, bidi and invisible
//! characters removed, whitespace collapsed, length capped, our own "(you)" marker never
//! spoofed; plus the comparison key that finds two people with the same name and the short
//! fingerprint tag that tells them apart. A name proves nothing: only the room secret
//! (membership) and the fingerprints / security code (identity) do.

/// Most characters of a shown name (longer names end with "…").
pub const MAX_NAME_CHARS: usize = 32;
/// What marks our own tile; no remote name may contain it.
pub const SELF_MARKER: &str = "(you)";
/// Most combining marks kept in a row on one character (stops "Zalgo" text from covering
/// the tile; decomposed Vietnamese needs two).
const MAX_COMBINING_RUN: usize = 3;
/// Hex digits of a fingerprint in its tag: the first four bytes.
const TAG_HEX_DIGITS: usize = 8;

/// `raw` cleaned for display; empty when nothing visible is left (see [`name_or_guest`]).
pub fn sanitize_name(raw: &str) -> String {
    let mut cleaned = String::with_capacity(raw.len());
    let mut combining = 0;
    for c in raw.chars() {
        if c.is_whitespace() {
            cleaned.push(' ');
            combining = 0;
        } else if is_invisible(c) {
            // Dropped: zero-width joiners must not split a marker or hide a duplicate.
        } else if is_combining(c) {
            combining += 1;
            if combining <= MAX_COMBINING_RUN {
                cleaned.push(c);
            }
        } else {
            combining = 0;
            cleaned.push(c);
        }
    }
    let mut name = collapse_spaces(&cleaned);
    // Removing one marker can form another ("((you)you)"): repeat until none is left.
    loop {
        let without = collapse_spaces(&remove_self_markers(&name));
        if without == name {
            break;
        }
        name = without;
    }
    cap_length(&name)
}

/// The sanitized name, or "Guest <tag>" when it is missing or nothing visible is left.
pub fn name_or_guest(raw: Option<&str>, tag: &str) -> String {
    let name = raw.map(sanitize_name).unwrap_or_default();
    match (name.is_empty(), tag.is_empty()) {
        (false, _) => name,
        (true, true) => "Guest".to_owned(),
        (true, false) => format!("Guest {tag}"),
    }
}

/// The key under which two names count as the same: case-insensitive, with full-width forms
/// and common Cyrillic / Greek look-alikes of Latin letters folded.
pub fn name_key(name: &str) -> String {
    sanitize_name(name)
        .chars()
        .map(skeleton)
        .flat_map(char::to_lowercase)
        .collect()
}

/// For each name, whether another name in `names` has the same [`name_key`].
pub fn duplicate_flags(names: &[&str]) -> Vec<bool> {
    let keys: Vec<String> = names.iter().map(|n| name_key(n)).collect();
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            keys.iter()
                .enumerate()
                .any(|(j, other)| i != j && other == key)
        })
        .collect()
}

/// The first four bytes of a hex fingerprint as `"a1b2 c3d4"`; `None` when it has fewer.
pub fn fingerprint_tag(fingerprint: &str) -> Option<String> {
    let hex: String = fingerprint
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(TAG_HEX_DIGITS)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == TAG_HEX_DIGITS).then(|| format!("{} {}", &hex[..4], &hex[4..]))
}

/// Control characters, bidi embeddings / overrides / isolates / marks, zero-width and other
/// invisible format characters, variation selectors, tag characters and blank "letters".
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Generic combining marks (the ones stacked in "Zalgo" text).
fn is_combining(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{0483}'..='\u{0489}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// A look-alike folded to the ASCII character it imitates (full-width forms, Cyrillic and
/// Greek capitals and small letters that look Latin, other brackets); others unchanged.
fn skeleton(c: char) -> char {
    if ('\u{FF01}'..='\u{FF5E}').contains(&c) {
        return char::from_u32(c as u32 - 0xFEE0).unwrap_or(c);
    }
    match c {
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'Ζ' => 'Z',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'Ү' | 'Υ' => 'Y',
        'а' => 'a',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' | 'ı' => 'i',
        'ј' => 'j',
        'о' | 'ο' | 'օ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'υ' | 'ս' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' => 'x',
        'у' | 'ү' => 'y',
        '⁽' | '₍' | '﹙' | '❨' | '❪' => '(',
        '⁾' | '₎' | '﹚' | '❩' | '❫' => ')',
        other => other,
    }
}

/// `name` without any "(you)" (in any case, look-alike letters or spacing inside the
/// brackets) and without a trailing unclosed "(you".
fn remove_self_markers(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let folded: Vec<char> = chars
        .iter()
        .map(|&c| skeleton(c).to_ascii_lowercase())
        .collect();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < chars.len() {
        match marker_at(&folded, i) {
            Some(end) => i = end,
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// If a marker starts at `start`, the index just after it. At the end of the name the
/// closing bracket may be missing ("Ada (you" reads like our marker on a narrow tile).
fn marker_at(folded: &[char], start: usize) -> Option<usize> {
    if folded[start] != '(' {
        return None;
    }
    let skip_spaces = |mut i: usize| {
        while folded.get(i) == Some(&' ') {
            i += 1;
        }
        i
    };
    let mut i = skip_spaces(start + 1);
    for letter in ['y', 'o', 'u'] {
        if folded.get(i) != Some(&letter) {
            return None;
        }
        i += 1;
    }
    i = skip_spaces(i);
    match folded.get(i) {
        Some(')') => Some(i + 1),
        None => Some(i),
        Some(_) => None,
    }
}

/// Runs of spaces made one, and no space at either end.
fn collapse_spaces(text: &str) -> String {
    text.split(' ')
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most [`MAX_NAME_CHARS`] characters, the last one "…" when cut.
fn cap_length(name: &str) -> String {
    if name.chars().count() <= MAX_NAME_CHARS {
        return name.to_owned();
    }
    let kept: String = name.chars().take(MAX_NAME_CHARS - 1).collect();
    format!("{}…", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_invisible_characters_are_removed() {
        // Right-to-left override: "Alice" would be shown as "ecilA"-style spoofing text.
        assert_eq!(sanitize_name("\u{202E}Alice\u{202C}"), "Alice");
        assert_eq!(sanitize_name("\u{2067}Bob\u{2069}\u{200F}"), "Bob");
        assert_eq!(
            sanitize_name("Al\u{200B}i\u{200D}c\u{FEFF}e\u{061C}"),
            "Alice"
        );
        assert_eq!(sanitize_name("Eve\u{E0041}\u{FE0F}\u{2060}"), "Eve");
        // Letters of other scripts stay.
        assert_eq!(sanitize_name("Zoë Ådahl 李"), "Zoë Ådahl 李");
    }

    #[test]
    fn control_characters_and_odd_whitespace_are_removed_or_collapsed() {
        assert_eq!(sanitize_name("Ali\u{0007}ce\u{007F}"), "Alice");
        assert_eq!(
            sanitize_name("  Ada\n\tLovelace\u{3000}\u{00A0} "),
            "Ada Lovelace"
        );
        assert_eq!(sanitize_name("\u{1B}[31mRed"), "[31mRed");
    }

    #[test]
    fn the_self_marker_cannot_be_spoofed() {
        assert_eq!(sanitize_name("Ada (you)"), "Ada");
        assert_eq!(sanitize_name("Ada (YOU)"), "Ada");
        assert_eq!(sanitize_name("Ada ( you )"), "Ada");
        assert_eq!(sanitize_name("Ada （ｙｏｕ）"), "Ada");
        assert_eq!(
            sanitize_name("Ada (у\u{043E}u)"),
            "Ada",
            "Cyrillic look-alikes"
        );
        assert_eq!(
            sanitize_name("Ada (y\u{200B}ou)"),
            "Ada",
            "zero-width inside"
        );
        assert_eq!(
            sanitize_name("Ada ((you)you)"),
            "Ada",
            "a marker formed by removal"
        );
        assert_eq!(sanitize_name("Ada (you"), "Ada", "unclosed at the end");
        assert_eq!(sanitize_name("(you) Ada"), "Ada");
        assert_eq!(sanitize_name("Ada (young)"), "Ada (young)");
        for spoof in ["Ada (you)", "x(you)", "(you)(you)", "A (Yοu)"] {
            let shown = sanitize_name(spoof);
            assert!(
                !name_key(&shown).contains("(you"),
                "{spoof:?} became {shown:?}"
            );
        }
    }

    #[test]
    fn long_names_are_capped() {
        let long = "A".repeat(200);
        let shown = sanitize_name(&long);
        assert_eq!(shown.chars().count(), MAX_NAME_CHARS);
        assert!(shown.ends_with('…'));
        let exact = "B".repeat(MAX_NAME_CHARS);
        assert_eq!(sanitize_name(&exact), exact);
        // The cap counts characters, not bytes, and never splits one.
        let wide = "é".repeat(40);
        assert_eq!(sanitize_name(&wide).chars().count(), MAX_NAME_CHARS);
        // Stacked combining marks are limited.
        let zalgo = format!("Z{}", "\u{0301}".repeat(50));
        assert_eq!(sanitize_name(&zalgo).chars().count(), 1 + MAX_COMBINING_RUN);
    }

    #[test]
    fn empty_or_invisible_names_become_guest_with_the_tag() {
        assert_eq!(sanitize_name(""), "");
        assert_eq!(sanitize_name("\u{202E}\u{200B} \u{3164}\u{0000}"), "");
        assert_eq!(
            name_or_guest(Some(" \u{200B} "), "ab12 cd34"),
            "Guest ab12 cd34"
        );
        assert_eq!(name_or_guest(Some("(you)"), "ab12 cd34"), "Guest ab12 cd34");
        assert_eq!(name_or_guest(None, "#7"), "Guest #7");
        assert_eq!(name_or_guest(None, ""), "Guest");
        assert_eq!(name_or_guest(Some("Bob"), "ab12 cd34"), "Bob");
    }

    #[test]
    fn duplicates_are_found_case_insensitively_and_across_look_alikes() {
        assert_eq!(
            duplicate_flags(&["Ada", "Bob", "ada", "Carol"]),
            vec![true, false, true, false]
        );
        // Cyrillic "А", a trailing zero-width space, and full-width letters.
        assert_eq!(
            duplicate_flags(&["Alice", "\u{0410}lice", "Alice\u{200B}", "Ａｌｉｃｅ"]),
            vec![true, true, true, true]
        );
        assert_eq!(duplicate_flags(&["Ada", "Adam"]), vec![false, false]);
        assert!(duplicate_flags(&[]).is_empty());
    }

    #[test]
    fn fingerprint_tags_are_the_first_four_bytes() {
        assert_eq!(
            fingerprint_tag("A1B2C3D4e5f60718293a4b5c6d7e8f90").as_deref(),
            Some("a1b2 c3d4")
        );
        assert_eq!(
            fingerprint_tag("a1b2 c3d4 e5f6").as_deref(),
            Some("a1b2 c3d4")
        );
        assert_eq!(fingerprint_tag("a1b2c3"), None);
        assert_eq!(fingerprint_tag(""), None);
    }
}
