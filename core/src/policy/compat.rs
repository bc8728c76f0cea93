//! Making regorus run Gatekeeper templates the way OPA does.
//!
//! regorus differs from OPA in a few places that change results (reference §4.5). Source-level
//! gaps are fixed by rewriting the Rego text before it is parsed; the rewrites keep every line
//! where it was (one `;` or hoisted assignment inserted per site), except a chained body, which
//! gains one line:
//!
//! 1. A newline before `(` separates expressions in OPA; regorus reads `x⏎(y)` as a call `x(y)`.
//!    → a `;` is inserted at the end of the previous line.
//! 2. Rego v0 chained bodies `p[x] { a } { b }` mean two rules; regorus refuses them on set rules.
//!    → the head is repeated before the second body.
//! 3. `not f(<undefined>)`: OPA hoists call arguments out of the negation, so an undefined argument
//!    makes the body fail; regorus makes `not` succeed (a false positive).
//!    → arguments that are refs or calls are hoisted into fresh variables before the `not`.
//! 4. In regorus's register VM, `x := <undefined>` does not fail the body.
//!    → `; x == x` after each body assignment to a plain variable (a v1 unbraced body,
//!    `p if x := e`, is braced first).
//!
//! Builtin gaps are fixed with extensions (see [`super::builtins`]): OPA's `sprintf` (missing
//! arguments print `%!v(MISSING)` instead of dropping the violation) and the deprecated `re_match`.
//! Strict builtin errors are turned off (OPA makes a failing builtin undefined) and Rego v0 is the
//! default for templates, as in Gatekeeper.

/// Apply every source rewrite. `v0` enables the v0-only ones.
pub fn normalize(src: &str, v0: bool) -> String {
    let s = separate_paren_lines(src);
    let s = if v0 { split_chained_bodies(&s) } else { s };
    guard_assignments(&hoist_negated_call_args(&s))
}

/// Gap 4, in regorus's register VM: `x := <undefined>` must make the body (or comprehension)
/// fail, as in OPA and regorus's interpreter; the VM carries on, so a later `not` or comprehension
/// that uses `x` misfires (a false violation). → `; x == x` after each assignment to a plain
/// variable inside a body. It is true whenever `x` is defined, so results do not change anywhere
/// else, and it fails exactly when OPA's assignment would.
fn guard_assignments(src: &str) -> String {
    let b = src.as_bytes();
    let kinds = classify(src);
    let mask = code_mask(&kinds);
    let mut inserts = Vec::new();
    let mut depth = 0i32;
    for i in 0..b.len() {
        if !mask[i] {
            continue;
        }
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b':' if b.get(i + 1) == Some(&b'=') && mask[i + 1] => {
                let mut id_end = i;
                while id_end > 0 && matches!(b[id_end - 1], b' ' | b'\t') {
                    id_end -= 1;
                }
                let mut id_start = id_end;
                while id_start > 0
                    && (b[id_start - 1].is_ascii_alphanumeric() || b[id_start - 1] == b'_')
                {
                    id_start -= 1;
                }
                let ident = &src[id_start..id_end];
                let mut p = id_start;
                while p > 0 && matches!(b[p - 1], b' ' | b'\t') {
                    p -= 1;
                }
                let plain =
                    !ident.is_empty() && ident != "_" && !ident.as_bytes()[0].is_ascii_digit();
                let statement_start =
                    depth > 0 && (p == 0 || matches!(b[p - 1], b'{' | b';' | b'|' | b'\n'));
                // A v1 body of one unbraced statement, `p if x := e`, is at depth 0 (elsewhere
                // at depth 0, `:=` belongs to a rule head): it is braced so the guard can follow.
                let after_if = depth == 0
                    && p >= 2
                    && p < id_start
                    && &b[p - 2..p] == b"if"
                    && (p == 2 || !(b[p - 3].is_ascii_alphanumeric() || b[p - 3] == b'_'));
                if plain && statement_start {
                    inserts.push((
                        expression_end(b, &kinds, i + 2),
                        format!("; {ident} == {ident}"),
                    ));
                } else if plain && after_if {
                    inserts.push((id_start, "{ ".to_string()));
                    inserts.push((
                        expression_end(b, &kinds, i + 2),
                        format!("; {ident} == {ident} }}"),
                    ));
                }
            }
            _ => {}
        }
    }
    insert_all(src, inserts)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Code,
    Str,
    Comment,
}

