//! The one Case Comment splitter: `CaseComment.CommentBody` holds at most 4,000 bytes, so a longer
//! text becomes several comments, cut on UTF-8 boundaries (preferring a line break or a space near
//! the end), each starting with `[PagerDuty]` (loop prevention) and, when there are several,
//! numbered: `[PagerDuty] (i/n) `.
//!
//! Three callers, one cut:
//! - the rules plan [`planned_parts`], leaving room for the reference the executor adds, so that
//!   a planned part is never cut again;
//! - the executor writes [`referenced_parts`]: each part ends with its own `ref:<12 hex>` token
//!   ([`part_reference`]), by which a later attempt finds the parts whose answer was lost;
//! - the Composite builder writes [`chunks`] (no reference) for [`super::Write::AddCaseComment`].

use crate::loop_guard::{PAGERDUTY_MARKER, PAGERDUTY_PREFIX};

/// `CaseComment.CommentBody` holds at most this many bytes.
pub const MAX_BYTES: usize = 4000;

/// The room a part's reference takes: `"\n\nref:" + 12 hex + "-" + the part number`.
const REFERENCE_ROOM: usize = 24;

/// The room a numbered part's start takes: `"[PagerDuty] (999/999) "`.
const NUMBERED_PREFIX_ROOM: usize = 32;

/// Splits a Case Comment into marked bodies of at most [`MAX_BYTES`] bytes. A text already
/// starting with the marker is not marked twice.
pub fn chunks(text: &str) -> Vec<String> {
    split(text, 0, |_, _| String::new())
}

/// As [`chunks`], each part ending with its own reference token (see [`part_reference`]) on a line
/// of its own, so that a later attempt can tell which parts of a comment whose answer was lost
/// were written. `reference` is `ref:` and 12 hex digits.
pub fn referenced_parts(text: &str, reference: &str) -> Vec<String> {
    split(text, REFERENCE_ROOM, |i, total| format!("\n\n{}", part_reference(reference, i, total)))
}

/// The parts the rules plan for `marked` (the marker, then the rendered text): as [`chunks`], but
/// small enough that [`referenced_parts`] keeps each one whole. `marked` itself, unchanged, when
/// it is already one part.
pub fn planned_parts(marked: String) -> Vec<String> {
    let text = marked.strip_prefix(PAGERDUTY_PREFIX).unwrap_or(&marked);
    if unmarked(text) == text && fits_whole(text, REFERENCE_ROOM) {
        return vec![marked];
    }
    split(text, REFERENCE_ROOM, |_, _| String::new())
}

/// The token part `index` (from 0) of `total` carries: the reference itself for a single part,
/// `ref:<hex>-<n>` for the n-th of several.
pub fn part_reference(reference: &str, index: usize, total: usize) -> String {
    if total == 1 { reference.to_string() } else { format!("{reference}-{}", index + 1) }
}

/// `text` without a leading marker (and the white space after it).
fn unmarked(text: &str) -> &str {
    text.strip_prefix(PAGERDUTY_MARKER).map(str::trim_start).unwrap_or(text)
}

/// True when `[PagerDuty] {text}` and `suffix_room` bytes fit in one comment.
fn fits_whole(text: &str, suffix_room: usize) -> bool {
    PAGERDUTY_PREFIX.len() + text.len() + suffix_room <= MAX_BYTES
}

