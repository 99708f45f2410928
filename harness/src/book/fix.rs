//! The fix as a diff: a kernel's two variants share one body and part at `if variant.fixed()`
//! switches, so each switch reads as a hunk of the upstream change: the buggy branch as `-`
//! lines, the fixed one as `+` lines. A switch this reader cannot take apart (a `match`, a
//! one-line `if`) is shown with its context instead.

use std::fmt::Write as _;

/// The hunks of `source` (a kernel file, named `file` in the headers), as the body of a
/// `diff` code block; empty when the file has no switch.
pub fn diff(file: &str, source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if !is_switch(lines[i]) || in_test_module(&lines, i) {
            i += 1;
            continue;
        }
        let _ = writeln!(out, "@@ {file}:{} @@", i + 1);
        match branches(&lines, i) {
            Some(s) => {
                render_switch(&mut out, &lines, &s);
                i = s.end + 1;
            }
            None => {
                let from = i.saturating_sub(2);
                let to = (i + 3).min(lines.len());
                for (k, line) in lines.iter().enumerate().take(to).skip(from) {
                    let mark = if k == i { '!' } else { ' ' };
                    let _ = writeln!(out, "{mark}{line}");
                }
                i = to;
            }
        }
    }
    out
}

fn is_switch(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.contains(".fixed()") || code.contains("Variant::Fixed") || code.contains("Variant::Buggy")
}

/// The kernel's own `#[cfg(test)]` module (its tests name both variants) is not the fix.
fn in_test_module(lines: &[&str], i: usize) -> bool {
    lines[..i].iter().any(|l| l.trim() == "#[cfg(test)]")
}

/// One `if [!]<variant>.fixed() { .. } [else { .. }]` switch.
struct Switch {
    /// The text before `if` on its line (`let done = `), trimmed at the end.
    prefix: String,
    /// Whether the `then` branch is the fixed variant's.
    then_is_fixed: bool,
    then_lines: (usize, usize),
    else_lines: Option<(usize, usize)>,
    /// The indentation of the `if` line.
    indent: usize,
    /// The text after the last `}` (`;`).
    suffix: String,
    /// The line of the last `}`.
    end: usize,
}

/// Takes apart the switch that starts on line `i`, if it is an `if` whose blocks open at the
/// end of a line and close at the start of one.
fn branches(lines: &[&str], i: usize) -> Option<Switch> {
    let line = lines[i];
    let at = line.find("if ")?;
    let cond = &line[at + 3..];
    if !line.trim_end().ends_with('{') || !cond.contains(".fixed()") || cond.contains("&&") {
        return None;
    }
    let negated = cond.trim_start().starts_with('!');
    let then_end = close(lines, i)?;
    let closing = lines[then_end].trim();
    let (else_lines, end) = if closing.starts_with("} else {") {
        let else_end = close(lines, then_end)?;
        (Some((then_end + 1, else_end)), else_end)
    } else if closing.starts_with("} else") {
        return None;
    } else {
        (None, then_end)
    };
    let suffix = lines[end].trim().trim_start_matches('}').trim().to_string();
    Some(Switch {
        prefix: line[..at].trim_end().to_string(),
        then_is_fixed: !negated,
        then_lines: (i + 1, then_end),
        else_lines,
        indent: line.len() - line.trim_start().len(),
        suffix,
        end,
    })
}

/// The line holding the `}` that closes the block opened at the end of line `open`.
fn close(lines: &[&str], open: usize) -> Option<usize> {
    let mut depth = 1i32;
    for (k, line) in lines.iter().enumerate().skip(open + 1) {
        let trimmed = line.trim_start();
        // A line that closes the block first, as `} else {` does, closes it there.
        if trimmed.starts_with('}') && depth == 1 {
            return Some(k);
        }
        depth += braces(line);
        if depth <= 0 {
            return Some(k);
        }
    }
    None
}

/// Opening minus closing braces of a line's code (strings, chars and comments skipped).
fn braces(line: &str) -> i32 {
    let mut n = 0;
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_str => {
                chars.next();
            }
            '"' => in_str = !in_str,
            '/' if !in_str && chars.peek() == Some(&'/') => break,
            '\'' if !in_str => {
                // A char literal ('{') or a lifetime ('a): skip a literal's body.
                let rest: String = chars.clone().take(3).collect();
                if rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                } else if rest.starts_with('\\') {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                }
            }
            '{' if !in_str => n += 1,
            '}' if !in_str => n -= 1,
            _ => {}
        }
    }
    n
}

fn render_switch(out: &mut String, lines: &[&str], s: &Switch) {
    let (fixed, buggy) = if s.then_is_fixed {
        (Some(s.then_lines), s.else_lines)
    } else {
        (s.else_lines, Some(s.then_lines))
    };
    let prefix = s.prefix.trim();
    if !prefix.is_empty() {
        let _ = writeln!(out, " {}", s.prefix);
    }
    for (mark, range) in [('-', buggy), ('+', fixed)] {
        let Some((from, to)) = range else { continue };
        let body = &lines[from..to];
        let indent = body
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        let pad = if prefix.is_empty() {
            s.indent
        } else {
            s.indent + 4
        };
        for l in body {
            let text = l.get(indent..).unwrap_or_else(|| l.trim_start());
            if text.is_empty() {
                let _ = writeln!(out, "{mark}");
            } else {
                let _ = writeln!(out, "{mark}{:pad$}{text}", "");
            }
        }
    }
    if !s.suffix.is_empty() {
        let _ = writeln!(out, " {:w$}{}", "", s.suffix, w = s.indent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_if_else_switch_reads_as_a_hunk() {
        let src = "fn f(v: Variant) {\n    lock();\n    if v.fixed() {\n        // the fix\n        go(move || send());\n    } else {\n        send();\n    }\n}\n";
        assert_eq!(
            diff("k.rs", src),
            "@@ k.rs:3 @@\n-    send();\n+    // the fix\n+    go(move || send());\n"
        );
    }

    #[test]
    fn a_negated_switch_without_else_is_buggy_only() {
        let src = "    if !variant.fixed() {\n        extra(\"{\");\n    }\n";
        assert_eq!(diff("k.rs", src), "@@ k.rs:1 @@\n-    extra(\"{\");\n");
    }

    #[test]
    fn an_expression_switch_keeps_its_binding() {
        let src = "    let done = if variant.fixed() {\n        Chan::new(1)\n    } else {\n        Chan::nil()\n    };\n";
        assert_eq!(
            diff("k.rs", src),
            "@@ k.rs:1 @@\n     let done =\n-        Chan::nil()\n+        Chan::new(1)\n     ;\n"
        );
    }

    #[test]
    fn other_switches_show_their_context() {
        let src = "a\nb\nlet n = if v.fixed() { 1 } else { 2 };\nc\nd\ne\n";
        assert_eq!(
            diff("k.rs", src),
            "@@ k.rs:3 @@\n a\n b\n!let n = if v.fixed() { 1 } else { 2 };\n c\n d\n"
        );
    }
}