/// Classify every byte of a Rego source: code, string (`"…"` or raw `` `…` ``) or comment.
fn classify(src: &str) -> Vec<Kind> {
    let b = src.as_bytes();
    let mut kind = vec![Kind::Code; b.len()];
    let mut i = 0;
    while i < b.len() {
        let (k, end) = match b[i] {
            b'#' => (
                Kind::Comment,
                b[i..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(b.len(), |p| i + p),
            ),
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' && b[j] != b'\n' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                (Kind::Str, (j + 1).min(b.len()))
            }
            b'`' => (
                Kind::Str,
                b[i + 1..]
                    .iter()
                    .position(|c| *c == b'`')
                    .map_or(b.len(), |p| i + p + 2),
            ),
            _ => {
                i += 1;
                continue;
            }
        };
        kind[i..end].fill(k);
        i = end;
    }
    kind
}

/// Code bytes only: `true` where the byte is code.
fn code_mask(kinds: &[Kind]) -> Vec<bool> {
    kinds.iter().map(|k| *k == Kind::Code).collect()
}

/// Gap 1: `;` at the end of a line when the next code line starts with `(` and the line before
/// ends a term, at bracket depth 0 (inside `(`/`[` a newline is only whitespace).
fn separate_paren_lines(src: &str) -> String {
    let b = src.as_bytes();
    let kind = classify(src);
    let mut inserts = Vec::new();
    let mut depth: i32 = 0;
    // End (exclusive) of the last code or string byte seen.
    let mut last_sig: Option<usize> = None;
    let mut at_line_start = true;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            at_line_start = true;
            continue;
        }
        if c.is_ascii_whitespace() || kind[i] == Kind::Comment {
            continue;
        }
        let code = kind[i] == Kind::Code;
        if at_line_start
            && code
            && c == b'('
            && depth == 0
            && let Some(end) = last_sig
        {
            let prev = b[end - 1];
            let ends_term = prev.is_ascii_alphanumeric()
                || matches!(prev, b'_' | b']' | b')' | b'}' | b'"' | b'`');
            if ends_term && !ends_with_keyword(b, end) {
                inserts.push(end);
            }
        }
        at_line_start = false;
        if code {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                _ => {}
            }
        }
        last_sig = Some(i + 1);
    }
    insert_all(
        src,
        inserts.into_iter().map(|p| (p, ";".to_string())).collect(),
    )
}

/// Lines ending in a keyword that takes an operand (`not`, `some`, …) are not terms.
fn ends_with_keyword(b: &[u8], end: usize) -> bool {
    let start = b[..end]
        .iter()
        .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .map_or(0, |p| p + 1);
    matches!(
        &b[start..end],
        b"not"
            | b"some"
            | b"with"
            | b"as"
            | b"in"
            | b"if"
            | b"contains"
            | b"else"
            | b"every"
            | b"default"
    )
}