fn split(text: &str, suffix_room: usize, suffix: impl Fn(usize, usize) -> String) -> Vec<String> {
    let text = unmarked(text);
    if fits_whole(text, suffix_room) {
        return vec![format!("{PAGERDUTY_PREFIX}{text}{}", suffix(0, 1))];
    }
    let budget = MAX_BYTES - NUMBERED_PREFIX_ROOM - suffix_room;
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = text;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        // Prefer a natural break in the last fifth of the chunk.
        let window = &rest[..cut];
        if let Some(pos) = window.rfind(['\n', ' '])
            && pos >= budget * 4 / 5
        {
            cut = pos + 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    parts.push(rest);
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| format!("{PAGERDUTY_PREFIX}({}/{total}) {part}{}", i + 1, suffix(i, total)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_comments_split_under_4000_bytes_on_char_boundaries_and_all_carry_the_marker() {
        // 3-byte characters so that a naive byte cut would land inside one.
        let text = "€".repeat(3000);
        let chunks = chunks(&text);
        assert_eq!(chunks.len(), 3);
        let mut rebuilt = String::new();
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.len() <= MAX_BYTES, "{}", c.len());
            let prefix = format!("[PagerDuty] ({}/3) ", i + 1);
            assert!(c.starts_with(&prefix));
            rebuilt.push_str(&c[prefix.len()..]);
        }
        assert_eq!(rebuilt, text);
    }

    #[test]
    fn a_comment_that_fits_is_one_chunk_and_the_marker_is_not_doubled() {
        let chunks = chunks("[PagerDuty] already marked");
        assert_eq!(chunks, vec!["[PagerDuty] already marked".to_string()]);
        assert_eq!(super::chunks("hello"), vec!["[PagerDuty] hello".to_string()]);
        let text = "a".repeat(MAX_BYTES - PAGERDUTY_PREFIX.len());
        assert_eq!(super::chunks(&text).len(), 1);
        assert_eq!(super::chunks(&format!("{text}a")).len(), 2);
    }

    #[test]
    fn every_part_of_a_referenced_comment_carries_its_own_token_and_fits() {
        let one = referenced_parts("Rolled back", "ref:0123456789ab");
        assert_eq!(one, vec!["[PagerDuty] Rolled back\n\nref:0123456789ab".to_string()]);
        let text = "€".repeat(2000); // 6000 bytes
        let parts = referenced_parts(&text, "ref:0123456789ab");
        assert_eq!(parts.len(), 2);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= MAX_BYTES, "{}", p.len());
            assert!(p.starts_with(&format!("[PagerDuty] ({}/2) ", i + 1)), "the marker stays first");
            assert!(p.ends_with(&format!("\n\nref:0123456789ab-{}", i + 1)), "{}", &p[p.len() - 30..]);
        }
    }

    #[test]
    fn planned_parts_are_never_cut_again_when_written_with_their_reference() {
        let marked = format!("{PAGERDUTY_PREFIX}{}", "ü".repeat(5000)); // 10 000 bytes
        let parts = planned_parts(marked);
        assert_eq!(parts.len(), 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.starts_with(&format!("[PagerDuty] ({}/3) ", i + 1)));
            let written = referenced_parts(p, "ref:0123456789ab");
            assert_eq!(written, vec![format!("{p}\n\nref:0123456789ab")], "one comment, as planned");
            assert!(written[0].len() <= MAX_BYTES);
        }
        assert_eq!(planned_parts("[PagerDuty] hello".into()), vec!["[PagerDuty] hello".to_string()]);
        assert_eq!(
            planned_parts("[PagerDuty] [PagerDuty] hello".into()),
            vec!["[PagerDuty] hello".to_string()],
            "a text that starts with the marker is not marked twice"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_comment_splits_into_marked_parts_that_fit_and_reassemble(text in "\\PC{0,9000}") {
            let chunks = chunks(&text);
            let mut rebuilt = String::new();
            let total = chunks.len();
            for (i, c) in chunks.iter().enumerate() {
                proptest::prop_assert!(c.len() <= MAX_BYTES);
                let prefix = if total == 1 {
                    format!("{PAGERDUTY_MARKER} ")
                } else {
                    format!("{PAGERDUTY_MARKER} ({}/{total}) ", i + 1)
                };
                proptest::prop_assert!(c.starts_with(&prefix));
                rebuilt.push_str(&c[prefix.len()..]);
            }
            proptest::prop_assert_eq!(rebuilt, unmarked(&text));
        }
    }
}
