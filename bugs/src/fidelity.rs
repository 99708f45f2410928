//! What a reader needs to check a port against upstream (`../shared/FIDELITY.md`): the
//! walkthrough's `## Mapping to upstream` section, read as data, and the kernel's `Variant`
//! switches it must account for.
//!
//! The section has four parts, in this order, each a `###` heading:
//!
//! - `### Code`: upstream `file · function` at the buggy commit → the kernel's item;
//! - `### Goroutines`: each goroutine of the kernel → the upstream `go` statement it stands for;
//! - `### The fix`: each hunk of the upstream fix → the kernel's switch, cited as
//!   `<id>.rs:<line>`, or "not modelled" and why;
//! - `### Deviations`: a list, one departure from upstream per item (`None.` when there is none).
//!
//! A switch is a line of the kernel that asks which variant runs (`variant.fixed()`,
//! `Variant::Fixed`, `Variant::Buggy`, `variant ==`): `git grep` finds every fix that way, and
//! every one of them must be cited under `### The fix`, so that no change to upstream's code
//! hides from the reader. A citation that no longer points at a switch is stale.

/// The section's heading, exactly.
pub const HEADING: &str = "## Mapping to upstream";

/// Its parts, in order.
pub const PARTS: [&str; 4] = [
    "### Code",
    "### Goroutines",
    "### The fix",
    "### Deviations",
];

/// A walkthrough's `## Mapping to upstream` section, split into its parts.
#[derive(Debug)]
pub struct Mapping<'a> {
    /// Each part's text (without its heading), in the order of [`PARTS`].
    pub parts: [&'a str; 4],
}

impl<'a> Mapping<'a> {
    /// Reads the section out of a walkthrough, or says what is wrong with it.
    pub fn parse(walkthrough: &'a str) -> Result<Mapping<'a>, String> {
        let starts: Vec<usize> = line_starts(walkthrough, HEADING).collect();
        let start = match starts.as_slice() {
            [] => return Err(format!("no `{HEADING}` section")),
            [one] => *one + HEADING.len(),
            _ => return Err(format!("`{HEADING}` appears {} times", starts.len())),
        };
        let rest = &walkthrough[start..];
        // The section ends at the next `## ` heading (not `### `).
        let end = line_starts(rest, "## ")
            .find(|&i| !rest[i..].starts_with("###"))
            .unwrap_or(rest.len());
        let section = &rest[..end];
        let mut at = Vec::with_capacity(PARTS.len());
        for part in PARTS {
            let found: Vec<usize> = line_starts(section, part)
                .filter(|&i| section[i + part.len()..].starts_with(['\n', '\r']))
                .collect();
            match found.as_slice() {
                [one] => at.push(*one),
                [] => return Err(format!("`{HEADING}` has no `{part}` part")),
                _ => return Err(format!("`{HEADING}` has `{part}` more than once")),
            }
        }
        if at.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "the parts of `{HEADING}` are not in the order {PARTS:?}"
            ));
        }
        let mut parts = [""; 4];
        for (k, part) in PARTS.iter().enumerate() {
            let from = at[k] + part.len();
            let to = at.get(k + 1).copied().unwrap_or(section.len());
            parts[k] = section[from..to].trim();
        }
        for (part, text) in PARTS.iter().zip(parts) {
            if text.is_empty() {
                return Err(format!("`{part}` is empty"));
            }
        }
        Ok(Mapping { parts })
    }

    pub fn code(&self) -> &'a str {
        self.parts[0]
    }

    pub fn goroutines(&self) -> &'a str {
        self.parts[1]
    }

    pub fn fix(&self) -> &'a str {
        self.parts[2]
    }

    /// The deviations, one per list item (none for `None.`).
    pub fn deviations(&self) -> Vec<&'a str> {
        self.parts[3]
            .lines()
            .filter_map(|l| l.strip_prefix("- "))
            .map(str::trim)
            .collect()
    }

    /// The kernel lines `### The fix` cites as `<file>:<line>`, in order.
    pub fn cited_lines(&self, file: &str) -> Vec<usize> {
        let needle = format!("{file}:");
        let text = self.fix();
        let mut lines = Vec::new();
        let mut from = 0;
        while let Some(i) = text[from..].find(&needle) {
            let digits: String = text[from + i + needle.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                lines.push(n);
            }
            from += i + needle.len();
        }
        lines
    }
}

/// Byte offsets of the lines of `text` that start with `prefix`.
fn line_starts<'t>(text: &'t str, prefix: &'t str) -> impl Iterator<Item = usize> + 't {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(move |&i| text[i..].starts_with(prefix))
}

/// The 1-based lines of a kernel's source that switch on the variant (see the module docs).
pub fn switches(source: &str) -> Vec<usize> {
    const MARKS: [&str; 5] = [
        ".fixed()",
        "Variant::Fixed",
        "Variant::Buggy",
        "variant ==",
        "variant !=",
    ];
    let mut in_registration = false;
    let mut lines = Vec::new();
    for (k, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if code.starts_with("inventory::submit!") {
            in_registration = true;
        }
        if in_registration {
            in_registration = code != "}";
            continue;
        }
        if MARKS.iter().any(|m| code.contains(m)) && !code.trim_start().starts_with("fn ") {
            lines.push(k + 1);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# x\n\n## Mapping to upstream\n\nintro\n\n### Code\n\n| a | b |\n\n\
        ### Goroutines\n\n- g\n\n### The fix\n\n| hunk | `x_1.rs:12`, `x_1.rs:30` |\n\n\
        ### Deviations\n\n- one\n- two\n\n## The lesson\n\n- not a deviation\n";

    #[test]
    fn a_complete_section_is_read_part_by_part() {
        let m = Mapping::parse(GOOD).expect("well formed");
        assert_eq!(m.code(), "| a | b |");
        assert_eq!(m.goroutines(), "- g");
        assert_eq!(m.deviations(), ["one", "two"]);
        assert_eq!(m.cited_lines("x_1.rs"), [12, 30]);
    }

    #[test]
    fn a_missing_or_misplaced_part_is_named() {
        let no_fix = GOOD.replace("### The fix", "### Fix");
        assert_eq!(
            Mapping::parse(&no_fix).unwrap_err(),
            "`## Mapping to upstream` has no `### The fix` part"
        );
        assert!(Mapping::parse("# x\n## The lesson\n")
            .unwrap_err()
            .contains("no `## Mapping to upstream`"));
        let swapped = GOOD
            .replace("### Code", "### TMP")
            .replace("### Goroutines", "### Code")
            .replace("### TMP", "### Goroutines");
        assert!(Mapping::parse(&swapped).unwrap_err().contains("order"));
    }

    #[test]
    fn switches_are_the_lines_that_ask_for_the_variant() {
        let src = "inventory::submit! {\n    Bug {\n        fix: Fix::Upstream(\"x\"),\n    }\n}\n\
            fn f(v: Variant) {\n    if v.fixed() {\n    }\n    // v.fixed() in a comment\n    \
            let b = v == Variant::Buggy;\n}\n";
        assert_eq!(switches(src), [7, 10]);
    }
}