/// Gap 2 (v0): `head { a } { b }` → `head { a }⏎head { b }`.
fn split_chained_bodies(src: &str) -> String {
    let b = src.as_bytes();
    let kind = classify(src);
    let mut inserts = Vec::new();
    let (mut paren, mut brace) = (0i32, 0i32);
    let mut stmt_start: Option<usize> = None;
    let mut head: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if kind[i] != Kind::Code {
            if kind[i] == Kind::Str && stmt_start.is_none() && brace == 0 && paren == 0 {
                stmt_start = Some(i);
            }
            i += 1;
            continue;
        }
        if c == b'\n' && brace == 0 && paren == 0 && head.is_none() {
            stmt_start = None;
        }
        if !c.is_ascii_whitespace() && stmt_start.is_none() && brace == 0 && paren == 0 {
            stmt_start = Some(i);
        }
        match c {
            b'(' | b'[' => paren += 1,
            b')' | b']' => paren -= 1,
            b'{' => {
                if brace == 0
                    && paren == 0
                    && head.is_none()
                    && let Some(s) = stmt_start
                {
                    head = Some((s, i));
                }
                brace += 1;
            }
            b'}' => {
                brace -= 1;
                if brace == 0 && paren == 0 {
                    // What follows: another body `{`, or the end of the statement.
                    let mut j = i + 1;
                    while j < b.len() {
                        if b[j].is_ascii_whitespace() {
                            j += 1;
                        } else if b[j] == b'#' {
                            while j < b.len() && b[j] != b'\n' {
                                j += 1;
                            }
                        } else {
                            break;
                        }
                    }
                    if j < b.len() && b[j] == b'{' {
                        if let Some((s, e)) = head {
                            inserts.push((j, format!("\n{} ", src[s..e].trim_end())));
                        }
                    } else if !(b[j..].starts_with(b"else")) {
                        head = None;
                        stmt_start = None;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    insert_all(src, inserts)
}

/// Gaps 3 and 4, in negated expressions (`not EXPR`):
/// - `not f(a.b, g(c))` → `__sg_h1 := a.b; __sg_h2 := g(c); not f(__sg_h1, __sg_h2)`: OPA hoists
///   call arguments out of the negation, so an undefined argument fails the body;
/// - `not EXPR` where EXPR has a `_` wildcard → `count([1 | EXPR]) == 0`: in OPA the wildcard is
///   quantified inside the negation ("no element matches"); regorus lets it escape ("some element
///   does not match").
fn hoist_negated_call_args(src: &str) -> String {
    let b = src.as_bytes();
    let kinds = classify(src);
    let mask = code_mask(&kinds);
    let mut edits: Vec<(usize, usize, String)> = Vec::new(); // (start, end, replacement)
    let mut counter = 0;
    let mut i = 0;
    while i + 3 <= b.len() {
        let word_start =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.');
        if !(mask[i]
            && word_start
            && b[i..].starts_with(b"not")
            && b.get(i + 3).is_some_and(|c| *c == b' ' || *c == b'\t'))
        {
            i += 1;
            continue;
        }
        let expr_start = i
            + 3
            + b[i + 3..]
                .iter()
                .take_while(|c| **c == b' ' || **c == b'\t')
                .count();
        let expr_end = expression_end(b, &kinds, expr_start);
        let expr = &src[expr_start..expr_end];
        // `with` changes what the expression sees: leave such expressions alone.
        if expr.split_whitespace().any(|w| w == "with") || expr.is_empty() {
            i = expr_end.max(i + 1);
            continue;
        }
        let mut hoisted = String::new();
        let mut new_expr = expr.to_string();
        if let Some((name, args)) = as_call(src, &mask, expr_start, expr_end) {
            let mut new_args = Vec::new();
            for (s, e) in &args {
                let arg = src[*s..*e].trim();
                if needs_hoisting(arg) {
                    counter += 1;
                    let var = format!("__sg_h{counter}");
                    hoisted.push_str(&format!("{var} := {arg}; "));
                    new_args.push(var);
                } else {
                    new_args.push(arg.to_string());
                }
            }
            new_expr = format!("{name}({})", new_args.join(", "));
        }
        let replacement = if has_wildcard(&new_expr) {
            format!("{hoisted}count([1 | {new_expr}]) == 0")
        } else if !hoisted.is_empty() {
            format!("{hoisted}not {new_expr}")
        } else {
            i = expr_end.max(i + 1);
            continue;
        };
        edits.push((i, expr_end, replacement));
        i = expr_end.max(i + 1);
    }
    let mut out = String::with_capacity(src.len() + edits.len() * 32);
    let mut pos = 0;
    for (s, e, r) in edits {
        out.push_str(&src[pos..s]);
        out.push_str(&r);
        pos = e;
    }
    out.push_str(&src[pos..]);
    out
}

/// Where the expression (or statement) starting at `start` ends: after its last code or string
/// byte before a `;`, a newline or a closing bracket at its own depth. A trailing comment is left
/// outside, so text inserted at the end is never commented out.
fn expression_end(b: &[u8], kinds: &[Kind], start: usize) -> usize {
    let mut depth = 0i32;
    let mut end = start;
    for k in start..b.len() {
        match kinds[k] {
            Kind::Comment => continue,
            Kind::Str => {
                end = k + 1;
                continue;
            }
            Kind::Code => {}
        }
        match b[k] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => break,
            b')' | b']' | b'}' => depth -= 1,
            b'\n' | b';' if depth == 0 => break,
            _ => {}
        }
        if !b[k].is_ascii_whitespace() {
            end = k + 1;
        }
    }
    end
}

/// `NAME(args)` spanning exactly `start..end`: the name and the argument spans.
fn as_call<'a>(
    src: &'a str,
    mask: &[bool],
    start: usize,
    end: usize,
) -> Option<(&'a str, Vec<(usize, usize)>)> {
    let b = src.as_bytes();
    let mut j = start;
    while j < end && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
        j += 1;
    }
    if j == start
        || j >= end
        || b[j] != b'('
        || !(b[start].is_ascii_alphabetic() || b[start] == b'_')
    {
        return None;
    }
    let close = matching_paren(b, mask, j)?;
    if close + 1 != end {
        return None;
    }
    Some((&src[start..j], split_args(src, mask, j + 1, close)))
}

/// Whether a Rego fragment uses the `_` wildcard as a term.
fn has_wildcard(s: &str) -> bool {
    let b = s.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (0..b.len()).any(|i| {
        b[i] == b'_' && (i == 0 || !ident(b[i - 1])) && (i + 1 == b.len() || !ident(b[i + 1]))
    })
}

/// Refs (`a.b`, `a[0]`) and calls are hoisted; literals and plain variables are not, nor is
/// anything with a `_` wildcard: `not f(xs[_])` means "for no element", so the wildcard must stay
/// inside the negation.
fn needs_hoisting(arg: &str) -> bool {
    if arg.is_empty() || arg.starts_with('"') || arg.starts_with('`') {
        return false;
    }
    if has_wildcard(arg) {
        return false;
    }
    let plain_var = arg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    !plain_var
        && (arg.contains('.') || arg.contains('[') || arg.contains('('))
        && !arg.starts_with('[')
        && !arg.starts_with('{')
        && arg.parse::<f64>().is_err()
}

fn matching_paren(b: &[u8], mask: &[bool], open: usize) -> Option<usize> {
    let mut depth = 0;
    for k in open..b.len() {
        if !mask[k] {
            continue;
        }
        match b[k] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return (b[k] == b')').then_some(k);
                }
            }
            _ => {}
        }
    }
    None
}

fn split_args(src: &str, mask: &[bool], start: usize, end: usize) -> Vec<(usize, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0;
    let mut s = start;
    for k in start..end {
        if !mask[k] {
            continue;
        }
        match b[k] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push((s, k));
                s = k + 1;
            }
            _ => {}
        }
    }
    if !src[s..end].trim().is_empty() || !out.is_empty() {
        out.push((s, end));
    }
    out
}

fn insert_all(src: &str, mut inserts: Vec<(usize, String)>) -> String {
    inserts.sort_by_key(|(p, _)| *p);
    let mut out = String::with_capacity(src.len() + inserts.len() * 16);
    let mut pos = 0;
    for (p, text) in inserts {
        out.push_str(&src[pos..p]);
        out.push_str(&text);
        pos = p;
    }
    out.push_str(&src[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_comment_stays_a_comment() {
        let src = "package t\np { not startswith(x, y[_]) # no repo matches\n}\n";
        assert_eq!(
            hoist_negated_call_args(src),
            "package t\np { count([1 | startswith(x, y[_])]) == 0 # no repo matches\n}\n"
        );
    }

    #[test]
    fn body_assignments_are_guarded_and_nothing_else() {
        let src = "package t\ndefault allow := false\nf(x) := y if { y := x.a # why\n  z := [c |\n    c := y[_]\n  ]\n  count(z) > 0 }\nmsg := \"a := b\"\np if x := input.a\ng := 1 if true\n";
        let out = guard_assignments(src);
        assert_eq!(
            out,
            "package t\ndefault allow := false\nf(x) := y if { y := x.a; y == y # why\n  z := [c |\n    c := y[_]; c == c\n  ]; z == z\n  count(z) > 0 }\nmsg := \"a := b\"\np if { x := input.a; x == x }\ng := 1 if true\n"
        );
    }

    #[test]
    fn paren_on_a_new_line_is_a_new_expression() {
        let src = "package t\nviolation[x] {\n  input.a # trailing comment\n  (input.a + 1) > 1\n  x := 1\n}\n";
        let out = separate_paren_lines(src);
        assert!(out.contains("input.a; # trailing comment"), "{out}");
        // Not inside brackets, not after an operator or comma, not in strings.
        for keep in [
            "package t\np { x := f(a,\n (b)) }\n",
            "package t\np { x := 1 +\n (2) }\n",
            "package t\np { x := [a\n (b)] }\n",
            "package t\np { x := \"(\"\n y := 1 }\n",
        ] {
            assert_eq!(separate_paren_lines(keep), keep);
        }
    }

    #[test]
    fn chained_bodies_become_separate_rules() {
        let src = "package t\nviolation[{\"msg\": msg}] {\n  a\n  msg := \"a\"\n} {\n  b\n  msg := \"b\"\n}\nallow { true }\n";
        let out = split_chained_bodies(src);
        assert_eq!(out.matches("violation[{\"msg\": msg}]").count(), 2, "{out}");
        assert_eq!(out.matches("allow").count(), 1, "{out}");
        // else chains are untouched.
        let els = "package t\nf(x) = 1 { x > 1 } else = 2 { true }\n";
        assert_eq!(split_chained_bodies(els), els);
    }

    #[test]
    fn negated_call_arguments_are_hoisted() {
        let src = "package t\nviolation[\"v\"] {\n  not accept(rule, v, params.ranges)\n  not startswith(\"x\", y)\n  not f(input.a) with input as {}\n}\n";
        let out = hoist_negated_call_args(src);
        assert!(
            out.contains("__sg_h1 := params.ranges; not accept(rule, v, __sg_h1)"),
            "{out}"
        );
        assert!(out.contains("  not startswith(\"x\", y)\n"), "{out}");
        assert!(out.contains("not f(input.a) with input as {}"), "{out}");
        // A wildcard is quantified inside the negation.
        let wild = "package t\np { not startswith(x, input.parameters.prefixes[_]) }\n";
        assert!(
            hoist_negated_call_args(wild)
                .contains("p { count([1 | startswith(x, input.parameters.prefixes[_])]) == 0 }")
        );
        let mixed = "package t\np { not startswith(lower(input.a), xs[_]) }\n";
        assert!(
            hoist_negated_call_args(mixed).contains(
                "__sg_h1 := lower(input.a); count([1 | startswith(__sg_h1, xs[_])]) == 0"
            )
        );
        let cmp = "package t\np {\n  not xs[_] == \"a\"; y := 1\n}\n";
        assert!(
            hoist_negated_call_args(cmp).contains("count([1 | xs[_] == \"a\"]) == 0; y := 1"),
            "{}",
            hoist_negated_call_args(cmp)
        );
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn strings_and_comments_are_left_alone() {
        let src = "package t\n# not f(a.b)\np { x := \"not f(a.b) ; y := 1\" }\n";
        assert_eq!(
            normalize(src, true),
            "package t\n# not f(a.b)\np { x := \"not f(a.b) ; y := 1\"; x == x }\n"
        );
    }
}
